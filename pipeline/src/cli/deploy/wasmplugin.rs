//! The flags of `cargo xtask deploy wasmplugin`, turned into [`crate::deploy::wasmplugin::Options`].

use super::{value_enum, ModuleFlags, OutputFlags, PinFlags};
use crate::deploy::wasmplugin::{self, MatchMode, Phase, PullPolicy};
use crate::envoy::FailurePolicy;

/// Options of `cargo xtask deploy wasmplugin`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cargo xtask deploy wasmplugin --name add-header --selector app=details --filter add-header \\
      --image registry.example.com/weir/add-header@sha256:<digest from cargo xtask push> \\
      --parameters '{\"name\":\"hello\",\"value\":\"hello details\"}' --failure-policy fail-open
  cargo xtask deploy wasmplugin --name add-header --filter add-header \\
      --wasm-url https://files.example.com/add-header.wasm   # sha256 of the built module

--failure-policy (failStrategy; unset means FAIL_CLOSE):
  fail-open    FAIL_OPEN: requests bypass a plugin that failed
  fail-closed  FAIL_CLOSE: requests get 503 while the plugin is failed
  fail-reload  FAIL_RELOAD: the VM is reloaded (needs a recent Istio)")]
pub struct Args {
    /// metadata.name (a DNS-1123 subdomain).
    #[arg(long)]
    pub name: String,
    /// metadata.namespace (the root namespace, e.g. istio-system, applies mesh-wide).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// url: oci://REF, the filter's OCI image; `@sha256:` also fills `sha256`.
    #[arg(
        long,
        value_name = "REF",
        required_unless_present = "wasm_url",
        conflicts_with = "wasm_url"
    )]
    pub image: Option<String>,
    /// url: an http(s) URL of the .wasm file; `sha256` is the built module's.
    #[arg(long, value_name = "URL")]
    pub wasm_url: Option<String>,
    /// selector.matchLabels: KEY=VALUE, repeatable (none: every workload in the namespace).
    #[arg(long = "selector", value_name = "KEY=VALUE")]
    pub selectors: Vec<String>,
    /// pluginConfig: the filter's JSON configuration (an object), inline or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub parameters: Option<String>,
    /// pluginName, the root id (default: the --filter's root id).
    #[arg(long)]
    pub root_id: Option<String>,
    /// imagePullPolicy (default: IfNotPresent, Always for a `latest` tag).
    #[arg(long, value_enum)]
    pub pull_policy: Option<PullPolicy>,
    /// imagePullSecret: the Secret Istio pulls the image with.
    #[arg(long, value_name = "SECRET")]
    pub pull_secret: Option<String>,
    /// phase: where in the filter chain (default: just before the router).
    #[arg(long, value_enum)]
    pub phase: Option<Phase>,
    /// priority within the phase: higher runs first.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// failStrategy (see below).
    #[arg(long, value_enum)]
    pub failure_policy: Option<FailurePolicy>,
    /// match[].mode: which traffic direction.
    #[arg(long, value_enum)]
    pub match_mode: Option<MatchMode>,
    /// match[].ports[].number: only these ports, repeatable.
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    #[command(flatten)]
    pub module: ModuleFlags,
    #[command(flatten)]
    pub pin: PinFlags,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl From<Args> for wasmplugin::Options {
    fn from(a: Args) -> Self {
        wasmplugin::Options {
            name: a.name,
            namespace: a.namespace,
            image: a.image,
            wasm_url: a.wasm_url,
            selectors: a.selectors,
            parameters: a.parameters,
            root_id: a.root_id,
            pull_policy: a.pull_policy,
            pull_secret: a.pull_secret,
            phase: a.phase,
            priority: a.priority,
            failure_policy: a.failure_policy,
            match_mode: a.match_mode,
            ports: a.ports,
            module: a.module.into(),
            pin: a.pin.into(),
        }
    }
}

value_enum!(PullPolicy {
    PullPolicy::IfNotPresent => "IfNotPresent": "Pull once per proxy and cache",
    PullPolicy::Always => "Always": "Pull whenever the plugin is (re)configured",
});
value_enum!(Phase {
    Phase::Authn => "AUTHN": "Before Istio's authentication filters",
    Phase::Authz => "AUTHZ": "Before Istio's authorization filters",
    Phase::Stats => "STATS": "Before Istio's stats filters",
});
value_enum!(MatchMode {
    MatchMode::Client => "CLIENT": "Outbound (client-side) traffic",
    MatchMode::Server => "SERVER": "Inbound (server-side) traffic",
    MatchMode::ClientAndServer => "CLIENT_AND_SERVER": "Both directions",
});
