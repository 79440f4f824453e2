//! `cargo xtask deploy`: not implemented yet (see its issue).

/// Options of `cargo xtask deploy`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask deploy` is not implemented yet")
    }
}
