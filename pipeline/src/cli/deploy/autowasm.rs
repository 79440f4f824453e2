//! The flags of `cargo xtask deploy autowasm`, turned into [`crate::deploy::autowasm::Options`].

use super::{ModuleFlags, OutputFlags, PinFlags};
use crate::deploy::autowasm;

/// Options of `cargo xtask deploy autowasm`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples (Tencent Cloud Mesh's walkthrough):
  cargo xtask deploy autowasm --name test --image ccr.ccs.tencentyun.com/REPO/wasm-add-header:v0.3 \\
      --apply-port 9080 --root-id test --vm-id test --secret test --selector app=details
  cargo xtask deploy autowasm --name test --object-url https://bucket.example.com/add-header.wasm \\
      --apply-port 9080 --selector app=details

AutoWasm has no configuration or failure-policy field; its controller generates an
EnvoyFilter that fails closed.")]
pub struct Args {
    /// metadata.name (a DNS-1123 subdomain).
    #[arg(long)]
    pub name: String,
    /// metadata.namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// spec.filter.source.registry.image: the module's OCI image.
    #[arg(
        long,
        value_name = "REF",
        required_unless_present = "object_url",
        conflicts_with = "object_url"
    )]
    pub image: Option<String>,
    /// spec.filter.source.object.url: a public http(s) URL of the .wasm file.
    #[arg(long, value_name = "URL")]
    pub object_url: Option<String>,
    /// spec.filter.applyPorts: a port the filter applies to, repeatable (default: all ports).
    #[arg(long = "apply-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub apply_ports: Vec<u16>,
    /// spec.filter.rootID (default: the --filter's root id; optional).
    #[arg(long)]
    pub root_id: Option<String>,
    /// spec.filter.vmID (optional: the controller generates one).
    #[arg(long)]
    pub vm_id: Option<String>,
    /// spec.secret: the image registry's pull secret (not needed for a public image).
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// spec.selector.matchLabels: KEY=VALUE, repeatable.
    #[arg(long = "selector", value_name = "KEY=VALUE", required = true)]
    pub selectors: Vec<String>,
    #[command(flatten)]
    pub module: ModuleFlags,
    #[command(flatten)]
    pub pin: PinFlags,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl From<Args> for autowasm::Options {
    fn from(a: Args) -> Self {
        autowasm::Options {
            name: a.name,
            namespace: a.namespace,
            image: a.image,
            object_url: a.object_url,
            apply_ports: a.apply_ports,
            root_id: a.root_id,
            vm_id: a.vm_id,
            secret: a.secret,
            selectors: a.selectors,
            module: a.module.into(),
            pin: a.pin.into(),
        }
    }
}
