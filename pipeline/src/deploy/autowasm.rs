//! `deploy autowasm`: Tencent Cloud Mesh's `AutoWasm` (wasm.tcm.io/v1alpha1), as in
//! seed 004: the module comes from an image registry or an object-storage URL.

use super::{check, metadata, plain_id, root_id, yaml, Labels, ModuleArgs, PinArgs, Resource};
use anyhow::Result;
use serde::Serialize;

/// The input of `cargo xtask deploy autowasm` (its flags, checked by [`render`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// metadata.name (a DNS-1123 subdomain).
    pub name: String,
    /// metadata.namespace.
    pub namespace: String,
    /// spec.filter.source.registry.image: the module's OCI image.
    pub image: Option<String>,
    /// spec.filter.source.object.url: a public http(s) URL of the .wasm file.
    pub object_url: Option<String>,
    /// spec.filter.applyPorts: a port the filter applies to, repeatable (default: all ports).
    pub apply_ports: Vec<u16>,
    /// spec.filter.rootID (default: the --filter's root id; optional).
    pub root_id: Option<String>,
    /// spec.filter.vmID (optional: the controller generates one).
    pub vm_id: Option<String>,
    /// spec.secret: the image registry's pull secret (not needed for a public image).
    pub secret: Option<String>,
    /// spec.selector.matchLabels: KEY=VALUE, repeatable.
    pub selectors: Vec<String>,
    pub module: ModuleArgs,
    pub pin: PinArgs,
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
pub enum Source {
    Registry { image: String },
    Object { url: String },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: Labels,
}

/// Checks `a` and writes the resources as one YAML stream.
pub fn render(a: &Options) -> Result<String> {
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
