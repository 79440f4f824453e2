//! `cargo xtask test` (being written).

/// Options of `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask test` is not implemented yet")
    }
}
