//! `cargo xtask bench`: runs [`bench::run`] and prints what it measured.

use anyhow::{bail, Result};
use std::path::PathBuf;

use crate::bench::{self, Outcome};

const EXAMPLES: &str = "Examples:
  cargo xtask bench                    5 interleaved rounds of 10 s per variant, sizes, build times
  cargo xtask bench --quick            one short round (what `cargo xtask test` checks runs)
  cargo xtask bench --load 1000000     one million requests through add-header: errors, memory growth
  cargo xtask bench --work             per-request work in each filter (interpreter, deterministic)
  cargo xtask bench --sizes            every filter's module size on both targets
  cargo xtask bench --sizes --levers   the same under each size lever (build-std, optimize_for_size, opt-level)
  cargo xtask bench --instructions     Envoy's instructions per request under callgrind (deterministic)
  cargo xtask bench --twins            each filter vs its native twin and Wasm floor (callgrind, req/s)
  cargo xtask bench --twins --quick    one 2 s round, no callgrind: checks each pair agrees
  cargo xtask bench --twins --only ext-authz   one group and the no-filter row alone (~7 min)
  cargo xtask bench --streaming        MiB/s through redact vs no filter, 1 MiB and 100 MiB bodies
  cargo xtask bench --streaming --rounds 3 --seconds 5
  cargo xtask bench --streaming --instructions   Envoy instructions per response (callgrind)
  cargo xtask bench --streaming --instructions --only redact-1mib   one run of it
  cargo xtask bench --work my.wasm --config '{\"name\":\"a\",\"value\":\"b\"}'  the same for a module file

Writes target/bench/report.json, report.md and throughput.svg (--twins: twins.json, twins.md,
twins.svg; --streaming: streaming.json, streaming.md).";

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
#[command(about = "Measure filters against native Envoy and hand-written proxy-wasm", after_help = EXAMPLES)]
pub struct Args {
    /// One round of 2 s per variant; skips the cold build.
    #[arg(long)]
    pub quick: bool,
    /// Rounds; each runs every variant once, in turn.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Seconds of load per variant per round.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Concurrent connections [default: 16; with --streaming: 4].
    #[arg(long, value_name = "N")]
    pub connections: Option<u32>,
    /// Instead of the comparison: send at least N requests through add-header and
    /// report errors and Envoy's memory over time.
    #[arg(long, value_name = "N")]
    pub load: Option<u64>,
    /// Instead of the comparison: count each module's work per request (VM entries,
    /// host calls, wasm instructions, linear memory) in an interpreter, HTTP callouts
    /// answered 200. Deterministic; takes seconds and needs no Envoy.
    #[arg(long, conflicts_with = "load")]
    pub work: bool,
    /// Instead of the comparison: build every filter for both targets and print its size
    /// before and after weir's pipeline. Needs no Envoy.
    #[arg(long, conflicts_with_all = ["load", "work", "instructions"])]
    pub sizes: bool,
    /// With --sizes: build every filter once per size lever (std built with the
    /// release profile, optimize_for_size, opt-level "s") and print each lever's
    /// sizes beside the default build's. Builds into target/wasm-levers; several minutes.
    #[arg(long, requires = "sizes")]
    pub levers: bool,
    /// Instead of the comparison: count the x86 instructions Envoy executes per request
    /// (V8's JIT code included) for no filter, native, the empty module, raw and weir
    /// add-header, under valgrind's callgrind. Deterministic, unlike req/s; needs valgrind;
    /// about a minute per variant.
    #[arg(long, conflicts_with_all = ["load", "work"])]
    pub instructions: bool,
    /// With --work: count these modules instead of the workspace's filters.
    #[arg(requires = "work", value_name = "MODULE.wasm")]
    pub modules: Vec<PathBuf>,
    /// With --work and modules: the plugin configuration to give them (JSON text).
    #[arg(long, requires = "modules", value_name = "JSON")]
    pub config: Option<String>,
    /// Where the report goes (default: target/bench in the workspace).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Instead of the comparison: each weir filter against its native Envoy twin (RBAC,
    /// local_ratelimit, ext_authz against one authorization service) and the Wasm floor
    /// making the same host calls: req/s in interleaved rounds, then Envoy's instructions
    /// per request under callgrind (skipped with --quick).
    #[arg(long, conflicts_with_all = ["load", "work", "sizes", "instructions"])]
    pub twins: bool,
    /// With --twins: measure only this group (access-control, rate-limit or ext-authz),
    /// beside Envoy with no filter. With --streaming --instructions: only the runs whose
    /// label (`weir-redact-1mib`, `envoy-no-filter-100mib`, ...) contains this.
    #[arg(long, value_name = "GROUP")]
    pub only: Option<String>,
    /// Instead of the comparison: bytes per second through redact (a streaming body
    /// filter) against no filter and a Wasm floor, for 1 MiB and 100 MiB responses.
    /// With --instructions: Envoy's instructions per response under callgrind instead.
    #[arg(long, conflicts_with_all = ["load", "work", "sizes", "twins"])]
    pub streaming: bool,
}

impl Args {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let options = bench::Options {
            quick: self.quick,
            rounds: self.rounds,
            seconds: self.seconds,
            connections: self.connections,
            load: self.load,
            work: self.work,
            sizes: self.sizes,
            levers: self.levers,
            instructions: self.instructions,
            modules: self.modules,
            config: self.config,
            out: self.out,
            twins: self.twins,
            only: self.only,
            streaming: self.streaming,
        };
        let out = bench::out_dir(&options);
        let counted = options.instructions;
        match bench::run(&options)? {
            Outcome::Work(costs) => println!("{}", bench::work_table(&costs)),
            Outcome::Sizes(sizes) => println!("{}", bench::sizes_table(&sizes)),
            Outcome::SizeLevers(sizes) => println!("{}", bench::levers_table(&sizes)),
            Outcome::Compared { markdown, .. } => {
                println!("{markdown}");
                println!(
                    "wrote {}/report.json, report.md, throughput.svg",
                    out.display()
                );
            }
            Outcome::Load { report, failure } => {
                println!("{}", serde_json::to_string_pretty(&report)?);
                if let Some(failure) = failure {
                    bail!("{failure}");
                }
            }
            Outcome::Instructions { markdown } => {
                println!("{markdown}");
                println!("wrote {}/instructions.json", out.display());
            }
            Outcome::Twins { markdown } => {
                println!("{markdown}");
                println!("wrote {}/twins.json, twins.md, twins.svg", out.display());
            }
            Outcome::Streaming { markdown } => {
                println!("{markdown}");
                if counted {
                    println!(
                        "wrote {}/streaming-instructions.json, streaming-callgrind/",
                        out.display()
                    );
                } else {
                    println!("wrote {}/streaming.json, streaming.md", out.display());
                }
            }
        }
        Ok(())
    }
}
