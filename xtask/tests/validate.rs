//! `cargo xtask validate` against the fixtures in tests/fixtures/validate: each
//! `NAME.wat` (or a raw file) beside `NAME.expected`, the exact output and exit code.
//! `BLESS=1 cargo test -p xtask --test validate` rewrites the expectations.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/validate")
}

/// Turns a fixture into the bytes `validate` reads.
fn module_bytes(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    match path.extension().and_then(|e| e.to_str()) {
        Some("wat") => wat::parse_bytes(&raw).unwrap().into_owned(),
        _ => raw,
    }
}

fn run_validate(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let file = dir.join(format!("{name}.wasm"));
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.replace(&format!("{}/", dir.display()), "")
}

fn check(name: &str, actual: &str) -> Option<String> {
    let expected_path = fixtures().join(format!("{name}.expected"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&expected_path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    (expected != actual).then(|| format!("== {name}: expected\n{expected}== got\n{actual}"))
}

#[test]
fn every_fixture_gives_its_expected_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "expected" {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let actual = run_validate(dir.path(), &name, &module_bytes(&path));
        failures.extend(check(&name, &actual));
        seen += 1;
    }
    // A module cut short in the middle of a section.
    let valid = module_bytes(&fixtures().join("valid.wat"));
    let actual = run_validate(dir.path(), "truncated", &valid[..valid.len() * 2 / 3]);
    failures.extend(check("truncated", &actual));
    assert!(seen >= 6, "fixtures missing: saw {seen}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_fixture_passes_and_every_bad_one_exits_1() {
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "expected") {
            continue;
        }
        let text = std::fs::read_to_string(fixtures().join(format!(
            "{}.expected",
            path.file_stem().unwrap().to_str().unwrap()
        )))
        .unwrap();
        let valid = path.file_stem().is_some_and(|s| s == "valid");
        assert_eq!(text.starts_with("exit: 0\n"), valid, "{}", path.display());
    }
}

/// A module's own names (imports, exports) never reach the terminal raw, in text or `--json`.
#[test]
fn module_names_are_escaped_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = module_bytes(&fixtures().join("terminal-escapes.wat"));
    let file = dir.path().join("terminal-escapes.wasm");
    std::fs::write(&file, bytes).unwrap();
    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.arg("validate").arg(&file);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text
                .chars()
                .filter(|c| *c != '\n')
                .any(weir_build::display::is_unsafe),
            "--json {json}: {text:?}"
        );
        assert!(
            text.contains("\\x1b]0;pwned\\x07") || text.contains("\\\\x1b]0;pwned\\\\x07"),
            "{text}"
        );
        assert!(text.contains("u{202e}"), "{text}");
    }
}
