//! `deploy autowasm`: Tencent Cloud Mesh's `AutoWasm` (wasm.tcm.io/v1alpha1), as in
//! seed 004: the module comes from an image registry or an object-storage URL.

use super::{
    check, metadata, plain_id, root_id, yaml, Labels, ModuleArgs, OutputArgs, PinArgs, Resource,
};
use anyhow::Result;
use serde::Serialize;

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
    name: String,
    /// metadata.namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// spec.filter.source.registry.image: the module's OCI image.
    #[arg(
        long,
        value_name = "REF",
        required_unless_present = "object_url",
        conflicts_with = "object_url"
    )]
    image: Option<String>,
    /// spec.filter.source.object.url: a public http(s) URL of the .wasm file.
    #[arg(long, value_name = "URL")]
    object_url: Option<String>,
    /// spec.filter.applyPorts: a port the filter applies to, repeatable (default: all ports).
    #[arg(long = "apply-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    apply_ports: Vec<u16>,
    /// spec.filter.rootID (default: the --filter's root id; optional).
    #[arg(long)]
    root_id: Option<String>,
    /// spec.filter.vmID (optional: the controller generates one).
    #[arg(long)]
    vm_id: Option<String>,
    /// spec.secret: the image registry's pull secret (not needed for a public image).
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// spec.selector.matchLabels: KEY=VALUE, repeatable.
    #[arg(long = "selector", value_name = "KEY=VALUE", required = true)]
    selectors: Vec<String>,
    #[command(flatten)]
    module: ModuleArgs,
    #[command(flatten)]
    pin: PinArgs,
    #[command(flatten)]
    pub(super) output: OutputArgs,
}

#[derive(Serialize)]
struct Spec {
    filter: Filter,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    selector: Selector,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    apply_ports: Vec<u16>,
    #[serde(rename = "rootID", skip_serializing_if = "Option::is_none")]
    root_id: Option<String>,
    source: Source,
    #[serde(rename = "vmID", skip_serializing_if = "Option::is_none")]
    vm_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Source {
    Registry { image: String },
    Object { url: String },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: Labels,
}

pub(super) fn render(a: &Args) -> Result<String> {
    let metadata = metadata(&a.name, &a.namespace)?;
    let labels = Labels(check::labels("--selector", &a.selectors)?);
    let image = a
        .image
        .as_deref()
        .map(|i| check::image("--image", i))
        .transpose()?;
    if let Some(url) = &a.object_url {
        check::http_url("--object-url", url)?;
    }
    if let Some(v) = &a.vm_id {
        plain_id("--vm-id", v)?;
    }
    if let Some(s) = &a.secret {
        check::resource_name("--secret", s)?;
    }
    let module = a.module.load()?;
    let root_id = root_id(a.root_id.as_deref(), module.as_ref())?;
    let source = match (image, &a.object_url) {
        (Some(image), _) => Source::Registry {
            image: a.pin.apply(image)?.to_reference(),
        },
        (None, Some(url)) => Source::Object { url: url.clone() },
        (None, None) => anyhow::bail!("one of --image or --object-url is required"),
    };
    let resource = Resource {
        api_version: "wasm.tcm.io/v1alpha1",
        kind: "AutoWasm",
        metadata,
        spec: Spec {
            filter: Filter {
                apply_ports: a.apply_ports.clone(),
                root_id,
                source,
                vm_id: a.vm_id.clone(),
            },
            secret: a.secret.clone(),
            selector: Selector {
                match_labels: labels,
            },
        },
    };
    yaml(&resource)
}
