//! Registry faults that need more than one request to go wrong: two pushes racing for one tag,
//! a registry killed and restarted in the middle of a blob upload, a tag written whose answer
//! never arrived. Always against the real registry; the fault proxy only slows or drops.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use weir_tests::registry::{
    module_file, oras_pull, skopeo, tagged, xtask, FaultProxy, Faults, Registry, Run,
};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn sha(bytes: &[u8]) -> String {
    xtask::project::sha256_hex(bytes)
}

/// weir's own pull of `reference` from a plain-HTTP registry: the module's bytes.
fn pull_bytes(reference: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("pulled-{}.wasm", weir_tests::registry::free_port()));
    let run = xtask(
        &[
            "pull",
            reference,
            "-o",
            out.to_str().unwrap(),
            "--plain-http",
        ],
        None,
    );
    assert!(run.status.success(), "pull failed:\n{}", run.all());
    std::fs::read(&out).unwrap()
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two `cargo xtask push` processes, started together, push different modules to the same
/// repository and tag, five rounds. Decided semantics (as oras and crane): last writer wins and
/// both succeed. What must hold every round: both exit 0, the tag names exactly one of the two
/// manifests, every blob either manifest names is in the registry, and weir, oras-py and skopeo
/// all read back exactly that one module.
#[test]
fn concurrent_pushes_to_one_tag_leave_one_complete_artifact() {
    const ROUNDS: u64 = 5;
    let reg = Registry::start();
    let host = reg.host();
    let repo = "race/m";
    let reference = format!("{host}/{repo}:v1");
    let mut wins = [0usize; 2];
    let mut overlaps = Vec::new();
    for round in 0..ROUNDS {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        // Same file name, so both share one runtime config blob (same root id, fresh per round):
        // the two processes also race to upload that one blob.
        let modules: Vec<(PathBuf, Vec<u8>)> = (0..2)
            .map(|i| module_file(dirs[i].path(), "m", 300_000, 1000 + round * 2 + i as u64))
            .collect();
        let root = format!("race-{round}");
        let barrier = Barrier::new(2);
        let runs: Vec<(Instant, Instant, Run)> = std::thread::scope(|s| {
            let handles: Vec<_> = modules
                .iter()
                .map(|(file, _)| {
                    let (barrier, reference, root) = (&barrier, &reference, &root);
                    s.spawn(move || {
                        let args = [
                            "push",
                            file.to_str().unwrap(),
                            reference,
                            "--plain-http",
                            "--json",
                            "--root-id",
                            root,
                        ];
                        barrier.wait();
                        let start = Instant::now();
                        let run = xtask(&args, None);
                        (start, Instant::now(), run)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (_, _, run) in &runs {
            assert!(
                run.status.success(),
                "round {round}: a concurrent push failed:\n{}",
                run.all()
            );
        }
        // The two processes really ran at the same time.
        let overlap = runs[0]
            .1
            .min(runs[1].1)
            .saturating_duration_since(runs[0].0.max(runs[1].0));
        assert!(
            overlap > Duration::ZERO,
            "round {round}: the pushes did not overlap"
        );
        overlaps.push(overlap);
        let reports: Vec<serde_json::Value> =
            runs.iter().map(|(_, _, r)| json(&r.stdout)).collect();
        for r in &reports {
            assert!(
                r["uploaded_bytes"].as_u64().unwrap() >= 300_000 - 300,
                "round {round}: a push did not upload its module: {r:#}"
            );
        }
        let digests: Vec<&str> = reports
            .iter()
            .map(|r| r["digest"].as_str().unwrap())
            .collect();
        assert_ne!(digests[0], digests[1]);

        let tag = tagged(reg.port, repo, "v1").expect("the tag exists after two successful pushes");
        let winner = digests
            .iter()
            .position(|d| *d == tag.digest)
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: the tag names {}, neither push's manifest {digests:?}",
                    tag.digest
                )
            });
        wins[winner] += 1;
        assert!(
            tag.missing.is_empty(),
            "round {round}: the tag names missing blobs {:?}",
            tag.missing
        );
        // The loser's manifest is complete too: nothing either push wrote points at nothing.
        let other =
            tagged(reg.port, repo, digests[1 - winner]).expect("the other manifest is stored");
        assert!(
            other.missing.is_empty(),
            "round {round}: {:?}",
            other.missing
        );
        // The stored wasm layer is exactly the winner's module.
        let wasm = &modules[winner].1;
        let layer = reg.blob_file(&format!("sha256:{}", sha(wasm)));
        assert_eq!(std::fs::read(&layer).ok().map(|b| sha(&b)), Some(sha(wasm)));

        let dir = dirs[0].path();
        assert_eq!(
            sha(&pull_bytes(&reference, dir)),
            sha(wasm),
            "round {round}: weir pulled other bytes"
        );
        let out = dir.join("oras");
        std::fs::create_dir(&out).unwrap();
        let files = oras_pull(&host, &reference, &out);
        let pulled = files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == "wasm"))
            .unwrap_or_else(|| panic!("oras-py wrote no module: {files:?}"));
        assert_eq!(
            sha(&std::fs::read(pulled).unwrap()),
            sha(wasm),
            "round {round}: oras-py pulled other bytes"
        );
        // skopeo reads the same manifest, byte for byte, naming the winner's module layer.
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]);
        assert_eq!(
            format!("sha256:{}", sha(raw.as_bytes())),
            tag.digest,
            "round {round}: skopeo"
        );
        assert!(
            raw.contains(&format!("sha256:{}", sha(wasm))),
            "round {round}: skopeo sees another module layer: {raw}"
        );
    }
    eprintln!("concurrent pushes: {ROUNDS} rounds, first-started wins {}, second {}; overlap {overlaps:?}", wins[0], wins[1]);
}

/// Starts `push FILE REF ARGS` through `proxy` on a thread, waits until the fault proxy has
/// forwarded `past` bytes of the module's blob PUT, then runs `during` (the registry's crash);
/// returns the push's run and how long it took after `during` returned.
fn push_and_crash(
    file: &Path,
    reference: &str,
    extra: &[&str],
    proxy: &FaultProxy,
    past: usize,
    during: impl FnOnce(),
) -> (Run, Duration) {
    std::thread::scope(|s| {
        let mut args = vec!["push", file.to_str().unwrap(), reference, "--plain-http"];
        args.extend_from_slice(extra);
        let push = s.spawn(move || xtask(&args, None));
        wait_for(
            "the blob upload to be under way",
            Duration::from_secs(60),
            || proxy.faults().slowed_bytes > past || push.is_finished(),
        );
        assert!(
            !push.is_finished(),
            "the push ended before the crash: {}",
            push.join().unwrap().all()
        );
        during();
        let t = Instant::now();
        let run = push.join().unwrap();
        (run, t.elapsed())
    })
}

/// The registry is killed (SIGKILL) while the module's blob PUT is half sent and started again at
/// once on the same port and storage: the push retries and completes, and the tag pulls back
/// exactly the module.
#[test]
fn a_registry_restarted_mid_upload_is_retried_and_the_push_completes() {
    let mut reg = Registry::start();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            slow_uploads: Some(Duration::from_millis(20)),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "crash", 1_000_000, 77);
    let reference = format!("{}/crash/quick:v1", proxy.host());
    let mut restart = Duration::ZERO;
    let (run, after) = push_and_crash(&file, &reference, &[], &proxy, 200_000, || {
        let t = Instant::now();
        reg.stop();
        // The retried upload goes at full speed.
        proxy.set(Faults::default());
        reg.restart();
        restart = t.elapsed();
    });
    assert!(
        run.status.success(),
        "the push did not survive the restart:\n{}",
        run.all()
    );
    let retries = run
        .stderr
        .lines()
        .filter(|l| l.contains("; retry "))
        .count();
    assert!(
        retries >= 1 && run.stderr.contains("while uploading the wasm layer"),
        "the push succeeded without retrying the interrupted upload?\n{}",
        run.all()
    );
    let tag = tagged(reg.port, "crash/quick", "v1").expect("the tag exists");
    assert!(tag.missing.is_empty(), "{:?}", tag.missing);
    assert_eq!(
        sha(&pull_bytes(
            &format!("{}/crash/quick:v1", reg.host()),
            dir.path()
        )),
        sha(&bytes)
    );
    eprintln!(
        "restart mid-upload: registry down and up again in {restart:?}; {retries} retries; push done {after:?} after the restart\n{}",
        run.stderr
    );
}

/// The registry is killed mid-upload and stays down until the push gives up: the push fails
/// non-zero, naming the registry, the step and that no tag was written; the restarted registry
/// has no tag (404); the same push run again completes and pulls back exactly the module.
#[test]
fn a_registry_down_past_the_retries_fails_clearly_leaves_no_tag_and_a_rerun_completes() {
    let mut reg = Registry::start();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            slow_uploads: Some(Duration::from_millis(20)),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "crash", 1_000_000, 78);
    let reference = format!("{}/crash/down:v1", proxy.host());
    let (run, gave_up) = push_and_crash(
        &file,
        &reference,
        &["--retries", "1"],
        &proxy,
        200_000,
        || {
            reg.stop();
            proxy.set(Faults::default());
        },
    );
    assert!(
        !run.status.success(),
        "the push succeeded with the registry down:\n{}",
        run.all()
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.all());
    let err = &run.stderr;
    assert!(
        err.contains(&proxy.host())
            && err.contains("while uploading the wasm layer")
            && err.contains("after 2 tries")
            && err.contains("no tag was written"),
        "{}",
        run.all()
    );
    assert!(run.stdout.is_empty(), "{}", run.all());

    let t = Instant::now();
    reg.restart();
    assert!(
        tagged(reg.port, "crash/down", "v1").is_none(),
        "a failed push left a tag behind"
    );
    let again = xtask(
        &["push", file.to_str().unwrap(), &reference, "--plain-http"],
        None,
    );
    assert!(
        again.status.success(),
        "the re-run failed:\n{}",
        again.all()
    );
    let recovered = t.elapsed();
    let tag = tagged(reg.port, "crash/down", "v1").expect("the tag exists after the re-run");
    assert!(tag.missing.is_empty(), "{:?}", tag.missing);
    assert_eq!(
        sha(&pull_bytes(
            &format!("{}/crash/down:v1", reg.host()),
            dir.path()
        )),
        sha(&bytes)
    );
    eprintln!(
        "registry down: push gave up {gave_up:?} after the kill; restart + re-run took {recovered:?}\n{}",
        run.stderr
    );
}

/// The registry writes the tag but its answer to the manifest PUT is lost (the fault proxy
/// drops the connection after the registry answered). Without retries the push fails, and
/// must not claim that no tag was written: the tag is there, complete. With retries, the PUT
/// is sent again (it is idempotent) and the push succeeds.
#[test]
fn a_tag_written_whose_answer_was_lost_is_not_called_unwritten() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            drop_manifest_answers: 1,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = module_file(dir.path(), "lost", 5000, 79);
    let file = file.to_str().unwrap();
    let reference = format!("{}/lost/m:v1", proxy.host());
    let run = xtask(
        &["push", file, &reference, "--plain-http", "--retries", "0"],
        None,
    );
    assert_eq!(proxy.faults().dropped_manifest_answers, 1);
    assert!(!run.status.success(), "{}", run.all());
    let tag = tagged(reg.port, "lost/m", "v1").expect("the registry wrote the tag");
    assert!(tag.missing.is_empty(), "{:?}", tag.missing);
    assert!(
        !run.stderr.contains("no tag was written"),
        "the push says no tag was written, yet {} holds one:\n{}",
        reg.host(),
        run.all()
    );
    assert!(
        run.stderr.contains("while writing tag v1")
            && run.stderr.contains("tag v1 may or may not")
            && run.stderr.contains("run it again"),
        "{}",
        run.all()
    );
    assert_eq!(
        sha(&pull_bytes(
            &format!("{}/lost/m:v1", reg.host()),
            dir.path()
        )),
        sha(&bytes)
    );
    eprintln!("lost manifest answer, --retries 0:\n{}", run.stderr);

    proxy.set(Faults {
        drop_manifest_answers: 1,
        ..Faults::default()
    });
    let retried = xtask(&["push", file, &reference, "--plain-http"], None);
    assert_eq!(proxy.faults().dropped_manifest_answers, 2);
    assert!(retried.status.success(), "{}", retried.all());
    assert!(
        retried
            .stderr
            .contains("while writing tag v1 (manifest PUT)")
            && retried.stderr.contains("retry 1 of 4"),
        "{}",
        retried.all()
    );
}

/// A registry on object storage redirects blob downloads to pre-signed URLs whose query holds a
/// signature. When that download fails, the message names the step and the host, and never
/// prints the query.
#[test]
fn a_failed_redirected_download_does_not_print_the_signed_url() {
    const SIGNATURE: &str = "X-Amz-Signature=5ec4e7d0b5e1c0ffee";
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = module_file(dir.path(), "signed", 3000, 80);
    let run = xtask(
        &[
            "push",
            file.to_str().unwrap(),
            &format!("{}/signed/m:v1", reg.host()),
            "--plain-http",
        ],
        None,
    );
    assert!(run.status.success(), "{}", run.all());
    // Nothing listens on `closed`: the redirected download cannot connect.
    let closed = weir_tests::registry::free_port();
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            redirect_blob_gets: Some(format!(
                "http://127.0.0.1:{closed}/bucket/blob?X-Amz-Credential=AKIA&{SIGNATURE}"
            )),
            ..Faults::default()
        },
    );
    let out = dir.path().join("out.wasm");
    let pulled = xtask(
        &[
            "pull",
            &format!("{}/signed/m:v1", proxy.host()),
            "-o",
            out.to_str().unwrap(),
            "--plain-http",
            "--retries",
            "1",
        ],
        None,
    );
    assert!(!pulled.status.success(), "{}", pulled.all());
    assert!(
        pulled.stderr.contains("while downloading the wasm layer") && !out.exists(),
        "{}",
        pulled.all()
    );
    assert!(
        !pulled.all().contains(SIGNATURE) && !pulled.all().contains("AKIA"),
        "the pre-signed URL's query was printed:\n{}",
        pulled.all()
    );
    eprintln!("redirected download failed:\n{}", pulled.stderr);
}

/// Six `cargo xtask push` processes write six tags into one `oci:` layout at once: every tag
/// is kept and pulls back its own module (index.json is rewritten under a lock).
#[test]
fn concurrent_pushes_to_one_layout_keep_every_tag() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let modules: Vec<(PathBuf, Vec<u8>)> = (0..6)
        .map(|i| module_file(dir.path(), &format!("l{i}"), 20_000, 200 + i))
        .collect();
    let barrier = Barrier::new(modules.len());
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = modules
            .iter()
            .enumerate()
            .map(|(i, (file, _))| {
                let (barrier, layout) = (&barrier, &layout);
                s.spawn(move || {
                    let reference = format!("oci:{}:t{i}", layout.display());
                    barrier.wait();
                    xtask(&["push", file.to_str().unwrap(), &reference], None)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert!(run.status.success(), "{}", run.all());
    }
    for (i, (_, bytes)) in modules.iter().enumerate() {
        let out = dir.path().join(format!("back{i}.wasm"));
        let reference = format!("oci:{}:t{i}", layout.display());
        let run = xtask(&["pull", &reference, "-o", out.to_str().unwrap()], None);
        assert!(run.status.success(), "tag t{i} was lost:\n{}", run.all());
        assert_eq!(sha(&std::fs::read(&out).unwrap()), sha(bytes), "t{i}");
    }
}
