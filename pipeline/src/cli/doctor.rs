//! `cargo xtask doctor` prints [`doctor::check`]; `cargo xtask setup` runs [`doctor::install_all`].

use anyhow::Result;

use super::Exit;
use crate::doctor;

/// Options of `cargo xtask doctor`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Report what the pipeline needs: found, or missing with the fix",
    after_help = "Example:\n  cargo xtask doctor        then `cargo xtask setup` to install what is missing"
)]
pub struct DoctorArgs {}

impl DoctorArgs {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let mut missing = 0;
        for n in doctor::check()? {
            if n.present {
                println!("found    {:<16} {}", n.name, n.purpose);
            } else {
                missing += 1;
                println!(
                    "missing  {:<16} {}\n         fix: {} (or `cargo xtask setup`)",
                    n.name, n.purpose, n.fix
                );
            }
        }
        for (t, toolchain) in doctor::toolchains() {
            match toolchain {
                Some(label) => println!("         {t}: builds with {label}"),
                None => println!("         {t}: no toolchain"),
            }
        }
        if missing > 0 {
            return Err(Exit {
                message: format!("{missing} missing: run `cargo xtask setup`"),
                code: 1,
            }
            .into());
        }
        Ok(())
    }
}

/// Options of `cargo xtask setup`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Install what the pipeline needs (apt-get as root on Debian, pip); idempotent",
    after_help = "Example:\n  cargo xtask setup         installs only what `cargo xtask doctor` reports missing"
)]
pub struct SetupArgs {}

impl SetupArgs {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        doctor::install_all()?;
        println!("everything weir needs is installed (see `cargo xtask doctor`)");
        Ok(())
    }
}
