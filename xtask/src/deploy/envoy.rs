//! `deploy envoy`: a complete standalone Envoy bootstrap, made by [`crate::envoy::Bootstrap`],
//! the same generator `cargo xtask run` and the end-to-end tests start Envoy with.

use super::{parameters, plain_id, root_id, yaml, ModuleArgs, OutputArgs};
use crate::envoy::{Backend, Bootstrap, Code, FailurePolicy, WasmFilter};
use anyhow::{bail, Result};
use std::path::PathBuf;

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
    name: Option<String>,
    #[command(flatten)]
    module: ModuleArgs,
    /// The module path written into the bootstrap (default: the built module's absolute path).
    #[arg(long, value_name = "PATH")]
    wasm_path: Option<PathBuf>,
    /// The root id (default: the --filter's root id, else the plugin name).
    #[arg(long)]
    root_id: Option<String>,
    /// The filter's JSON configuration, inline or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub(super) parameters: Option<String>,
    /// What happens when the filter's VM fails (see below).
    #[arg(long, value_enum)]
    failure_policy: Option<FailurePolicy>,
    /// The listener's port on 127.0.0.1.
    #[arg(long, default_value_t = 10000, value_parser = clap::value_parser!(u16).range(1..))]
    listen_port: u16,
    /// The admin interface's port on 127.0.0.1.
    #[arg(long, default_value_t = 9901, value_parser = clap::value_parser!(u16).range(1..))]
    admin_port: u16,
    /// Send requests to HOST:PORT instead of answering 200 directly.
    #[arg(long, value_name = "HOST:PORT")]
    upstream: Option<String>,
    #[command(flatten)]
    pub(super) output: OutputArgs,
}

pub(super) fn render(a: &Args) -> Result<String> {
    if a.listen_port == a.admin_port {
        bail!(
            "--listen-port and --admin-port must differ (both are {})",
            a.listen_port
        );
    }
    if let Some(up) = &a.upstream {
        let ok = up.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                && p.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            bail!("--upstream `{up}` must be HOST:PORT (e.g. 127.0.0.1:8080)");
        }
    }
    if a.module.filter.is_none() && a.module.module.is_none() && a.wasm_path.is_none() {
        bail!("the module is required: pass --filter NAME, --module FILE or --wasm-path PATH");
    }
    let module = a.module.load()?;
    let name = match (&a.name, &module) {
        (Some(n), _) => n.clone(),
        (None, Some(m)) => m.filter.clone().unwrap_or_else(|| "weir".to_owned()),
        (None, None) => "weir".to_owned(),
    };
    plain_id("--name", &name)?;
    let root_id = root_id(a.root_id.as_deref(), module.as_ref())?.unwrap_or_else(|| name.clone());
    let params = parameters(a.parameters.as_deref(), module.as_ref())?;
    let path = match (&a.wasm_path, &module) {
        (Some(p), _) => p.clone(),
        (None, Some(m)) => std::path::absolute(&m.path)?,
        (None, None) => {
            bail!("the module is required: pass --filter NAME, --module FILE or --wasm-path PATH")
        }
    };
    let filter = WasmFilter {
        name,
        root_id,
        code: Code::Local(path),
        configuration: params.map(|p| p.compact),
        failure_policy: a.failure_policy,
    };
    let mut bootstrap = Bootstrap::new(a.listen_port, a.admin_port, vec![filter]);
    if let Some(up) = &a.upstream {
        bootstrap.backend = Backend::Upstream(up.clone());
    }
    yaml(&bootstrap.to_json()?)
}
