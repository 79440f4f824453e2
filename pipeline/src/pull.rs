//! `cargo xtask pull`: fetches a wasm module from a registry or OCI layout in any layout the meshes use, verified, written atomically.

use crate::oci::credentials::{self, CredentialArgs};
use crate::oci::layout::Layout;
use crate::oci::reference::Target;
use crate::oci::registry::{Registry, TransportArgs};
use crate::oci::transfer::{self, Store};
use crate::project;
use anyhow::{Context, Result};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:
  cargo xtask pull localhost:5000/add-header:v1 -o add-header.wasm --plain-http
  cargo xtask pull registry.example.com/team/add-header@sha256:<digest> -o f.wasm
  cargo xtask pull oci:target/oci:v1 -o f.wasm --json

Finds the module the way Istio's fetcher does: a Docker or OCI image whose one tar+gzip layer
holds plugin.wasm (compat); two layers, one of them application/vnd.module.wasm.content.layer.v1+wasm
(universal); and one wasm layer (the seed's ORAS layout, asm). Every digest is checked before the
file is written, and the file is replaced atomically.";

/// Options of `cargo xtask pull`.
#[derive(clap::Args, Debug)]
#[command(about = "Pull a wasm module from an OCI registry or layout", after_help = EXAMPLES)]
pub struct Args {
    /// Where from: HOST[:PORT]/REPO[:TAG|@DIGEST], or oci:DIR[:TAG].
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The file to write the module to.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    #[command(flatten)]
    pub transport: TransportArgs,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let target = Target::parse(&self.reference)?;
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
                        let login = credentials::resolve(&self.credentials, &reference.host)?;
                        let registry = Registry::new(
                            reference,
                            &self.transport,
                            &login,
                            indicatif::ProgressBar::hidden(),
                        )?;
                        registry.authenticate(false).await?;
                        Store::Registry(registry)
                    }
                };
                transfer::pull(&store).await
            })?;
        project::write_atomic(&self.output, &pulled.module)?;
        let (abi, roots) = match &pulled.runtime_config {
            Some(c) => (c.abi_versions.clone(), c.config.root_ids.clone()),
            None => (crate::abi::abi_versions(&pulled.module), Vec::new()),
        };
        if self.json {
            let out = serde_json::json!({
                "reference": self.reference,
                "pinned": pulled.pinned,
                "digest": pulled.digest.as_str(),
                "layout": pulled.layout,
                "layer_digest": pulled.layer_digest,
                "module_sha256": project::sha256_hex(&pulled.module),
                "size": pulled.module.len(),
                "abi_versions": abi,
                "root_ids": roots,
                "output": self.output.display().to_string(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!(
                "pulled {} ({} layout, {}) to {}",
                self.reference,
                pulled.layout,
                crate::build::human_bytes(pulled.module.len() as u64),
                self.output.display()
            );
            println!("  pinned    {}", pulled.pinned);
            println!("  module    sha256:{}", project::sha256_hex(&pulled.module));
            if !abi.is_empty() {
                println!("  abi       {}", abi.join(", "));
            }
            if !roots.is_empty() {
                println!("  root ids  {}", roots.join(", "));
            }
        }
        Ok(())
    }
}
