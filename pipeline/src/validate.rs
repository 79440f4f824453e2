//! `cargo xtask validate`: check modules against the proxy-wasm ABI, every problem at once.

use std::path::{Path, PathBuf};

use crate::abi;

/// The verdict on one file.
#[derive(Debug, serde::Serialize)]
pub struct Verdict {
    /// The file.
    pub file: PathBuf,
    /// True when Envoy can load it.
    pub ok: bool,
    /// The ABI versions it declares.
    pub abi_versions: Vec<String>,
    /// Hook exports it has.
    pub hooks: usize,
    /// What is wrong: ABI problems, or why it could not be read.
    pub problems: Vec<abi::Problem>,
}

/// Checks one file.
pub fn verdict(file: &Path) -> Verdict {
    let unreadable = |subject: &str, message: String| Verdict {
        file: file.to_path_buf(),
        ok: false,
        abi_versions: Vec::new(),
        hooks: 0,
        problems: vec![abi::Problem {
            subject: subject.into(),
            message,
        }],
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return unreadable("file", format!("cannot read: {e}")),
    };
    match abi::check(&bytes) {
        Ok(report) => Verdict {
            file: file.to_path_buf(),
            ok: report.is_ok(),
            abi_versions: report.abi_versions,
            hooks: report.hooks,
            problems: report.problems,
        },
        Err(e) => unreadable("module", e.to_string()),
    }
}

/// The text `validate` prints for one verdict: an `ok` line, or one line per problem.
pub fn render(v: &Verdict) -> String {
    if v.ok {
        return format!(
            "{}: ok (proxy-wasm ABI {}, {} hooks)\n",
            v.file.display(),
            v.abi_versions.join(", "),
            v.hooks
        );
    }
    v.problems
        .iter()
        .map(|p| format!("{}: {p}\n", v.file.display()))
        .collect()
}
