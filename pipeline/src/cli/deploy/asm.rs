//! The flags of `cargo xtask deploy asm`, turned into [`crate::deploy::asm::Options`].

use super::{value_enum, ModuleFlags, OutputFlags, PinFlags};
use crate::deploy::asm::{self, WorkloadKind};
use crate::deploy::PatchContext;

/// Options of `cargo xtask deploy asm`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Example (the ASM walkthrough's filter, checked by the add-header filter itself):
  cargo xtask deploy asm --name details-v1-wasmfiltersample \\
      --image acree-1-registry.cn-hangzhou.cr.aliyuncs.com/asm/asm-test:v0.1 \\
      --selector app=details --selector version=v1 \\
      --parameters '{\"name\":\"hello\",\"value\":\"hello details\"}' \\
      --root-id my_root_id --pull-secret asmwasm-cache --filter add-header | kubectl apply -f -

ASM has no failure-policy field: a filter that fails to load fails closed.
The pull secret itself: cargo xtask deploy pull-secret --help")]
pub struct Args {
    /// metadata.name of the ASMFilterDeployment (a DNS-1123 subdomain).
    #[arg(long)]
    pub name: String,
    /// metadata.namespace; also the second half of the default --id.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// spec.filter.image: the filter's OCI image, `registry/repository:tag` or `...@sha256:<hex>`.
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// spec.workload.kind: the kind of workload the selector picks.
    #[arg(long, value_enum, ignore_case = true, default_value_t = WorkloadKind::Deployment)]
    pub workload_kind: WorkloadKind,
    /// spec.workload.labels: KEY=VALUE, repeatable; the workload's pods carry all of them.
    #[arg(long = "selector", value_name = "KEY=VALUE", required = true)]
    pub selectors: Vec<String>,
    /// spec.filter.parameters: the filter's JSON configuration, inline or @FILE; written as a JSON string.
    #[arg(long, value_name = "JSON|@FILE")]
    pub parameters: Option<String>,
    /// spec.filter.rootID (default: the --filter's root id).
    #[arg(long)]
    pub root_id: Option<String>,
    /// spec.filter.patchContext: which proxies get the filter.
    #[arg(long, value_enum, default_value_t = PatchContext::SidecarInbound)]
    pub patch_context: PatchContext,
    /// spec.filter.imagePullOptions.pullSecret: the Secret ASM pulls the image with (e.g. asmwasm-cache).
    #[arg(long, value_name = "SECRET")]
    pub pull_secret: Option<String>,
    /// spec.filter.id, the filter's unique id (default: NAME.NAMESPACE).
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub module: ModuleFlags,
    #[command(flatten)]
    pub pin: PinFlags,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl From<Args> for asm::Options {
    fn from(a: Args) -> Self {
        asm::Options {
            name: a.name,
            namespace: a.namespace,
            image: a.image,
            workload_kind: a.workload_kind,
            selectors: a.selectors,
            parameters: a.parameters,
            root_id: a.root_id,
            patch_context: a.patch_context,
            pull_secret: a.pull_secret,
            id: a.id,
            module: a.module.into(),
            pin: a.pin.into(),
        }
    }
}

value_enum!(WorkloadKind {
    WorkloadKind::Deployment => "Deployment": "A Deployment",
    WorkloadKind::StatefulSet => "StatefulSet": "A StatefulSet",
    WorkloadKind::DaemonSet => "DaemonSet": "A DaemonSet",
});
