//! House rules that ARCHITECTURE.md states, checked on every `cargo test` (after
//! rust-analyzer's `tidy.rs`): rustfmt, module docs, what filters may depend on, no
//! `unwrap`/`expect` in the SDK's non-test code, and files written only through the
//! atomic writer.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the checkout")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, skipping `target/` and hidden directories.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The source directories whose modules are ours (fixtures included).
fn source_dirs() -> Vec<PathBuf> {
    let root = root();
    let mut dirs = vec![
        root.join("sdk/src"),
        root.join("sdk/macros/src"),
        root.join("sdk/wasm-host/src"),
        root.join("pipeline/src"),
        root.join("xtask/src"),
        root.join("tests/src"),
    ];
    for parent in ["filters", "benches", "tests/fixtures"] {
        if let Ok(entries) = std::fs::read_dir(root.join(parent)) {
            for e in entries.flatten() {
                if e.path().join("Cargo.toml").is_file() {
                    dirs.push(e.path().join("src"));
                }
            }
        }
    }
    dirs
}

/// The code before a file's `#[cfg(test)]` module (by convention the last item).
fn non_test_code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Lines of `text` without comments (doc comments included).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

#[test]
fn the_tree_is_formatted_with_rustfmt() {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["fmt", "--all", "--check"])
        .current_dir(root())
        .output()
        .expect("run cargo fmt (rustup component add rustfmt)");
    let diff = String::from_utf8_lossy(&out.stdout);
    let files: Vec<&str> = diff.lines().filter(|l| l.starts_with("Diff in")).collect();
    assert!(
        out.status.success(),
        "`cargo fmt --all` would change {} places; run it:\n{}",
        files.len(),
        files.join("\n")
    );
}

#[test]
fn every_module_opens_with_a_doc_comment_saying_its_job() {
    let mut bad = Vec::new();
    for dir in source_dirs() {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if !text.trim_start().starts_with("//!") {
                bad.push(
                    file.strip_prefix(root())
                        .unwrap_or(&file)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert!(
        bad.is_empty(),
        "modules without a `//!` line saying their job:\n{}",
        bad.join("\n")
    );
}

#[test]
fn filters_depend_only_on_the_sdk_and_serde() {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let filters = xtask::project::filters().expect("the workspace's filters");
    assert!(
        filters.len() >= 4,
        "expected this repository's filters, found {filters:?}"
    );
    let mut bad = Vec::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().unwrap_or_default();
        if !filters.iter().any(|f| f.name == name) {
            continue;
        }
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let normal = dep["kind"].is_null();
            if normal && !["weir-sdk", "serde"].contains(&dep_name) {
                bad.push(format!("{name} depends on {dep_name}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "filters depend only on weir-sdk and serde:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_sdk_has_no_unwrap_or_expect_outside_tests() {
    let root = root();
    let mut bad = Vec::new();
    for file in rust_files(&root.join("sdk/src"))
        .into_iter()
        .chain(rust_files(&root.join("sdk/macros/src")))
        .chain(rust_files(&root.join("sdk/wasm-host/src")))
    {
        // The native test harness is test code: it runs inside a filter author's tests.
        if file.ends_with("testing.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in code_lines(non_test_code(&text)) {
            if line.contains(".unwrap()") || line.contains(".expect(") {
                bad.push(format!(
                    "{}:{n}: {}",
                    file.strip_prefix(&root).unwrap_or(&file).display(),
                    line.trim()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unwrap/expect in the SDK (return an error or fail open instead):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_toolchain_writes_files_only_through_the_atomic_writer() {
    let root = root();
    let mut bad = Vec::new();
    for file in rust_files(&root.join("pipeline/src")) {
        if file.ends_with("project.rs") {
            continue; // the atomic writer itself
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = non_test_code(&text);
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let writes = ["fs::write(", "File::create(", "OpenOptions::new()"]
                .iter()
                .any(|w| line.contains(w));
            if !writes || line.trim_start().starts_with("//") {
                continue;
            }
            // A write into a private temporary directory says so on the line before.
            let justified = lines[i.saturating_sub(2)..i]
                .iter()
                .any(|l| l.trim_start().starts_with("// scratch:"));
            if !justified {
                bad.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(&root).unwrap_or(&file).display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "files written outside project::write_atomic (use it, or say `// scratch:` for a private temporary file):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_sdk_documents_without_warnings() {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["doc", "-p", "weir-sdk", "-p", "weir-macros", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(root())
        .output()
        .expect("run cargo doc");
    assert!(
        out.status.success(),
        "cargo doc of the SDK warns:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
