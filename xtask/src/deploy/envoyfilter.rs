//! `deploy envoyfilter`: an Istio `EnvoyFilter` inserting `envoy.filters.http.wasm` before
//! the router (seed 002), its Wasm filter made by [`crate::envoy::WasmFilter::http_filter`],
//! the generator the end-to-end tests run in Envoy. With `--configmap`, also the ConfigMap
//! holding the module and the `sidecar.istio.io/userVolume` patch that mounts it.

use super::{
    check, metadata, parameters, plain_id, root_id, stream, yaml, Labels, ModuleArgs, OutputArgs,
    PatchContext, Resource,
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

/// Options of `cargo xtask deploy envoyfilter`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("code").required(true).args(["wasm_path", "wasm_url", "configmap"])))]
#[command(after_help = "\
Examples:
  # the module is already in the sidecar at PATH
  cargo xtask deploy envoyfilter --name details-v1-add-header --selector app=details \\
      --filter add-header --wasm-path /var/local/lib/wasm-filters/add-header.wasm
  # Envoy downloads the module and checks its sha256 (taken from the built filter)
  cargo xtask deploy envoyfilter --name details-v1-add-header --selector app=details \\
      --filter add-header --wasm-url http://wasm-server.default:8080/add-header.wasm
  # seed 002's ConfigMap path: ConfigMap + EnvoyFilter on stdout, the workload patch to a file
  cargo xtask deploy envoyfilter --name details-v1-add-header --selector app=details \\
      --filter add-header --configmap wasm-add-header --patch-output patch.yaml | kubectl apply -f -
  kubectl patch deployment details-v1 --patch-file patch.yaml

--failure-policy (Envoy's failure_policy; unset means fail-closed):
  fail-open    requests bypass a failed filter
  fail-closed  requests get 503 while the VM is failed
  fail-reload  Envoy reloads the VM and retries; meanwhile requests fail closed")]
pub struct Args {
    /// metadata.name of the EnvoyFilter (a DNS-1123 subdomain).
    #[arg(long)]
    name: String,
    /// metadata.namespace: the workload's namespace (istio-system applies mesh-wide).
    #[arg(long, default_value = "default")]
    namespace: String,
    /// spec.workloadSelector.labels: KEY=VALUE, repeatable (none: every workload in the namespace).
    #[arg(long = "selector", value_name = "KEY=VALUE")]
    selectors: Vec<String>,
    /// match.context: which proxies get the filter.
    #[arg(long, value_enum, default_value_t = PatchContext::SidecarInbound)]
    patch_context: PatchContext,
    /// match.listener.portNumber: only this listener port.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    #[command(flatten)]
    module: ModuleArgs,
    /// The module is at PATH inside the sidecar (vm_config.code.local.filename).
    #[arg(long, value_name = "PATH")]
    wasm_path: Option<PathBuf>,
    /// Envoy downloads the module from URL (vm_config.code.remote) and checks its sha256.
    #[arg(long, value_name = "URL")]
    wasm_url: Option<String>,
    /// The Envoy cluster serving --wasm-url (default: Istio's `outbound|PORT||HOST` for the URL).
    #[arg(long, value_name = "CLUSTER", requires = "wasm_url")]
    wasm_cluster: Option<String>,
    /// Ship the module in a ConfigMap of this name, mounted at /var/local/lib/wasm-filters.
    #[arg(long, value_name = "NAME")]
    configmap: Option<String>,
    /// With --configmap: write the workload patch (userVolume annotations) to FILE.
    #[arg(long, value_name = "FILE", requires = "configmap")]
    patch_output: Option<PathBuf>,
    /// With --configmap: the Deployment the patch command names (default: WORKLOAD).
    #[arg(long, value_name = "NAME", requires = "configmap")]
    deployment: Option<String>,
    /// The root id (default: the --filter's root id, else --name).
    #[arg(long)]
    root_id: Option<String>,
    /// The filter's JSON configuration, inline or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub(super) parameters: Option<String>,
    /// What happens when the filter's VM fails (see below).
    #[arg(long, value_enum)]
    failure_policy: Option<FailurePolicy>,
    #[command(flatten)]
    pub(super) output: OutputArgs,
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

pub(super) fn render(a: &Args) -> Result<String> {
    let metadata = metadata(&a.name, &a.namespace)?;
    let labels = Labels(check::labels("--selector", &a.selectors)?);
    if let Some(p) = &a.patch_output {
        super::OutputArgs {
            output: Some(p.clone()),
        }
        .check()
        .map_err(|e| {
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
