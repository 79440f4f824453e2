//! `deploy envoy`: a complete standalone Envoy bootstrap, made by [`crate::envoy::Bootstrap`],
//! the same generator `cargo xtask run` and the end-to-end tests start Envoy with.

use super::{parameters, plain_id, root_id, yaml, ModuleArgs};
use crate::envoy::{Backend, Bootstrap, Code, FailurePolicy, WasmFilter};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// The input of `cargo xtask deploy envoy` (its flags, checked by [`render`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// The plugin name (Envoy's logs and stats; also the VM id). Default: the filter's name.
    pub name: Option<String>,
    pub module: ModuleArgs,
    /// The module path written into the bootstrap (default: the built module's absolute path).
    pub wasm_path: Option<PathBuf>,
    /// The root id (default: the --filter's root id, else the plugin name).
    pub root_id: Option<String>,
    /// The filter's JSON configuration, inline or @FILE.
    pub parameters: Option<String>,
    /// What happens when the filter's VM fails (see below).
    pub failure_policy: Option<FailurePolicy>,
    /// The listener's port on 127.0.0.1.
    pub listen_port: u16,
    /// The admin interface's port on 127.0.0.1.
    pub admin_port: u16,
    /// Send requests to HOST:PORT instead of answering 200 directly.
    pub upstream: Option<String>,
}

/// Checks `a` and writes the resources as one YAML stream.
pub fn render(a: &Options) -> Result<String> {
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
