//! `cargo xtask test`: [`test::ensure_needs`], [`test::build_filters`], [`test::cargo_test`],
//! [`test::module_tests`] for each filter and target, then [`test::in_envoy`] for each
//! filter, with a progress line per step on stderr.

use anyhow::Result;
use std::time::Instant;

use crate::toolchain::Target;
use crate::{build, project, test};

const EXAMPLES: &str = "Examples:
  cargo xtask test                     everything, installing what is missing
  cargo xtask test --no-install        fail instead of installing
  cargo xtask test -- add_header       pass a filter to cargo test";

/// Options of `cargo xtask test`.
#[derive(clap::Args, Debug)]
#[command(about = "Run every test: the workspace's tests, each filter's tests again through its compiled module (both targets), each filter in a real Envoy", after_help = EXAMPLES)]
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
        test::ensure_needs(!self.no_install)?;
        test::build_filters(!self.no_install, |b| {
            eprintln!(
                "       Built {} ({}) {} -> {}",
                b.filter,
                b.target,
                build::human_bytes(b.raw_bytes),
                build::human_bytes(b.bytes)
            )
        })?;
        let built = start.elapsed();
        test::cargo_test(&self.cargo_args)?;
        let modules = Instant::now();
        for target in [Target::Wasip1, Target::Unknown] {
            for filter in &project::filters()? {
                let run = test::module_tests(filter, target)?;
                eprintln!(
                    "      Tested {} against its {} module ({:.1} s)",
                    run.filter,
                    run.target,
                    run.elapsed.as_secs_f64()
                );
            }
        }
        let modules = modules.elapsed();
        for filter in &project::filters()? {
            let seen = test::in_envoy(filter)?;
            eprintln!(
                "       Envoy {} answered GET / with {} through `{}`, no trap",
                seen.version, seen.status, filter.name
            );
        }
        eprintln!(
            "     Elapsed {:.1} s (building filters {:.1} s, their tests against the modules {:.1} s)",
            start.elapsed().as_secs_f64(),
            built.as_secs_f64(),
            modules.as_secs_f64()
        );
        Ok(())
    }
}
