//! `cargo xtask`: parses flags and dispatches one subcommand. Paths the user gives
//! are relative to where they ran it; the workspace's own paths come from `project::root()`.

use clap::{Parser, Subcommand};
use xtask::{bench, build, deploy, doctor, new, pull, push, run, test, validate};

/// weir: from a Rust filter to a running service mesh.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, long_about = None)]
#[command(after_help = "Start here:\n  cargo xtask build          compile, validate and optimize every filter\n  cargo xtask test           run every test, including end-to-end in Envoy\n  cargo xtask run add-header try a filter in a local Envoy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Build(build::Args),
    Validate(validate::Args),
    Run(run::Args),
    Test(test::Args),
    Push(push::Args),
    Pull(pull::Args),
    Deploy(deploy::Args),
    New(new::Args),
    Bench(bench::Args),
    Setup(doctor::SetupArgs),
    Doctor(doctor::DoctorArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => a.run(),
        Command::Validate(a) => a.run(),
        Command::Run(a) => a.run(),
        Command::Test(a) => a.run(),
        Command::Push(a) => a.run(),
        Command::Pull(a) => a.run(),
        Command::Deploy(a) => a.run(),
        Command::New(a) => a.run(),
        Command::Bench(a) => a.run(),
        Command::Setup(a) => a.run(),
        Command::Doctor(a) => a.run(),
    };
    if let Err(e) = result {
        if xtask::is_broken_pipe(&e) {
            std::process::exit(0);
        }
        // Errors quote registries, helpers and modules: no escape sequence reaches the terminal.
        eprintln!("error: {}", xtask::display::escape_lines(&format!("{e:#}")));
        std::process::exit(xtask::exit_code(&e));
    }
}
