//! `cargo xtask deploy <KIND>`: the resources that put a filter into a mesh, as YAML.
//!
//! Every kind checks its inputs (names, labels, image references, and the filter's own
//! verdict on `--parameters`) before it writes a byte, then prints one YAML stream on
//! stdout (or writes `-o FILE` atomically), ready for `kubectl apply -f -`. weir never
//! talks to a cluster. The `envoy` kind and the `envoyfilter` kind's Wasm filter come
//! from [`crate::envoy`], the generator the end-to-end tests run in a real Envoy.

mod asm;
mod autowasm;
pub mod check;
mod envoy;
mod envoyfilter;
mod pull_secret;
mod wasmplugin;

use anyhow::{bail, Context, Result};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write the resources that put a filter into a mesh (ASM, Istio, Tencent, plain Envoy), checked, as YAML.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Each kind checks its input before writing anything, prints YAML on stdout (or -o FILE),
and exits non-zero with nothing on stdout when a check fails.

Examples:
  cargo xtask deploy asm --name details-v1-wasmfiltersample --image REGISTRY/asm/asm-test:v0.1 \\
      --selector app=details --selector version=v1 --filter add-header \\
      --parameters '{\"name\":\"hello\",\"value\":\"hello details\"}' | kubectl apply -f -
  cargo xtask deploy envoy --filter add-header -o envoy.yaml && envoy -c envoy.yaml
  cargo xtask deploy wasmplugin --help

Worked examples for every kind: examples/README.md")]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(clap::Subcommand, Debug)]
enum Kind {
    /// Alibaba Cloud Service Mesh `ASMFilterDeployment` (istio.alibabacloud.com/v1beta1).
    #[command(name = "asm")]
    Asm(asm::Args),
    /// The `kubernetes.io/dockerconfigjson` Secret a mesh pulls the image with (`asmwasm-cache`).
    #[command(name = "pull-secret")]
    PullSecret(pull_secret::Args),
    /// Istio `WasmPlugin` (extensions.istio.io/v1alpha1) pulling an OCI image or an https module.
    #[command(name = "wasmplugin")]
    WasmPlugin(wasmplugin::Args),
    /// Istio `EnvoyFilter` inserting the Wasm filter before the router; optionally the ConfigMap path.
    #[command(name = "envoyfilter")]
    EnvoyFilter(envoyfilter::Args),
    /// Tencent Cloud Mesh `AutoWasm` (wasm.tcm.io/v1alpha1).
    #[command(name = "autowasm")]
    AutoWasm(autowasm::Args),
    /// A complete standalone Envoy bootstrap (listener, the filter, then the router).
    #[command(name = "envoy")]
    Envoy(envoy::Args),
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        // A pull secret holds a password, and --parameters a filter's configuration (API keys,
        // tokens): those files are written 0600.
        let secret = match &self.kind {
            Kind::PullSecret(_) => true,
            Kind::Asm(a) => a.parameters.is_some(),
            Kind::WasmPlugin(a) => a.parameters.is_some(),
            Kind::EnvoyFilter(a) => a.parameters.is_some(),
            Kind::Envoy(a) => a.parameters.is_some(),
            Kind::AutoWasm(_) => false,
        };
        let (output, yaml) = match self.kind {
            Kind::Asm(a) => (a.output.check()?, asm::render(&a)?),
            Kind::PullSecret(a) => (a.output.check()?, pull_secret::render(&a)?),
            Kind::WasmPlugin(a) => (a.output.check()?, wasmplugin::render(&a)?),
            Kind::EnvoyFilter(a) => (a.output.check()?, envoyfilter::render(&a)?),
            Kind::AutoWasm(a) => (a.output.check()?, autowasm::render(&a)?),
            Kind::Envoy(a) => (a.output.check()?, envoy::render(&a)?),
        };
        write_output(output.as_deref(), &yaml, secret)
    }
}

/// `-o FILE`, shared by every kind.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct OutputArgs {
    /// Write the YAML to FILE (atomically; its directory must exist) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

impl OutputArgs {
    /// Checks, before any work, that the output can be written; returns where it goes.
    fn check(&self) -> Result<Option<PathBuf>> {
        if let Some(path) = &self.output {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                bail!(
                    "--output {}: directory {} does not exist; create it first",
                    path.display(),
                    dir.display()
                );
            }
            if path.is_dir() {
                bail!("--output {}: is a directory; name a file", path.display());
            }
        }
        Ok(self.output.clone())
    }
}

fn write_output(path: Option<&Path>, yaml: &str, secret: bool) -> Result<()> {
    let write = if secret { crate::project::write_secret } else { crate::project::write_atomic };
    match path {
        Some(p) => write(p, yaml.as_bytes())
            .with_context(|| format!("--output {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(yaml.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Where the module comes from: a filter of this workspace, or a built file.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ModuleArgs {
    /// Take the module, its root id and its sha256 from this filter under filters/ (built if
    /// needed); --parameters is then checked by the filter itself.
    #[arg(long, value_name = "NAME", conflicts_with = "module")]
    filter: Option<String>,
    /// A built module to take the sha256 from and check --parameters with, instead of --filter.
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
}

/// A module read from disk.
pub(crate) struct Module {
    /// The filter's name, when it came from --filter.
    filter: Option<String>,
    /// Where it is.
    path: PathBuf,
    /// Its bytes.
    bytes: Vec<u8>,
    /// Hex sha256 of the bytes.
    sha256: String,
}

impl Module {
    /// The root id the filter answers to, when known.
    fn root_id(&self) -> Option<String> {
        let name = self.filter.as_deref()?;
        crate::project::filter(name)
            .ok()
            .map(|f| f.root_id().to_owned())
    }

    /// What to call the module in messages.
    fn label(&self) -> String {
        match &self.filter {
            Some(f) => format!("filter `{f}`"),
            None => format!("module {}", self.path.display()),
        }
    }
}

impl ModuleArgs {
    fn load(&self) -> Result<Option<Module>> {
        let (filter, path) = match (&self.filter, &self.module) {
            (Some(name), _) => {
                let path = crate::build::module_for(name)
                    .with_context(|| format!("--filter {name}: cannot build the filter"))?;
                (Some(name.clone()), path)
            }
            (None, Some(path)) => (None, path.clone()),
            (None, None) => return Ok(None),
        };
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read the module {}", path.display()))?;
        let sha256 = crate::project::sha256_hex(&bytes);
        Ok(Some(Module {
            filter,
            path,
            bytes,
            sha256,
        }))
    }
}

/// `--pin`: resolve a tag to the manifest digest at the registry.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct PinArgs {
    /// Ask the registry for the digest the image's tag names now and write `repo@sha256:...`
    /// (and `sha256` where the kind has it); the credential and transport options below apply.
    #[arg(long)]
    pin: bool,
    #[command(flatten)]
    credentials: crate::oci::credentials::CredentialArgs,
    #[command(flatten)]
    transport: crate::oci::registry::TransportArgs,
}

impl PinArgs {
    /// The image as it should be written: pinned to the registry's digest with `--pin`
    /// (a digest already given is verified against the manifest), else as given, with a
    /// warning on stderr when it is tag-only.
    fn apply(&self, image: check::ImageRef) -> Result<check::ImageRef> {
        if !self.pin {
            if let Some(w) = image.tag_warning("--image") {
                eprintln!("{w}");
            }
            return Ok(image);
        }
        use crate::oci::reference::Target;
        let text = match &image.registry {
            Some(_) => image.to_reference(),
            None => format!("{}/{}", image.registry_host(), image.to_reference()),
        };
        let Target::Registry(target) =
            Target::parse(&text).with_context(|| format!("--pin: cannot read `{text}`"))?
        else {
            bail!("--pin needs a registry image, not `{text}`");
        };
        let login = crate::oci::credentials::resolve(&self.credentials, &target.host)?;
        let registry = crate::oci::registry::Registry::new(
            target,
            &self.transport,
            &login,
            indicatif::ProgressBar::hidden(),
        )?;
        let digest = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(async {
                registry.authenticate(false).await?;
                registry.get_manifest().await
            })
            .with_context(|| format!("--pin: cannot resolve the digest of `{text}`"))?
            .1;
        eprintln!("pinned {text} to {digest}");
        Ok(check::ImageRef {
            tag: None,
            digest: Some(digest.to_string()),
            ..image
        })
    }
}

/// `--parameters`, parsed, compacted, and accepted by the filter.
#[derive(Debug, Clone)]
pub(crate) struct Parameters {
    /// The JSON text with insignificant whitespace removed, key order kept.
    compact: String,
    /// The parsed value.
    value: serde_json::Value,
}

/// Reads `--parameters JSON|@FILE`, checks it is JSON, and has the module's own
/// configure step accept it (or, when absent, accept running without one).
fn parameters(arg: Option<&str>, module: Option<&Module>) -> Result<Option<Parameters>> {
    let parsed = match arg {
        None => None,
        Some(arg) => {
            let text = match arg.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("--parameters @{file}: cannot read the file"))?,
                None => arg.to_owned(),
            };
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--parameters is not valid JSON: {e}"))?;
            Some(Parameters {
                compact: compact_json(&text),
                value,
            })
        }
    };
    match module {
        Some(m) => {
            let outcome = crate::configure::run(&m.bytes, parsed.as_ref().map(|p| p.compact.as_bytes()))
                .with_context(|| format!("--parameters: cannot run the configure step of {}", m.label()))?;
            if !outcome.accepted {
                let errors = outcome.errors();
                let why = if errors.is_empty() { "it logged no reason".to_owned() } else { errors.join("; ") };
                match &parsed {
                    Some(_) => bail!("--parameters refused by {} (Envoy would refuse it too): {why}", m.label()),
                    None => bail!("--parameters is missing and {} refuses to run without one: {why}", m.label()),
                }
            }
        }
        None if parsed.is_some() => eprintln!(
            "warning: --parameters was checked as JSON only: pass --filter NAME (or --module FILE) to have the filter itself check it"
        ),
        None => {}
    }
    Ok(parsed)
}

/// Removes whitespace outside JSON strings, keeping everything else byte for byte
/// (key order, number spelling). The input has already parsed as JSON.
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// A root id or VM id: any text Envoy can carry, but not blank and no control characters.
fn plain_id(option: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        bail!("{option} `{value}` must be non-empty text without control characters");
    }
    Ok(())
}

/// The root id: `--root-id`, else the filter's own.
fn root_id(arg: Option<&str>, module: Option<&Module>) -> Result<Option<String>> {
    match arg {
        Some(r) => {
            plain_id("--root-id", r)?;
            Ok(Some(r.to_owned()))
        }
        None => Ok(module.and_then(Module::root_id)),
    }
}

/// Labels in the order given, serialized as a YAML map.
#[derive(Debug, Clone, Default)]
pub(crate) struct Labels(Vec<(String, String)>);

impl Labels {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `metadata` of a namespaced resource.
#[derive(serde::Serialize, Debug)]
pub(crate) struct Metadata {
    name: String,
    namespace: String,
}

/// A Kubernetes object: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Resource<S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: S,
}

/// Checks `--name` and `--namespace` and makes the metadata.
fn metadata(name: &str, namespace: &str) -> Result<Metadata> {
    check::resource_name("--name", name)?;
    check::namespace("--namespace", namespace)?;
    Ok(Metadata {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
    })
}

/// One YAML document.
fn yaml<T: Serialize>(doc: &T) -> Result<String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Long strings stay on one line (no folding), so a JSON value reads as written.
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(doc, options).context("cannot write YAML")
}

/// Several documents as one stream.
fn stream(docs: &[String]) -> String {
    docs.iter()
        .map(|d| {
            if d.ends_with('\n') {
                d.clone()
            } else {
                format!("{d}\n")
            }
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The Istio/ASM patch context: which proxies a filter is inserted into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub(crate) enum PatchContext {
    /// Sidecars, for traffic coming into the workload.
    #[value(name = "SIDECAR_INBOUND")]
    #[serde(rename = "SIDECAR_INBOUND")]
    SidecarInbound,
    /// Sidecars, for traffic the workload sends out.
    #[value(name = "SIDECAR_OUTBOUND")]
    #[serde(rename = "SIDECAR_OUTBOUND")]
    SidecarOutbound,
    /// Gateways.
    #[value(name = "GATEWAY")]
    #[serde(rename = "GATEWAY")]
    Gateway,
    /// All of the above.
    #[value(name = "ANY")]
    #[serde(rename = "ANY")]
    Any,
}

impl PatchContext {
    fn as_str(self) -> &'static str {
        match self {
            PatchContext::SidecarInbound => "SIDECAR_INBOUND",
            PatchContext::SidecarOutbound => "SIDECAR_OUTBOUND",
            PatchContext::Gateway => "GATEWAY",
            PatchContext::Any => "ANY",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_keeps_order_and_string_spaces() {
        assert_eq!(
            compact_json("{ \"value\": \"hello details\",\n \"name\" : \"a\\\" b\" }"),
            "{\"value\":\"hello details\",\"name\":\"a\\\" b\"}"
        );
    }

    #[test]
    fn parameters_must_be_json() {
        let e = parameters(Some("{name: 1}"), None).unwrap_err().to_string();
        assert!(e.starts_with("--parameters is not valid JSON"), "{e}");
        let e = parameters(Some("@/nonexistent/p.json"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--parameters @/nonexistent/p.json"), "{e}");
    }

    #[test]
    fn labels_serialize_in_the_order_given() {
        let l = Labels(vec![
            ("version".into(), "v1".into()),
            ("app".into(), "details".into()),
        ]);
        assert_eq!(yaml(&l).unwrap(), "version: v1\napp: details\n");
    }
}
