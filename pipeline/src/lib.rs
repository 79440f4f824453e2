//! weir's toolchain as a library: build, validate, optimize, run, test, push, pull and
//! deploy proxy-wasm filters of the Cargo workspace around the current directory.
//!
//! A project's `cargo xtask` is this crate's [`cli::main`] and nothing else (`cargo xtask
//! init` writes it); the end-to-end tests call the same functions the commands do.

pub mod abi;
pub mod bench;
pub mod build;
pub mod cli;
pub mod configure;
pub mod deploy;
pub mod display;
pub mod doctor;
pub mod envoy;
pub mod init;
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
