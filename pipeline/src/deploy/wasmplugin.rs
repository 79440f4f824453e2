//! `deploy wasmplugin`: Istio's `WasmPlugin` (extensions.istio.io/v1alpha1).
//!
//! Istio checks `sha256` against what it fetched: for `oci://` the image *manifest*
//! digest, for `http(s)://` the module file. So an image's `sha256` comes only from
//! its `@sha256:` digest, never from the module, and a URL's from the built module.

use super::{check, metadata, parameters, root_id, yaml, Labels, ModuleArgs, PinArgs, Resource};
use crate::envoy::FailurePolicy;
use anyhow::{bail, Result};
use serde::Serialize;

/// The input of `cargo xtask deploy wasmplugin` (its flags, checked by [`render`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// metadata.name (a DNS-1123 subdomain).
    pub name: String,
    /// metadata.namespace (the root namespace, e.g. istio-system, applies mesh-wide).
    pub namespace: String,
    /// url: oci://REF, the filter's OCI image; `@sha256:` also fills `sha256`.
    pub image: Option<String>,
    /// url: an http(s) URL of the .wasm file; `sha256` is the built module's.
    pub wasm_url: Option<String>,
    /// selector.matchLabels: KEY=VALUE, repeatable (none: every workload in the namespace).
    pub selectors: Vec<String>,
    /// pluginConfig: the filter's JSON configuration (an object), inline or @FILE.
    pub parameters: Option<String>,
    /// pluginName, the root id (default: the --filter's root id).
    pub root_id: Option<String>,
    /// imagePullPolicy (default: IfNotPresent, Always for a `latest` tag).
    pub pull_policy: Option<PullPolicy>,
    /// imagePullSecret: the Secret Istio pulls the image with.
    pub pull_secret: Option<String>,
    /// phase: where in the filter chain (default: just before the router).
    pub phase: Option<Phase>,
    /// priority within the phase: higher runs first.
    pub priority: Option<i32>,
    /// failStrategy (see below).
    pub failure_policy: Option<FailurePolicy>,
    /// match[].mode: which traffic direction.
    pub match_mode: Option<MatchMode>,
    /// match[].ports[].number: only these ports, repeatable.
    pub ports: Vec<u16>,
    pub module: ModuleArgs,
    pub pin: PinArgs,
}

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, Serialize)]
pub enum PullPolicy {
    /// Pull once per proxy and cache.
    IfNotPresent,
    /// Pull whenever the plugin is (re)configured.
    Always,
}

/// `phase`.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Before Istio's authentication filters.
    Authn,
    /// Before Istio's authorization filters.
    Authz,
    /// Before Istio's stats filters.
    Stats,
}

/// `match[].mode`.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchMode {
    /// Outbound (client-side) traffic.
    Client,
    /// Inbound (server-side) traffic.
    Server,
    /// Both directions.
    ClientAndServer,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(skip_serializing_if = "Option::is_none")]
    selector: Option<Selector>,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_policy: Option<PullPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_strategy: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    r#match: Vec<TrafficSelector>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: Labels,
}

#[derive(Serialize)]
struct TrafficSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<MatchMode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Port>,
}

#[derive(Serialize)]
struct Port {
    number: u16,
}

fn fail_strategy(p: FailurePolicy) -> &'static str {
    match p {
        FailurePolicy::FailOpen => "FAIL_OPEN",
        FailurePolicy::FailClosed => "FAIL_CLOSE",
        FailurePolicy::FailReload => "FAIL_RELOAD",
    }
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
    if let Some(url) = &a.wasm_url {
        check::http_url("--wasm-url", url)?;
        if a.module.filter.is_none() && a.module.module.is_none() {
            bail!(
                "--wasm-url needs the module for its sha256: pass --filter NAME or --module FILE"
            );
        }
    }
    if let Some(s) = &a.pull_secret {
        check::resource_name("--pull-secret", s)?;
    }
    let module = a.module.load()?;
    let root_id = root_id(a.root_id.as_deref(), module.as_ref())?;
    let params = parameters(a.parameters.as_deref(), module.as_ref())?;
    if let Some(p) = &params {
        if !p.value.is_object() {
            bail!("--parameters must be a JSON object for wasmplugin: pluginConfig is a protobuf Struct");
        }
    }
    let (url, sha256) = match (image, &a.wasm_url, &module) {
        (Some(image), _, _) => {
            let image = a.pin.apply(image)?;
            (
                format!("oci://{}", image.to_reference()),
                image.sha256().map(str::to_owned),
            )
        }
        (None, Some(url), Some(m)) => (url.clone(), Some(m.sha256.clone())),
        _ => bail!("one of --image or --wasm-url is required"),
    };
    let r#match = if a.match_mode.is_some() || !a.ports.is_empty() {
        vec![TrafficSelector {
            mode: a.match_mode,
            ports: a.ports.iter().map(|&number| Port { number }).collect(),
        }]
    } else {
        Vec::new()
    };
    let resource = Resource {
        api_version: "extensions.istio.io/v1alpha1",
        kind: "WasmPlugin",
        metadata,
        spec: Spec {
            selector: (!labels.is_empty()).then_some(Selector {
                match_labels: labels,
            }),
            url,
            sha256,
            image_pull_policy: a.pull_policy,
            image_pull_secret: a.pull_secret.clone(),
            plugin_name: root_id,
            plugin_config: params.map(|p| p.value),
            phase: a.phase,
            priority: a.priority,
            fail_strategy: a.failure_policy.map(fail_strategy),
            r#match,
        },
    };
    yaml(&resource)
}
