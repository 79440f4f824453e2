//! weir's pipeline as a library: `main.rs` only parses flags and dispatches here,
//! and the end-to-end tests in `tests/` call the same functions.

pub mod abi;
pub mod bench;
pub mod build;
pub mod configure;
pub mod deploy;
pub mod display;
pub mod doctor;
pub mod envoy;
pub mod new;
pub mod oci;
pub mod optimize;
pub mod project;
pub mod pull;
pub mod push;
pub mod run;
pub mod test;
pub mod toolchain;
pub mod validate;

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
    e.chain().find_map(|c| c.downcast_ref::<Exit>()).map_or(1, |x| x.code)
}

/// True when `e` is a write to a closed pipe (`cargo xtask deploy asm | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
