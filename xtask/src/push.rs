//! `cargo xtask push`: not implemented yet (see its issue).

/// Options of `cargo xtask push`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask push` is not implemented yet")
    }
}
