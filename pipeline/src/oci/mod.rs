//! OCI registries and image layouts: where `push` puts wasm artifacts and `pull` finds them.

pub mod artifact;
pub mod credentials;
pub mod digest;
pub mod layout;
pub mod reference;
pub mod registry;
pub mod retry;
pub mod transfer;
