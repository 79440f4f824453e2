//! `cargo xtask run`: build a filter and serve it from a local Envoy in the foreground.

use anyhow::{bail, Context, Result};

use crate::envoy::{Backend, Bootstrap, Code, WasmFilter};
use crate::project;

const EXAMPLES: &str = "Examples:
  cargo xtask run add-header
  cargo xtask run add-header --config '{\"name\":\"hello\",\"value\":\"hello details\"}'
  cargo xtask run add-header --config @filters/add-header/config.example.json --port 8080
  cargo xtask run add-header --upstream http://127.0.0.1:9080

Then, in another terminal: curl -v http://127.0.0.1:10000/  (Ctrl-C stops Envoy)";

/// Options of `cargo xtask run`.
#[derive(clap::Args, Debug)]
#[command(about = "Build a filter and run it in a local Envoy (the inner loop)", after_help = EXAMPLES)]
pub struct Args {
    /// The filter (a directory under filters/).
    pub filter: String,
    /// The plugin configuration: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub config: Option<String>,
    /// The listener port on 127.0.0.1.
    #[arg(long, default_value_t = 10000)]
    pub port: u16,
    /// The admin port on 127.0.0.1.
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// Forward requests to this upstream (http://host:port) instead of answering 200 directly.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
}

/// Reads `--config`-style input: JSON text, or `@FILE`; checks that it is JSON.
pub fn read_json_arg(option: &str, value: &str) -> Result<String> {
    let text = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("{option}: cannot read {path}"))?,
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
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(hostport.to_owned()),
        _ => bail!("--upstream `{url}` is not http://HOST:PORT"),
    }
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let filter = project::filter(&self.filter)?;
        let configuration = self.config.as_deref().map(|c| read_json_arg("--config", c)).transpose()?;
        let backend = match &self.upstream {
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
        let mut bootstrap = Bootstrap::new(self.port, self.admin_port, vec![wasm]);
        bootstrap.backend = backend;
        let dir = project::root().join("target").join("weir").join("run");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join(format!("{}.envoy.json", filter.name));
        // It embeds --config, which may hold a secret.
        project::write_secret(&config, &serde_json::to_vec_pretty(&bootstrap.to_json()?)?)?;
        eprintln!("envoy config: {}", config.display());
        eprintln!("try it:       curl -v http://127.0.0.1:{}/", self.port);
        let status = std::process::Command::new(crate::envoy::binary()?)
            .args(["--concurrency", "1", "--log-level", "info", "-c"])
            .arg(&config)
            .status()
            .context("cannot start envoy")?;
        if !status.success() {
            bail!("envoy exited with {status}: its log above says why");
        }
        Ok(())
    }
}
