//! `cargo xtask new`: not implemented yet (see its issue).

/// Options of `cargo xtask new`.
#[derive(clap::Args, Debug)]
pub struct Args {}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask new` is not implemented yet")
    }
}
