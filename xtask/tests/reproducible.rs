//! The same source built in two different directories gives the same module sha256:
//! no path of the machine leaks into it.

use std::path::Path;
use std::process::Command;

fn copy_workspace(to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::create_dir_all(to).unwrap();
    for part in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        ".cargo",
        "sdk",
        "filters",
        "benches",
        "pipeline",
        "xtask",
        "tests",
    ] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(root.join(part))
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success(), "cannot copy {part}");
    }
}

fn build_in(root: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build", "add-header", "--json", "--no-install"])
        .env("WEIR_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build in {} failed:\n{}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report[0]["sha256"].as_str().unwrap().to_owned()
}

#[test]
fn two_checkouts_in_different_directories_build_the_same_module() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (first, second) = (
        a.path().join("weir"),
        b.path().join("elsewhere/deeper/weir-copy"),
    );
    copy_workspace(&first);
    copy_workspace(&second);
    let (x, y) = (build_in(&first), build_in(&second));
    assert_eq!(x.len(), 64);
    assert_eq!(x, y, "module depends on the checkout's path");
}
