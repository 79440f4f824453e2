//! `cargo xtask init DIR`: runs [`init::create`] and prints what it wrote.

use anyhow::Result;
use std::path::PathBuf;

use crate::init;

const EXAMPLES: &str = "Examples:
  cargo xtask init ../my-filters                      depend on the released weir crates
  cargo xtask init ../my-filters --filter hello       with a first filter, filters/hello
  cargo xtask init ../my-filters --weir-path .        depend on this checkout (offline, unreleased)
then:
  cd ../my-filters && cargo xtask new hello && cargo xtask test";

/// Options of `cargo xtask init`.
#[derive(clap::Args, Debug)]
#[command(about = "Create a standalone filter project of your own, with its own cargo xtask", after_help = EXAMPLES)]
pub struct Args {
    /// The new project's directory (must not exist, or be empty).
    pub dir: PathBuf,
    /// Depend on the weir checkout at PATH (its sdk/ and pipeline/) instead of the released crates.
    #[arg(long, value_name = "PATH")]
    pub weir_path: Option<PathBuf>,
    /// Also create a first filter, filters/NAME.
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Print what was created as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let created = init::create(
            &self.dir,
            &init::Options {
                weir_path: self.weir_path,
                filter: self.filter,
            },
        )?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&created)?);
            return Ok(());
        }
        println!(
            "created {} (weir from {})",
            created.dir.display(),
            created.weir
        );
        for f in &created.files {
            println!("  {}", f.display());
        }
        println!(
            "next:\n  cd {}\n  cargo xtask new my-filter\n  cargo xtask test",
            created.dir.display()
        );
        Ok(())
    }
}
