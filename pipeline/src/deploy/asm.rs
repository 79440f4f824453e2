//! `deploy asm`: Alibaba Cloud Service Mesh's `ASMFilterDeployment`, with exactly the
//! fields of the ASM walkthrough (seeds 000 and 001), quoted the way it quotes them.

use super::{
    check, metadata, parameters, root_id, yaml, Labels, ModuleArgs, PatchContext, PinArgs, Resource,
};
use anyhow::{bail, Result};
use serde::Serialize;
use serde_saphyr::SingleQuoted;

/// The input of `cargo xtask deploy asm` (its flags, checked by [`render`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// metadata.name of the ASMFilterDeployment (a DNS-1123 subdomain).
    pub name: String,
    /// metadata.namespace; also the second half of the default --id.
    pub namespace: String,
    /// spec.filter.image: the filter's OCI image, `registry/repository:tag` or `...@sha256:<hex>`.
    pub image: String,
    /// spec.workload.kind: the kind of workload the selector picks.
    pub workload_kind: WorkloadKind,
    /// spec.workload.labels: KEY=VALUE, repeatable; the workload's pods carry all of them.
    pub selectors: Vec<String>,
    /// spec.filter.parameters: the filter's JSON configuration, inline or @FILE; written as a JSON string.
    pub parameters: Option<String>,
    /// spec.filter.rootID (default: the --filter's root id).
    pub root_id: Option<String>,
    /// spec.filter.patchContext: which proxies get the filter.
    pub patch_context: PatchContext,
    /// spec.filter.imagePullOptions.pullSecret: the Secret ASM pulls the image with (e.g. asmwasm-cache).
    pub pull_secret: Option<String>,
    /// spec.filter.id, the filter's unique id (default: NAME.NAMESPACE).
    pub id: Option<String>,
    pub module: ModuleArgs,
    pub pin: PinArgs,
}

/// The workload kinds an ASMFilterDeployment can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum WorkloadKind {
    /// A Deployment.
    Deployment,
    /// A StatefulSet.
    StatefulSet,
    /// A DaemonSet.
    DaemonSet,
}

#[derive(Serialize)]
struct Spec {
    workload: Workload,
    filter: Filter,
}

#[derive(Serialize)]
struct Workload {
    kind: WorkloadKind,
    labels: Labels,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    patch_context: SingleQuoted<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<SingleQuoted<String>>,
    image: SingleQuoted<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_options: Option<PullOptions>,
    #[serde(rename = "rootID")]
    root_id: SingleQuoted<String>,
    id: SingleQuoted<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PullOptions {
    pull_secret: SingleQuoted<String>,
}

/// Checks `a` and writes the resources as one YAML stream.
pub fn render(a: &Options) -> Result<String> {
    let metadata = metadata(&a.name, &a.namespace)?;
    let labels = Labels(check::labels("--selector", &a.selectors)?);
    let image = check::image("--image", &a.image)?;
    if let Some(s) = &a.pull_secret {
        check::resource_name("--pull-secret", s)?;
    }
    let id = match &a.id {
        Some(id) => {
            if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("--id `{id}` must be non-empty and without spaces");
            }
            id.clone()
        }
        None => format!("{}.{}", a.name, a.namespace),
    };
    if a.root_id.is_none() && a.module.filter.is_none() {
        bail!(
            "--root-id is required unless --filter names the filter (whose root id is then used)"
        );
    }
    let module = a.module.load()?;
    let Some(root_id) = root_id(a.root_id.as_deref(), module.as_ref())? else {
        bail!("--root-id is required: the module given has no known root id");
    };
    let params = parameters(a.parameters.as_deref(), module.as_ref())?;
    let image = a.pin.apply(image)?;
    let resource = Resource {
        api_version: "istio.alibabacloud.com/v1beta1",
        kind: "ASMFilterDeployment",
        metadata,
        spec: Spec {
            workload: Workload {
                kind: a.workload_kind,
                labels,
            },
            filter: Filter {
                patch_context: SingleQuoted(a.patch_context.as_str()),
                parameters: params.map(|p| SingleQuoted(p.compact)),
                image: SingleQuoted(image.to_reference()),
                image_pull_options: a.pull_secret.clone().map(|s| PullOptions {
                    pull_secret: SingleQuoted(s),
                }),
                root_id: SingleQuoted(root_id),
                id: SingleQuoted(id),
            },
        },
    };
    yaml(&resource)
}
