//! The flags of `cargo xtask deploy envoy`, turned into [`crate::deploy::envoy::Options`].

use std::path::PathBuf;

use super::{ModuleFlags, OutputFlags};
use crate::deploy::envoy;
use crate::envoy::FailurePolicy;

/// Options of `cargo xtask deploy envoy`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cargo xtask deploy envoy --filter add-header -o envoy.yaml && envoy -c envoy.yaml
  curl -i localhost:10000/        # carries resp-header-demo: added by our filter
  cargo xtask deploy envoy --filter add-header --upstream 127.0.0.1:8080 \\
      --parameters '{\"name\":\"hello\",\"value\":\"world\"}' --failure-policy fail-open

--failure-policy (Envoy's failure_policy; unset means fail-closed):
  fail-open    requests bypass a failed filter
  fail-closed  requests get 503 while the VM is failed
  fail-reload  Envoy reloads the VM and retries; meanwhile requests fail closed")]
pub struct Args {
    /// The plugin name (Envoy's logs and stats; also the VM id). Default: the filter's name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub module: ModuleFlags,
    /// The module path written into the bootstrap (default: the built module's absolute path).
    #[arg(long, value_name = "PATH")]
    pub wasm_path: Option<PathBuf>,
    /// The root id (default: the --filter's root id, else the plugin name).
    #[arg(long)]
    pub root_id: Option<String>,
    /// The filter's JSON configuration, inline or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub parameters: Option<String>,
    /// What happens when the filter's VM fails (see below).
    #[arg(long, value_enum)]
    pub failure_policy: Option<FailurePolicy>,
    /// The listener's port on 127.0.0.1.
    #[arg(long, default_value_t = 10000, value_parser = clap::value_parser!(u16).range(1..))]
    pub listen_port: u16,
    /// The admin interface's port on 127.0.0.1.
    #[arg(long, default_value_t = 9901, value_parser = clap::value_parser!(u16).range(1..))]
    pub admin_port: u16,
    /// Send requests to HOST:PORT instead of answering 200 directly.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: Option<String>,
    #[command(flatten)]
    pub output: OutputFlags,
}

impl From<Args> for envoy::Options {
    fn from(a: Args) -> Self {
        envoy::Options {
            name: a.name,
            module: a.module.into(),
            wasm_path: a.wasm_path,
            root_id: a.root_id,
            parameters: a.parameters,
            failure_policy: a.failure_policy,
            listen_port: a.listen_port,
            admin_port: a.admin_port,
            upstream: a.upstream,
        }
    }
}
