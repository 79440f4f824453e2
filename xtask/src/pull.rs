//! `cargo xtask pull`: not implemented yet (see its issue).

/// Options of `cargo xtask pull`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask pull` is not implemented yet")
    }
}
