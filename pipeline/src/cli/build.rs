//! `cargo xtask build`: runs [`build::build_filters`] and prints a table (or `--json`).

use anyhow::Result;

use crate::build::{self, Built, Options};
use crate::project;
use crate::toolchain::Target;

const EXAMPLES: &str = "Examples:
  cargo xtask build                              every filter, wasm32-wasip1
  cargo xtask build add-header --json            one filter, a JSON report for CI
  cargo xtask build --target wasm32-unknown-unknown
  cargo xtask build add-header --debug           keep names and debug info

Modules go to target/filters/<filter>.wasm (other targets: target/filters/<target>/<filter>.wasm).";

/// Options of `cargo xtask build`.
#[derive(clap::Args, Debug)]
#[command(about = "Compile, validate and optimize filters into target/filters/", after_help = EXAMPLES)]
pub struct Args {
    /// Filters to build (directories under filters/); all of them when none are named.
    pub filters: Vec<String>,
    /// The wasm target.
    #[arg(long, value_enum, default_value = "wasm32-wasip1")]
    pub target: Target,
    /// Print the report as a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep debug info and function names (bigger module, readable backtraces).
    #[arg(long)]
    pub debug: bool,
    /// Fail instead of installing a missing toolchain.
    #[arg(long)]
    pub no_install: bool,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let options = Options {
            target: self.target,
            debug: self.debug,
            install: !self.no_install,
        };
        let built = build::build_filters(&self.filters, &options)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&built)?);
        } else {
            print_table(&built);
        }
        Ok(())
    }
}

fn print_table(built: &[Built]) {
    let rows: Vec<[String; 6]> = built
        .iter()
        .map(|b| {
            [
                b.filter.clone(),
                b.target.to_string(),
                build::human_bytes(b.raw_bytes),
                build::human_bytes(b.bytes),
                b.sha256.clone(),
                format!("{:.1} s", b.millis as f64 / 1000.0),
            ]
        })
        .collect();
    let header = ["filter", "target", "raw", "optimized", "sha256", "time"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    for b in built {
        println!(
            "{}",
            b.path
                .strip_prefix(project::root())
                .unwrap_or(&b.path)
                .display()
        );
    }
}
