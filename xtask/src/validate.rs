//! `cargo xtask validate` (being written).

/// Options of `cargo xtask validate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask validate` is not implemented yet")
    }
}
