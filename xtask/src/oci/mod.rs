//! OCI registries and image layouts: where `push` puts wasm artifacts and `pull` finds them.

pub mod credentials;
