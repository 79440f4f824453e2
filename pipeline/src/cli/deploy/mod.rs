//! `cargo xtask deploy <KIND>`: one module per kind parses its flags; the library's
//! `deploy::<kind>::render` checks them and returns the YAML, printed here or written to `-o FILE`.

mod asm;
mod autowasm;
mod envoy;
mod envoyfilter;
mod pull_secret;
mod wasmplugin;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::oci::{CredentialFlags, TransportFlags};
use super::value_enum;
use crate::deploy::{self, ModuleArgs, PatchContext, PinArgs};

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
            Kind::Asm(a) => (a.output.check()?, deploy::asm::render(&a.into())?),
            Kind::PullSecret(a) => (a.output.check()?, deploy::pull_secret::render(&a.into())?),
            Kind::WasmPlugin(a) => (a.output.check()?, deploy::wasmplugin::render(&a.into())?),
            Kind::EnvoyFilter(a) => (a.output.check()?, deploy::envoyfilter::render(&a.into())?),
            Kind::AutoWasm(a) => (a.output.check()?, deploy::autowasm::render(&a.into())?),
            Kind::Envoy(a) => (a.output.check()?, deploy::envoy::render(&a.into())?),
        };
        write_output(output.as_deref(), &yaml, secret)
    }
}

/// `-o FILE`, shared by every kind.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputFlags {
    /// Write the YAML to FILE (atomically; its directory must exist) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

impl OutputFlags {
    /// Checks, before any work, that the output can be written; returns where it goes.
    fn check(&self) -> Result<Option<PathBuf>> {
        if let Some(path) = &self.output {
            deploy::check_output(path)?;
        }
        Ok(self.output.clone())
    }
}

fn write_output(path: Option<&Path>, yaml: &str, secret: bool) -> Result<()> {
    let write = if secret {
        crate::project::write_secret
    } else {
        crate::project::write_atomic
    };
    match path {
        Some(p) => write(p, yaml.as_bytes()).with_context(|| format!("--output {}", p.display())),
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
pub struct ModuleFlags {
    /// Take the module, its root id and its sha256 from this filter under filters/ (built if
    /// needed); --parameters is then checked by the filter itself.
    #[arg(long, value_name = "NAME", conflicts_with = "module")]
    filter: Option<String>,
    /// A built module to take the sha256 from and check --parameters with, instead of --filter.
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
}

impl From<ModuleFlags> for ModuleArgs {
    fn from(f: ModuleFlags) -> Self {
        ModuleArgs {
            filter: f.filter,
            module: f.module,
        }
    }
}

/// `--pin`: resolve a tag to the manifest digest at the registry.
#[derive(clap::Args, Debug, Clone)]
pub struct PinFlags {
    /// Ask the registry for the digest the image's tag names now and write `repo@sha256:...`
    /// (and `sha256` where the kind has it); the credential and transport options below apply.
    #[arg(long)]
    pin: bool,
    #[command(flatten)]
    credentials: CredentialFlags,
    #[command(flatten)]
    transport: TransportFlags,
}

impl From<PinFlags> for PinArgs {
    fn from(f: PinFlags) -> Self {
        PinArgs {
            pin: f.pin,
            credentials: f.credentials.into(),
            transport: f.transport.into(),
        }
    }
}

value_enum!(PatchContext {
    PatchContext::SidecarInbound => "SIDECAR_INBOUND": "Sidecars, for traffic coming into the workload",
    PatchContext::SidecarOutbound => "SIDECAR_OUTBOUND": "Sidecars, for traffic the workload sends out",
    PatchContext::Gateway => "GATEWAY": "Gateways",
    PatchContext::Any => "ANY": "All of the above",
});
