//! `cargo xtask run`: [`run::prepare`] then [`run::serve`], saying how to try it in between.

use anyhow::Result;

use crate::run;

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

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let options = run::Options {
            filter: self.filter,
            config: self.config,
            port: self.port,
            admin_port: self.admin_port,
            upstream: self.upstream,
        };
        let config = run::prepare(&options)?;
        eprintln!("envoy config: {}", config.display());
        eprintln!("try it:       curl -v http://127.0.0.1:{}/", options.port);
        run::serve(&config)
    }
}
