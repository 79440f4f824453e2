//! `cargo xtask new NAME`: runs [`new::create`] and says what to do next.

use crate::{new, project};

/// Options of `cargo xtask new`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Create a new filter under filters/",
    after_help = "Example:\n  cargo xtask new rate-limit\n  cargo test -p rate-limit\n  cargo xtask run rate-limit --config @filters/rate-limit/config.example.json"
)]
pub struct Args {
    /// The filter's name: its directory and crate name (lowercase letters, digits, `-`, `_`).
    pub name: String,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        let dir = new::create(&project::root(), &self.name)?;
        println!("created {}", dir.display());
        println!("next:\n  cargo test -p {0}\n  cargo xtask build {0}\n  cargo xtask run {0} --config @filters/{0}/config.example.json", self.name);
        Ok(())
    }
}
