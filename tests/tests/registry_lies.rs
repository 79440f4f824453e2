//! A registry that lies (issue 12, item 6) and text from it that would drive a terminal (item 7):
//! the real registry behind the fault proxy, which serves a small layer's blob huge, a manifest
//! too big, error bodies with escape sequences, and a blob a byte at a time.

use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::registry::{module_file, xtask, xtask_peak_rss, FaultProxy, Faults, Registry};

/// 600 MiB: what the issue's lying registry streamed for a 100-byte layer.
const HUGE: u64 = 600 << 20;
/// The most a pull may hold while refusing a lie. A debug xtask pulling a 3 KB module peaks
/// near 20 MiB; before the fix the lying pull reached 640 MB.
const PEAK_RSS_LIMIT_KIB: u64 = 64 << 10;

/// A registry holding one small module at `repo:v1`, pushed directly (not through the proxy).
fn registry_with(repo: &str, dir: &Path) -> Registry {
    let reg = Registry::start();
    let (file, _) = module_file(dir, repo, 3000, 120 + repo.len() as u64);
    let run = xtask(
        &[
            "push",
            file.to_str().unwrap(),
            &format!("{}/{repo}:v1", reg.host()),
            "--plain-http",
        ],
        None,
    );
    assert!(run.status.success(), "{}", run.all());
    reg
}

fn pull_args<'a>(reference: &'a str, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "pull",
        reference,
        "-o",
        out.to_str().unwrap(),
        "--plain-http",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_layer_served_far_larger_than_declared_is_refused_at_once_in_bounded_memory_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry_with("liar", dir.path());
    for hide_length in [false, true] {
        let proxy = FaultProxy::start(
            reg.port,
            Faults {
                huge_blob_gets: Some(HUGE),
                hide_length,
                ..Faults::default()
            },
        );
        let out = dir.path().join("out.wasm");
        let reference = format!("{}/liar:v1", proxy.host());
        // Default retries (4): a lie must not be fetched again.
        let (run, peak) = xtask_peak_rss(&pull_args(&reference, &out, &[]));
        eprintln!(
            "lying registry (hide_length {hide_length}): peak RSS {peak} KiB, {} bytes sent\n{}",
            proxy.faults().lied_bytes,
            run.stderr
        );
        assert!(!run.status.success(), "{}", run.all());
        assert!(!out.exists(), "nothing is written from a lying registry");
        assert!(
            run.stderr
                .contains("does not match its digest or declared size")
                && run.stderr.contains("says the wasm layer is"),
            "{}",
            run.all()
        );
        assert_eq!(
            proxy.faults().blob_gets,
            1,
            "a size lie is not retried:\n{}",
            run.all()
        );
        assert!(!run.stderr.contains("; retry "), "{}", run.all());
        assert!(
            peak < PEAK_RSS_LIMIT_KIB,
            "peak RSS {peak} KiB while refusing a lying registry"
        );
        // The client stops reading past the declared size: at most what socket buffers hold was sent.
        assert!(
            proxy.faults().lied_bytes < 64 << 20,
            "{} bytes were read",
            proxy.faults().lied_bytes
        );
    }
}

#[test]
fn a_manifest_over_4_mib_is_refused_unread_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry_with("bigmanifest", dir.path());
    for hide_length in [false, true] {
        let proxy = FaultProxy::start(
            reg.port,
            Faults {
                huge_manifest_gets: Some(HUGE),
                hide_length,
                ..Faults::default()
            },
        );
        let out = dir.path().join("out.wasm");
        let reference = format!("{}/bigmanifest:v1", proxy.host());
        let (run, peak) = xtask_peak_rss(&pull_args(&reference, &out, &[]));
        eprintln!(
            "huge manifest (hide_length {hide_length}): peak RSS {peak} KiB\n{}",
            run.stderr
        );
        assert!(!run.status.success() && !out.exists(), "{}", run.all());
        assert!(
            run.stderr
                .contains("the manifest is larger than the 4194304 bytes weir reads"),
            "{}",
            run.all()
        );
        let f = proxy.faults();
        assert_eq!((f.manifest_gets, f.blob_gets), (1, 0), "{}", run.all());
        assert!(
            peak < PEAK_RSS_LIMIT_KIB,
            "peak RSS {peak} KiB while refusing a huge manifest"
        );
    }
}

#[test]
fn a_blob_dripped_a_byte_at_a_time_is_cut_off_by_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry_with("drip", dir.path());
    // 3 KB at 20 ms a byte is a minute; every single read is well within --timeout.
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            drip_blob_gets: Some(Duration::from_millis(20)),
            ..Faults::default()
        },
    );
    let out = dir.path().join("out.wasm");
    let reference = format!("{}/drip:v1", proxy.host());
    let started = Instant::now();
    let run = xtask(
        &pull_args(&reference, &out, &["--deadline", "3", "--timeout", "30"]),
        None,
    );
    let took = started.elapsed();
    assert!(!run.status.success() && !out.exists(), "{}", run.all());
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        run.stderr.contains("within the --deadline of 3s")
            && run.stderr.contains("while downloading the wasm layer"),
        "{}",
        run.all()
    );
}

/// A title change, a screen clear, a CSI by its one-character C1 form, and a bell.
const ESCAPES: &str = "denied\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mred\u{7f}\r\nFAKE: pulled ok";

fn assert_escaped(text: &str) {
    for c in ['\u{1b}', '\u{7}', '\u{9b}', '\u{7f}', '\r'] {
        assert!(
            !text.contains(c),
            "raw {c:?} reached the terminal:\n{text:?}"
        );
    }
    assert!(text.contains("\\x1b]0;pwned\\x07\\x1b[2J"), "{text:?}");
}

#[test]
fn registry_error_bodies_reach_the_terminal_escaped_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry_with("escapes", dir.path());
    let long = format!("{ESCAPES}{}", "x".repeat(1 << 20));
    // A 404 that is no JSON, a 500 retried (the retry notes quote it too), a JSON envelope.
    let envelope = format!(
        r#"{{"errors":[{{"code":"UNSUPPORTED","message":"{}"}}]}}"#,
        ESCAPES
            .replace('\u{1b}', "\\u001b")
            .replace('\u{7}', "\\u0007")
            .replace("\r\n", "\\r\\n")
    );
    for (code, body) in [(404, long.clone()), (500, long.clone()), (400, envelope)] {
        let proxy = FaultProxy::start(
            reg.port,
            Faults {
                manifest_get_error: Some((code, body)),
                ..Faults::default()
            },
        );
        let out = dir.path().join("out.wasm");
        let reference = format!("{}/escapes:v1", proxy.host());
        let run = xtask(&pull_args(&reference, &out, &["--retries", "1"]), None);
        assert!(!run.status.success(), "{}", run.all());
        assert_escaped(&run.stderr);
        assert!(
            run.stderr.len() < 8_000,
            "{} bytes of error for a 1 MiB body",
            run.stderr.len()
        );
    }
    // Push reads the registry's answers the same way.
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            upload_error: Some((500, long)),
            ..Faults::default()
        },
    );
    let (file, _) = module_file(dir.path(), "escapes-push", 2000, 131);
    let run = xtask(
        &[
            "push",
            file.to_str().unwrap(),
            &format!("{}/escapes:v2", proxy.host()),
            "--plain-http",
            "--retries",
            "1",
        ],
        None,
    );
    assert!(!run.status.success(), "{}", run.all());
    assert_escaped(&run.stderr);
    assert!(
        run.stderr.len() < 8_000,
        "{} bytes of error for a 1 MiB body",
        run.stderr.len()
    );
}

/// What an artifact says about its module (root ids, ABI versions in its runtime config) is
/// printed by pull: escaped, in the summary and in --json.
#[test]
fn an_artifacts_runtime_config_is_printed_escaped() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = module_file(dir.path(), "rootid", 2000, 140);
    let reference = format!("{}/rootid:v1", reg.host());
    let evil = "root\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}1m";
    let run = xtask(
        &[
            "push",
            file.to_str().unwrap(),
            &reference,
            "--plain-http",
            "--root-id",
            evil,
        ],
        None,
    );
    assert!(run.status.success(), "{}", run.all());
    let out = dir.path().join("out.wasm");
    for json in [false, true] {
        let mut args = pull_args(&reference, &out, &[]);
        if json {
            args.push("--json");
        }
        let run = xtask(&args, None);
        assert!(run.status.success(), "{}", run.all());
        let printed = run.all();
        assert!(
            !printed
                .chars()
                .filter(|c| *c != '\n')
                .any(xtask::display::is_unsafe),
            "{printed:?}"
        );
        assert!(printed.contains("pwned"), "{printed}");
    }
}
