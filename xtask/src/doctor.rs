//! `cargo xtask doctor` and `setup` (being written).

/// Options of `cargo xtask doctor`.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {}
/// Options of `cargo xtask setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {}

impl DoctorArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("not implemented yet")
    }
}
impl SetupArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("not implemented yet")
    }
}
