//! `cargo xtask` for this repository: the same few lines a team's own project has
//! (`cargo xtask init` writes them); everything else is in `weir-build`.

fn main() -> std::process::ExitCode {
    weir_build::cli::main()
}
