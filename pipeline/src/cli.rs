//! The command line: parses flags, runs one subcommand, prints the error chain and
//! exits with its code. A project's `xtask/src/main.rs` calls [`main`] and nothing else.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use crate::{bench, build, deploy, doctor, init, new, pull, push, run, test, validate};

/// weir: from a Rust filter to a running service mesh.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, long_about = None)]
#[command(after_help = "Start here:
  cargo xtask init ../my-filters     a new project of your own (then `cargo xtask new NAME` in it)
  cargo xtask build                  compile, validate and optimize every filter
  cargo xtask test                   run every test, including end-to-end in Envoy
  cargo xtask run add-header         try a filter in a local Envoy

Paths are relative to where you run it; the project is the Cargo workspace around that directory.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(init::Args),
    New(new::Args),
    Build(build::Args),
    Validate(validate::Args),
    Run(run::Args),
    Test(test::Args),
    Push(push::Args),
    Pull(pull::Args),
    Deploy(deploy::Args),
    Bench(bench::Args),
    Setup(doctor::SetupArgs),
    Doctor(doctor::DoctorArgs),
}

/// Runs `cargo xtask` with the process's arguments: the whole `main` of a weir project.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => a.run(),
        Command::New(a) => a.run(),
        Command::Build(a) => a.run(),
        Command::Validate(a) => a.run(),
        Command::Run(a) => a.run(),
        Command::Test(a) => a.run(),
        Command::Push(a) => a.run(),
        Command::Pull(a) => a.run(),
        Command::Deploy(a) => a.run(),
        Command::Bench(a) => a.run(),
        Command::Setup(a) => a.run(),
        Command::Doctor(a) => a.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if crate::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(u8::try_from(crate::exit_code(&e)).unwrap_or(1))
        }
    }
}
