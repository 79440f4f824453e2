//! `deploy envoyfilter`: an Istio `EnvoyFilter` inserting `envoy.filters.http.wasm` before
//! the router (seed 002), its Wasm filter made by [`crate::envoy::WasmFilter::http_filter`],
//! the generator the end-to-end tests run in Envoy. With `--configmap`, also the ConfigMap
//! holding the module and the `sidecar.istio.io/userVolume` patch that mounts it.

use super::{
    check, metadata, parameters, plain_id, root_id, stream, yaml, Labels, ModuleArgs, PatchContext,
    Resource,
};
use crate::envoy::{Code, FailurePolicy, WasmFilter};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::Serialize;
use std::path::PathBuf;

/// Where the ConfigMap path mounts modules in the sidecar (the seed's directory).
const MOUNT_DIR: &str = "/var/local/lib/wasm-filters";
/// The volume name the seed's annotations use.
const VOLUME: &str = "wasmfilters-dir";
/// What a ConfigMap can hold.
const CONFIGMAP_LIMIT: usize = 1024 * 1024;

/// The input of `cargo xtask deploy envoyfilter` (its flags, checked by [`render`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// metadata.name of the EnvoyFilter (a DNS-1123 subdomain).
    pub name: String,
    /// metadata.namespace: the workload's namespace (istio-system applies mesh-wide).
    pub namespace: String,
    /// spec.workloadSelector.labels: KEY=VALUE, repeatable (none: every workload in the namespace).
    pub selectors: Vec<String>,
    /// match.context: which proxies get the filter.
    pub patch_context: PatchContext,
    /// match.listener.portNumber: only this listener port.
    pub port: Option<u16>,
    pub module: ModuleArgs,
    /// The module is at PATH inside the sidecar (vm_config.code.local.filename).
    pub wasm_path: Option<PathBuf>,
    /// Envoy downloads the module from URL (vm_config.code.remote) and checks its sha256.
    pub wasm_url: Option<String>,
    /// The Envoy cluster serving --wasm-url (default: Istio's `outbound|PORT||HOST` for the URL).
    pub wasm_cluster: Option<String>,
    /// Ship the module in a ConfigMap of this name, mounted at /var/local/lib/wasm-filters.
    pub configmap: Option<String>,
    /// With --configmap: write the workload patch (userVolume annotations) to FILE.
    pub patch_output: Option<PathBuf>,
    /// With --configmap: the Deployment the patch command names (default: WORKLOAD).
    pub deployment: Option<String>,
    /// The root id (default: the --filter's root id, else --name).
    pub root_id: Option<String>,
    /// The filter's JSON configuration, inline or @FILE.
    pub parameters: Option<String>,
    /// What happens when the filter's VM fails (see below).
    pub failure_policy: Option<FailurePolicy>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    config_patches: Vec<ConfigPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload_selector: Option<WorkloadSelector>,
}

#[derive(Serialize)]
struct WorkloadSelector {
    labels: Labels,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigPatch {
    apply_to: &'static str,
    r#match: Match,
    patch: Patch,
}

#[derive(Serialize)]
struct Match {
    context: PatchContext,
    listener: Listener,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listener {
    filter_chain: FilterChain,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_number: Option<u16>,
}

#[derive(Serialize)]
struct FilterChain {
    filter: FilterMatch,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FilterMatch {
    name: &'static str,
    sub_filter: Name,
}

#[derive(Serialize)]
struct Name {
    name: &'static str,
}

#[derive(Serialize)]
struct Patch {
    operation: &'static str,
    value: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMap {
    api_version: &'static str,
    kind: &'static str,
    metadata: super::Metadata,
    binary_data: Labels,
}

/// The strategic-merge patch that mounts the ConfigMap into the sidecar.
#[derive(Serialize)]
struct WorkloadPatch {
    spec: PatchSpec,
}
#[derive(Serialize)]
struct PatchSpec {
    template: PatchTemplate,
}
#[derive(Serialize)]
struct PatchTemplate {
    metadata: PatchMetadata,
}
#[derive(Serialize)]
struct PatchMetadata {
    annotations: Labels,
}

fn workload_patch(configmap: &str) -> WorkloadPatch {
    // Spelled as the seed spells them (key order included); `configmap` is a checked DNS name.
    let volume = format!(r#"[{{"name":"{VOLUME}","configMap":{{"name":"{configmap}"}}}}]"#);
    let mount = format!(r#"[{{"mountPath":"{MOUNT_DIR}","name":"{VOLUME}"}}]"#);
    WorkloadPatch {
        spec: PatchSpec {
            template: PatchTemplate {
                metadata: PatchMetadata {
                    annotations: Labels(vec![
                        ("sidecar.istio.io/userVolume".into(), volume),
                        ("sidecar.istio.io/userVolumeMount".into(), mount),
                    ]),
                },
            },
        },
    }
}

/// Checks `a` and writes the resources as one YAML stream.
pub fn render(a: &Options) -> Result<String> {
    let metadata = metadata(&a.name, &a.namespace)?;
    let labels = Labels(check::labels("--selector", &a.selectors)?);
    if let Some(p) = &a.patch_output {
        super::check_output(p).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string().replacen("--output", "--patch-output", 1)
            )
        })?;
    }
    if let Some(d) = &a.deployment {
        check::resource_name("--deployment", d)?;
    }
    let remote = match &a.wasm_url {
        Some(url) => {
            let parsed = check::http_url("--wasm-url", url)?;
            let cluster = a
                .wasm_cluster
                .clone()
                .unwrap_or_else(|| format!("outbound|{}||{}", parsed.port, parsed.host));
            plain_id("--wasm-cluster", &cluster)?;
            Some((url.clone(), cluster))
        }
        None => None,
    };
    if let Some(cm) = &a.configmap {
        check::resource_name("--configmap", cm)?;
    }
    let needs_module = remote.is_some() || a.configmap.is_some();
    if needs_module && a.module.filter.is_none() && a.module.module.is_none() {
        let option = if remote.is_some() {
            "--wasm-url"
        } else {
            "--configmap"
        };
        bail!("{option} needs the module (for its sha256 or its bytes): pass --filter NAME or --module FILE");
    }
    let module = a.module.load()?;
    let plugin = module
        .as_ref()
        .and_then(|m| m.filter.clone())
        .unwrap_or_else(|| a.name.clone());
    let root_id = root_id(a.root_id.as_deref(), module.as_ref())?.unwrap_or_else(|| plugin.clone());
    let params = parameters(a.parameters.as_deref(), module.as_ref())?;

    let mut docs = Vec::new();
    let code = match (&a.wasm_path, remote, &a.configmap, &module) {
        (Some(path), _, _, _) => {
            if !path.is_absolute() {
                bail!(
                    "--wasm-path `{}` must be absolute: it is a path inside the sidecar",
                    path.display()
                );
            }
            Code::Local(path.clone())
        }
        (None, Some((uri, cluster)), _, Some(m)) => Code::Remote {
            uri,
            cluster,
            sha256: m.sha256.clone(),
        },
        (None, None, Some(cm), Some(m)) => {
            if m.bytes.len() > CONFIGMAP_LIMIT {
                bail!(
                    "--configmap: the module is {} bytes, over the 1 MiB a ConfigMap holds: serve it with --wasm-url, or use the wasmplugin kind",
                    m.bytes.len()
                );
            }
            let key = format!("{plugin}.wasm");
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                bail!("--configmap: the key `{key}` must be letters, digits, '-', '_' and '.'");
            }
            let configmap = ConfigMap {
                api_version: "v1",
                kind: "ConfigMap",
                metadata: super::Metadata {
                    name: cm.clone(),
                    namespace: a.namespace.clone(),
                },
                binary_data: Labels(vec![(
                    key.clone(),
                    base64::engine::general_purpose::STANDARD.encode(&m.bytes),
                )]),
            };
            docs.push(yaml(&configmap)?);
            Code::Local(PathBuf::from(format!("{MOUNT_DIR}/{key}")))
        }
        _ => bail!("one of --wasm-path, --wasm-url or --configmap is required"),
    };
    let filter = WasmFilter {
        name: plugin,
        root_id,
        code,
        configuration: params.map(|p| p.compact),
        failure_policy: a.failure_policy,
    };
    let resource = Resource {
        api_version: "networking.istio.io/v1alpha3",
        kind: "EnvoyFilter",
        metadata,
        spec: Spec {
            config_patches: vec![ConfigPatch {
                apply_to: "HTTP_FILTER",
                r#match: Match {
                    context: a.patch_context,
                    listener: Listener {
                        filter_chain: FilterChain {
                            filter: FilterMatch {
                                name: "envoy.filters.network.http_connection_manager",
                                sub_filter: Name {
                                    name: "envoy.filters.http.router",
                                },
                            },
                        },
                        port_number: a.port,
                    },
                },
                patch: Patch {
                    operation: "INSERT_BEFORE",
                    value: filter.http_filter(),
                },
            }],
            workload_selector: (!labels.is_empty()).then_some(WorkloadSelector { labels }),
        },
    };
    docs.push(yaml(&resource)?);

    if let Some(cm) = &a.configmap {
        let patch = workload_patch(cm);
        let deployment = a.deployment.as_deref().unwrap_or("WORKLOAD");
        match &a.patch_output {
            Some(path) => {
                crate::project::write_atomic(path, yaml(&patch)?.as_bytes())
                    .with_context(|| format!("--patch-output {}", path.display()))?;
                eprintln!(
                    "note: mount the module into the sidecar: kubectl patch deployment {deployment} -n {} --patch-file {}",
                    a.namespace,
                    path.display()
                );
            }
            None => {
                let json = serde_json::to_string(&patch)?;
                eprintln!("note: mount the module into the sidecar: kubectl patch deployment {deployment} -n {} -p '{json}'", a.namespace);
            }
        }
    }
    Ok(stream(&docs))
}
