//! `cargo xtask validate`: prints [`validate::verdict`] for each file; exits 1 when any is bad.

use anyhow::Result;
use std::path::PathBuf;

use super::Exit;
use crate::validate::{self, Verdict};

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

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let verdicts: Vec<Verdict> = self.files.iter().map(|f| validate::verdict(f)).collect();
        let bad = verdicts.iter().filter(|v| !v.ok).count();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&verdicts)?);
        } else {
            for v in &verdicts {
                if v.ok {
                    print!("{}", validate::render(v));
                } else {
                    eprint!("{}", validate::render(v));
                }
            }
        }
        if bad > 0 {
            let message = format!(
                "{bad} of {} modules do not fit the proxy-wasm ABI",
                verdicts.len()
            );
            return Err(Exit { message, code: 1 }.into());
        }
        Ok(())
    }
}
