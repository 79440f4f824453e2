//! `cargo xtask pull`: runs [`pull::pull`] and prints its report.

use anyhow::Result;
use std::path::PathBuf;

use super::oci::{CredentialFlags, TransportFlags};
use crate::pull;

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
    pub credentials: CredentialFlags,
    #[command(flatten)]
    pub transport: TransportFlags,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let options = pull::Options {
            reference: self.reference,
            output: self.output,
            credentials: self.credentials.into(),
            transport: self.transport.into(),
        };
        let r = pull::pull(&options)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "pulled {} ({} layout, {}) to {}",
                r.reference,
                r.layout,
                crate::build::human_bytes(r.size as u64),
                options.output.display()
            );
            println!("  pinned    {}", r.pinned);
            println!("  module    sha256:{}", r.module_sha256);
            if !r.abi_versions.is_empty() {
                println!("  abi       {}", r.abi_versions.join(", "));
            }
            if !r.root_ids.is_empty() {
                println!("  root ids  {}", r.root_ids.join(", "));
            }
        }
        Ok(())
    }
}
