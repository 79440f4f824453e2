//! `cargo xtask run` (being written).

/// Options of `cargo xtask run`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask run` is not implemented yet")
    }
}
