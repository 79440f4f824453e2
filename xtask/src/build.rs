//! `cargo xtask build` (being written).

/// Options of `cargo xtask build`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask build` is not implemented yet")
    }
}
