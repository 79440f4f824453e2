//! `cargo xtask validate`: check modules against the proxy-wasm ABI, every problem at once.

use anyhow::Result;
use std::path::{Path, PathBuf};

use crate::abi;

const EXAMPLES: &str = "Examples:
  cargo xtask validate target/filters/add-header.wasm
  cargo xtask validate vendor/*.wasm --json

Exit status: 0 when every module fits the ABI, 1 when any problem is found.";

/// Options of `cargo xtask validate`.
#[derive(clap::Args, Debug)]
#[command(about = "Check wasm modules against the proxy-wasm ABI Envoy loads", after_help = EXAMPLES)]
pub struct Args {
    /// Modules to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print a JSON array of reports instead of text.
    #[arg(long)]
    pub json: bool,
}

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
        problems: vec![abi::Problem { subject: subject.into(), message }],
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
    v.problems.iter().map(|p| format!("{}: {p}\n", v.file.display())).collect()
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let verdicts: Vec<Verdict> = self.files.iter().map(|f| verdict(f)).collect();
        let bad = verdicts.iter().filter(|v| !v.ok).count();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&verdicts)?);
        } else {
            for v in &verdicts {
                if v.ok {
                    print!("{}", render(v));
                } else {
                    eprint!("{}", render(v));
                }
            }
        }
        if bad > 0 {
            let message = format!("{bad} of {} modules do not fit the proxy-wasm ABI", verdicts.len());
            return Err(crate::Exit { message, code: 1 }.into());
        }
        Ok(())
    }
}
