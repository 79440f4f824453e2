//! `cargo xtask run`: build a filter, write the Envoy bootstrap that serves it, and run
//! that Envoy in the foreground.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

use crate::envoy::{Backend, Bootstrap, Code, WasmFilter};
use crate::project;

/// Reads `--config`-style input: JSON text, or `@FILE`; checks that it is JSON.
pub fn read_json_arg(option: &str, value: &str) -> Result<String> {
    let text = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{option}: cannot read {path}"))?,
        None => value.to_owned(),
    };
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
        bail!("{option} is not JSON: {e}");
    }
    Ok(text)
}

/// `http://host:port` → `host:port`.
pub fn upstream_addr(url: &str) -> Result<String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(hostport.to_owned())
        }
        _ => bail!("--upstream `{url}` is not http://HOST:PORT"),
    }
}

/// What to serve, and where.
#[derive(Clone, Debug)]
pub struct Options {
    /// The filter (a directory under filters/).
    pub filter: String,
    /// The plugin configuration: JSON text, or @FILE.
    pub config: Option<String>,
    /// The listener port on 127.0.0.1.
    pub port: u16,
    /// The admin port on 127.0.0.1.
    pub admin_port: u16,
    /// Forward requests to this upstream (http://host:port) instead of answering 200 directly.
    pub upstream: Option<String>,
}

/// Builds the filter and writes the bootstrap that serves it to
/// `target/weir/run/<filter>.envoy.json`; returns that path.
pub fn prepare(options: &Options) -> Result<PathBuf> {
    let filter = project::filter(&options.filter)?;
    let configuration = options
        .config
        .as_deref()
        .map(|c| read_json_arg("--config", c))
        .transpose()?;
    let backend = match &options.upstream {
        Some(url) => Backend::Upstream(upstream_addr(url)?),
        None => Backend::Direct,
    };
    let module = crate::build::module_for(&filter.name)?;
    let wasm = WasmFilter {
        name: filter.name.clone(),
        root_id: filter.root_id().to_owned(),
        code: Code::Local(module),
        configuration,
        failure_policy: None,
    };
    let mut bootstrap = Bootstrap::new(options.port, options.admin_port, vec![wasm]);
    bootstrap.backend = backend;
    let dir = project::root().join("target").join("weir").join("run");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join(format!("{}.envoy.json", filter.name));
    // It embeds --config, which may hold a secret.
    project::write_secret(&config, &serde_json::to_vec_pretty(&bootstrap.to_json()?)?)?;
    Ok(config)
}

/// Runs Envoy on `config` in the foreground until it exits (Ctrl-C); its log goes to the terminal.
pub fn serve(config: &Path) -> Result<()> {
    let status = std::process::Command::new(crate::envoy::binary()?)
        .args(["--concurrency", "1", "--log-level", "info", "-c"])
        .arg(config)
        .status()
        .context("cannot start envoy")?;
    if !status.success() {
        bail!("envoy exited with {status}: its log above says why");
    }
    Ok(())
}
