//! `cargo xtask bench`: not implemented yet (see its issue).

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask bench` is not implemented yet")
    }
}
