//! `cargo xtask pull`: fetches a wasm module from a registry or OCI layout in any layout the meshes use, verified, written atomically.

use crate::oci::credentials::{self, CredentialArgs};
use crate::oci::layout::Layout;
use crate::oci::reference::Target;
use crate::oci::registry::{Registry, TransportArgs};
use crate::oci::transfer::{self, Store};
use crate::project;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Where `pull` fetches from and writes to.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where from: HOST[:PORT]/REPO[:TAG|@DIGEST], or oci:DIR[:TAG].
    pub reference: String,
    /// The file to write the module to.
    pub output: PathBuf,
    /// Which login to use.
    pub credentials: CredentialArgs,
    /// How to reach the registry.
    pub transport: TransportArgs,
}

/// What a pull wrote (`pull --json` prints it).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PullReport {
    /// The reference as given.
    pub reference: String,
    /// The reference pinned to the manifest digest.
    pub pinned: String,
    /// The manifest digest.
    pub digest: String,
    /// The layout the module was found in (`universal`, `asm`, `compat`, `docker-compat`).
    pub layout: &'static str,
    /// The digest of the layer that held the module.
    pub layer_digest: String,
    /// Hex sha256 of the module.
    pub module_sha256: String,
    /// The module's size in bytes.
    pub size: usize,
    /// The ABI versions the runtime config (or else the module) declares.
    pub abi_versions: Vec<String>,
    /// The root ids the runtime config lists.
    pub root_ids: Vec<String>,
    /// The file written.
    pub output: String,
}

/// Fetches the module, verifies every digest, and writes it to `options.output` atomically.
pub fn pull(options: &Options) -> Result<PullReport> {
    let target = Target::parse(&options.reference)?;
    let pulled = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let store = match target {
                Target::Layout(reference) => Store::Layout {
                    layout: Layout::open(&reference.dir)?,
                    reference,
                },
                Target::Registry(reference) => {
                    let login = credentials::resolve(&options.credentials, &reference.host)?;
                    let registry = Registry::new(
                        reference,
                        &options.transport,
                        &login,
                        indicatif::ProgressBar::hidden(),
                    )?;
                    registry.authenticate(false).await?;
                    Store::Registry(Box::new(registry))
                }
            };
            transfer::pull(&store).await
        })?;
    project::write_atomic(&options.output, &pulled.module)?;
    let (abi_versions, root_ids) = match &pulled.runtime_config {
        Some(c) => (c.abi_versions.clone(), c.config.root_ids.clone()),
        None => (crate::abi::abi_versions(&pulled.module), Vec::new()),
    };
    Ok(PullReport {
        reference: options.reference.clone(),
        pinned: pulled.pinned,
        digest: pulled.digest.as_str().to_owned(),
        layout: pulled.layout,
        layer_digest: pulled.layer_digest,
        module_sha256: project::sha256_hex(&pulled.module),
        size: pulled.module.len(),
        abi_versions,
        root_ids,
        output: options.output.display().to_string(),
    })
}
