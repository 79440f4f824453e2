//! The command line, the one layer that knows clap and prints: one module per command
//! parses its flags, calls the library (which returns data and prints nothing), prints
//! the result and picks the exit code. A project's `xtask/src/main.rs` calls [`main`]
//! and nothing else.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod build;
mod deploy;
mod doctor;
mod init;
mod new;
mod oci;
mod pull;
mod push;
mod run;
mod test;
mod validate;

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

// Parsed once per process: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
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
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote registries, helpers and modules: no escape sequence reaches the terminal.
            eprintln!("error: {}", crate::display::escape_lines(&format!("{e:#}")));
            ExitCode::from(u8::try_from(exit_code(&e)).unwrap_or(1))
        }
    }
}

/// An error that carries its own exit code (e.g. `validate` exits 1 on a bad module).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// What to print.
    pub message: String,
    /// The process exit code.
    pub code: i32,
}

/// The exit code for `e`: an [`Exit`]'s own, otherwise 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Exit>())
        .map_or(1, |x| x.code)
}

/// True when `e` is a write to a closed pipe (`cargo xtask deploy asm | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Implements [`clap::ValueEnum`] for a library enum, so the library carries no clap
/// derive: `value_enum!(Type { Type::A => "name": "help shown in --help", ... })`.
macro_rules! value_enum {
    ($ty:ty { $($variant:path => $name:literal: $help:literal),* $(,)? }) => {
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),*]
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(match self {
                    $($variant => clap::builder::PossibleValue::new($name).help($help)),*
                })
            }
        }
    };
}
pub(crate) use value_enum;

value_enum!(crate::toolchain::Target {
    crate::toolchain::Target::Wasip1 => "wasm32-wasip1": "WASI preview 1 (the default; what Istio and Envoy examples use)",
    crate::toolchain::Target::Unknown => "wasm32-unknown-unknown": "Bare wasm32, no WASI imports",
});
value_enum!(crate::oci::artifact::Format {
    crate::oci::artifact::Format::Universal => "universal": "Two layers (runtime config + raw module): Istio, Envoy Gateway, Higress",
    crate::oci::artifact::Format::Asm => "asm": "The seed's ORAS layout (wasm config, one raw module layer): ASM's ORAS flow",
    crate::oci::artifact::Format::Compat => "compat": "An OCI image whose tar+gzip layer holds plugin.wasm: Istio's \"compat\" variant",
});
value_enum!(crate::envoy::FailurePolicy {
    crate::envoy::FailurePolicy::FailOpen => "fail-open": "Requests bypass the failed filter",
    crate::envoy::FailurePolicy::FailClosed => "fail-closed": "Requests get 503 while the VM is failed (Envoy's default)",
    crate::envoy::FailurePolicy::FailReload => "fail-reload": "Envoy reloads the VM and retries; requests meanwhile are failed closed",
});
