//! The flags of `cargo xtask deploy envoyfilter`, turned into [`crate::deploy::envoyfilter::Options`].

use std::path::PathBuf;

use super::{ModuleFlags, OutputFlags};
use crate::deploy::envoyfilter;
use crate::deploy::PatchContext;
use crate::envoy::FailurePolicy;

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
    pub name: String,
    /// metadata.namespace: the workload's namespace (istio-system applies mesh-wide).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// spec.workloadSelector.labels: KEY=VALUE, repeatable (none: every workload in the namespace).
    #[arg(long = "selector", value_name = "KEY=VALUE")]
    pub selectors: Vec<String>,
    /// match.context: which proxies get the filter.
    #[arg(long, value_enum, default_value_t = PatchContext::SidecarInbound)]
    pub patch_context: PatchContext,
    /// match.listener.portNumber: only this listener port.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    #[command(flatten)]
    pub module: ModuleFlags,
    /// The module is at PATH inside the sidecar (vm_config.code.local.filename).
    #[arg(long, value_name = "PATH")]
    pub wasm_path: Option<PathBuf>,
    /// Envoy downloads the module from URL (vm_config.code.remote) and checks its sha256.
    #[arg(long, value_name = "URL")]
    pub wasm_url: Option<String>,
    /// The Envoy cluster serving --wasm-url (default: Istio's `outbound|PORT||HOST` for the URL).
    #[arg(long, value_name = "CLUSTER", requires = "wasm_url")]
    pub wasm_cluster: Option<String>,
    /// Ship the module in a ConfigMap of this name, mounted at /var/local/lib/wasm-filters.
    #[arg(long, value_name = "NAME")]
    pub configmap: Option<String>,
    /// With --configmap: write the workload patch (userVolume annotations) to FILE.
    #[arg(long, value_name = "FILE", requires = "configmap")]
    pub patch_output: Option<PathBuf>,
    /// With --configmap: the Deployment the patch command names (default: WORKLOAD).
    #[arg(long, value_name = "NAME", requires = "configmap")]
    pub deployment: Option<String>,
    /// The root id (default: the --filter's root id, else --name).
    #[arg(long)]
    pub root_id: Option<String>,
    /// The filter's JSON configuration, inline or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub parameters: Option<String>,
    /// What happens when the filter's VM fails (see below).
    #[arg(long, value_enum)]
    pub failure_policy: Option<FailurePolicy>,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl From<Args> for envoyfilter::Options {
    fn from(a: Args) -> Self {
        envoyfilter::Options {
            name: a.name,
            namespace: a.namespace,
            selectors: a.selectors,
            patch_context: a.patch_context,
            port: a.port,
            module: a.module.into(),
            wasm_path: a.wasm_path,
            wasm_url: a.wasm_url,
            wasm_cluster: a.wasm_cluster,
            configmap: a.configmap,
            patch_output: a.patch_output,
            deployment: a.deployment,
            root_id: a.root_id,
            parameters: a.parameters,
            failure_policy: a.failure_policy,
        }
    }
}
