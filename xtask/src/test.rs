//! `cargo xtask test`: install what is missing, build every filter for both
//! targets, then run every test (unit, native SDK, fixtures, end-to-end in Envoy).

use anyhow::{bail, Context, Result};
use std::time::Instant;

use crate::build::{self, Options};
use crate::toolchain::Target;
use crate::{doctor, project};

const EXAMPLES: &str = "Examples:
  cargo xtask test                     everything, installing what is missing
  cargo xtask test --no-install        fail instead of installing
  cargo xtask test -- add_header       pass a filter to cargo test";

/// Options of `cargo xtask test`.
#[derive(clap::Args, Debug)]
#[command(about = "Run every test: unit, native filter tests, fixtures, end-to-end in real Envoy", after_help = EXAMPLES)]
pub struct Args {
    /// Fail instead of installing missing tools.
    #[arg(long)]
    pub no_install: bool,
    /// Arguments passed on to `cargo test`.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let start = Instant::now();
        if self.no_install {
            let missing: Vec<&str> = doctor::NEEDS.iter().filter(|n| !(n.present)()).map(|n| n.name).collect();
            if !missing.is_empty() {
                bail!("missing {}: run `cargo xtask setup` (or drop --no-install)", missing.join(", "));
            }
        } else {
            doctor::install_all()?;
        }
        for target in [Target::Wasip1, Target::Unknown] {
            for filter in project::filters()? {
                let b = build::build(&filter, &Options { target, debug: false, install: !self.no_install })?;
                eprintln!("       Built {} ({}) {} -> {}", b.filter, b.target, build::human_bytes(b.raw_bytes), build::human_bytes(b.bytes));
            }
        }
        let built = start.elapsed();
        let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(project::root())
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(&self.cargo_args)
            .env("WEIR_FILTERS_BUILT", "1")
            .status()
            .context("cannot run cargo test")?;
        eprintln!(
            "     Elapsed {:.1} s (building filters {:.1} s)",
            start.elapsed().as_secs_f64(),
            built.as_secs_f64()
        );
        if !status.success() {
            bail!("tests failed (see above)");
        }
        Ok(())
    }
}
