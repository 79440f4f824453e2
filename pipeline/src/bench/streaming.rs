//! `bench --streaming`: bytes per second through a streaming body filter (redact, every
//! chunk read into the VM and scanned) against no filter and against the least a Wasm
//! filter reading every chunk can cost, for 1 MiB and 100 MiB responses from an upstream
//! in this process, through one Envoy worker. Interleaved rounds, as the main comparison.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::median;
use crate::build::{self, Options as BuildOptions};
use crate::envoy::{self, Backend, Bootstrap, Code, Envoy, WasmFilter};
use crate::project;

/// The goal: a streaming filter keeps at least this share of no filter's bytes per second.
pub const GOAL: f64 = 0.8;

/// Response sizes measured.
pub const SIZES: [u64; 2] = [1 << 20, 100 << 20];

/// Connections wrk keeps open by default (each carries one response at a time).
pub const CONNECTIONS: u32 = 4;

/// One variant at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// What is measured.
    pub name: String,
    /// Response body, bytes.
    pub size: u64,
    /// Bytes per second of each round (wrk's transfer rate: heads and bodies).
    pub runs: Vec<f64>,
    /// Envoy CPU per MiB delivered, each round, milliseconds.
    pub cpu_ms_per_mib: Vec<f64>,
    /// Median bytes per second.
    pub bytes_per_second: f64,
    /// Median Envoy CPU per MiB, milliseconds.
    pub envoy_cpu_ms_per_mib: f64,
}

/// What `bench --streaming` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// CPU, cores, Envoy.
    pub machine: String,
    /// Rounds.
    pub rounds: u32,
    /// Seconds per run.
    pub seconds: u32,
    /// wrk connections.
    pub connections: u32,
    /// Every variant at every size.
    pub variants: Vec<Measured>,
}

/// A line of text none of redact's example patterns matches.
const LINE: &[u8] = b"the quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJ\n";

/// An upstream answering `GET /bytes/N` with N bytes of `text/plain`, keep-alive.
fn upstream() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind the upstream")?;
    let addr = listener.local_addr()?.to_string();
    let block: Vec<u8> = LINE.iter().copied().cycle().take(1 << 20).collect();
    let block: &'static [u8] = Box::leak(block.into_boxed_slice());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(stream, block);
            });
        }
    });
    Ok(addr)
}

fn serve(stream: TcpStream, block: &[u8]) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let size: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/bytes/"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            if h.trim_end().is_empty() {
                break;
            }
        }
        writer.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\n\r\n"
            )
            .as_bytes(),
        )?;
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            writer.write_all(&block[..n])?;
            left -= n as u64;
        }
    }
}

/// The least a filter reading every response chunk does: one `proxy_get_buffer_bytes`
/// per chunk into a fixed buffer (memory grown to the largest chunk), nothing else.
const FLOOR_WAT: &str = r#"(module
  (import "env" "proxy_get_buffer_bytes" (func $bytes (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_initialize"))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (local.get $n) (i32.const 131071)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (drop (memory.grow (local.get $need)))))
    (i32.const 65536))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (drop (call $bytes (i32.const 1) (i32.const 0) (local.get 1) (i32.const 512) (i32.const 516)))
    (i32.const 0)))"#;

fn floor_module() -> Result<PathBuf> {
    let wasm = wat::parse_str(FLOOR_WAT).context("the body floor module does not assemble")?;
    let path = project::root()
        .join("target")
        .join("bench")
        .join("floor-body.wasm");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    project::write_atomic(&path, &wasm)?;
    Ok(path)
}

/// The variants' names, in the order they run: no filter, the floor, redact.
const VARIANTS: [&str; 3] = [
    "envoy, no filter",
    "wasm floor (reads every chunk)",
    "weir redact",
];

/// The label of one run (`weir-redact-1mib`): its directory under `streaming-callgrind/`,
/// and what `--only` matches.
fn label(name: &str, size: u64) -> String {
    format!("{}-{}mib", slug(name), size >> 20)
}

/// Checks `--only` before anything is built or started: it must pick at least one run.
fn check_only(only: Option<&str>) -> Result<()> {
    let labels: Vec<String> = SIZES
        .iter()
        .flat_map(|&size| VARIANTS.map(|name| label(name, size)))
        .collect();
    match only {
        Some(o) if !labels.iter().any(|l| l.contains(o)) => bail!(
            "--only {o}: no run's label contains it; the labels are {}",
            labels.join(", ")
        ),
        _ => Ok(()),
    }
}

fn variants() -> Result<Vec<(String, Vec<WasmFilter>)>> {
    let redact = project::filter("redact")?;
    let config = redact.example_config().ok();
    let module = build::build(&redact, &BuildOptions::default())?.path;
    let [none, floor, weir] = VARIANTS.map(String::from);
    Ok(vec![
        (none, vec![]),
        (
            floor,
            vec![WasmFilter {
                name: "floor-body".into(),
                root_id: "floor-body".into(),
                code: Code::Local(floor_module()?),
                configuration: None,
                failure_policy: None,
            }],
        ),
        (
            weir,
            vec![WasmFilter {
                name: "redact".into(),
                root_id: "redact".into(),
                code: Code::Local(module),
                configuration: config,
                failure_policy: None,
            }],
        ),
    ])
}

/// wrk's `Transfer/sec:` in bytes per second.
pub fn parse_transfer(out: &str) -> Option<f64> {
    let v = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Transfer/sec:"))?
        .trim();
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let mult = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n.trim().parse::<f64>().ok()? * mult)
}

fn wrk(port: u16, size: u64, seconds: u32, connections: u32) -> Result<(f64, u64)> {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("60s")
        .arg(format!("http://127.0.0.1:{port}/bytes/{size}"))
        .output()
        .context("cannot run wrk: run `cargo xtask setup`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw failed responses:\n{text}");
    }
    let rate =
        parse_transfer(&text).with_context(|| format!("could not read wrk's output:\n{text}"))?;
    let requests = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    Ok((rate, requests))
}

/// Options of `bench --streaming`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rounds.
    pub rounds: u32,
    /// Seconds per run.
    pub seconds: u32,
    /// Concurrent connections ([`CONNECTIONS`] unless asked otherwise).
    pub connections: u32,
}

/// Measures; writes `streaming.json` and `streaming.md` under `out`.
pub fn run(options: &Options, out: &Path) -> Result<(Report, String)> {
    let upstream = upstream()?;
    let variants = variants()?;
    let mut rows: Vec<Measured> = Vec::new();
    for size in SIZES {
        for (name, _) in &variants {
            rows.push(Measured {
                name: name.clone(),
                size,
                runs: vec![],
                cpu_ms_per_mib: vec![],
                bytes_per_second: 0.0,
                envoy_cpu_ms_per_mib: 0.0,
            });
        }
    }
    for round in 1..=options.rounds {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let size = rows[i].size;
            let filters = variants[i % variants.len()].1.clone();
            let mut b = Bootstrap::new(envoy::free_port()?, envoy::free_port()?, filters);
            b.backend = Backend::Upstream(upstream.clone());
            let envoy = Envoy::start_on(&b, Some(0))?;
            // The body must arrive whole and unchanged before anything is timed.
            let r = envoy.get(&format!("/bytes/{}", 1 << 16), &[])?;
            if r.status != 200 || r.body.len() != 1 << 16 {
                bail!(
                    "{}: a 64 KiB response came back as {} with {} bytes",
                    rows[i].name,
                    r.status,
                    r.body.len()
                );
            }
            let _warm = wrk(envoy.port, size, 1, options.connections);
            let before = super::cpu_seconds(envoy.pid());
            let (rate, _) = wrk(envoy.port, size, options.seconds, options.connections)?;
            let cpu = match (before, super::cpu_seconds(envoy.pid())) {
                (Some(b), Some(a)) => {
                    (a - b) * 1e3 / (rate * f64::from(options.seconds) / (1 << 20) as f64)
                }
                _ => 0.0,
            };
            let failures = envoy.vm_failures();
            if !failures.is_empty() {
                bail!("{}: the VM failed: {}", rows[i].name, failures[0]);
            }
            eprintln!(
                "  round {round}/{}  {:>7}  {:<32} {:>9.1} MiB/s  cpu {:>6.2} ms/MiB",
                options.rounds,
                human(size),
                rows[i].name,
                rate / (1 << 20) as f64,
                cpu
            );
            rows[i].runs.push(rate);
            rows[i].cpu_ms_per_mib.push(cpu);
        }
    }
    for r in &mut rows {
        r.bytes_per_second = median(r.runs.clone());
        r.envoy_cpu_ms_per_mib = median(r.cpu_ms_per_mib.clone());
    }
    let report = Report {
        machine: super::machine(),
        rounds: options.rounds,
        seconds: options.seconds,
        connections: options.connections,
        variants: rows,
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    project::write_atomic(
        &out.join("streaming.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let md = markdown(&report);
    project::write_atomic(&out.join("streaming.md"), md.as_bytes())?;
    Ok((report, md))
}

/// Responses before callgrind's counters are zeroed, and responses counted, by size.
fn callgrind_counts(size: u64) -> (usize, usize) {
    if size <= 1 << 20 {
        (20, 50)
    } else {
        (2, 3)
    }
}

/// `bench --streaming --instructions`: the x86 instructions Envoy executes per response
/// (V8's JIT code included) for each variant and size, under valgrind's callgrind, on
/// one keep-alive connection. Deterministic where bytes per second are not; each
/// callgrind dump is kept under `out/streaming-callgrind/<label>/` for `callgrind_annotate`.
/// With `only`, just the runs whose label (`weir-redact-1mib`) contains it.
pub fn instructions(out: &Path, only: Option<&str>) -> Result<String> {
    check_only(only)?;
    if envoy::which("valgrind").is_none() || envoy::which("callgrind_control").is_none() {
        bail!("--instructions needs valgrind: install it (`apt-get install valgrind`)");
    }
    let envoy_bin = super::envoy_binary()?;
    let upstream = upstream()?;
    let variants = variants()?;
    let mut rows: Vec<(String, u64, f64)> = Vec::new();
    for size in SIZES {
        for (name, filters) in &variants {
            let label = label(name, size);
            if only.is_some_and(|o| !label.contains(o)) {
                continue;
            }
            let dir = out.join("streaming-callgrind").join(label);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut b = Bootstrap::new(envoy::free_port()?, envoy::free_port()?, filters.clone());
            b.backend = Backend::Upstream(upstream.clone());
            let request = format!("GET /bytes/{size} HTTP/1.1\r\nhost: localhost\r\n\r\n");
            let (warm, counted) = callgrind_counts(size);
            eprintln!("  {:>7}  {name:<32} under callgrind ...", human(size));
            let per = super::count_instructions_n(
                &b,
                request.as_bytes(),
                &envoy_bin,
                &dir,
                warm,
                counted,
            )
            .with_context(|| format!("{name}, {}: cannot count instructions", human(size)))?;
            eprintln!(
                "  {:>7}  {name:<32} {:>14.0} instructions per response",
                human(size),
                per
            );
            rows.push((name.clone(), size, per));
        }
    }
    let report = serde_json::json!({
        "instructions_per_response": rows.iter().map(|(n, size, v)| serde_json::json!({
            "variant": n, "size": size, "instructions": v,
            "responses_counted": callgrind_counts(*size).1,
        })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    project::write_atomic(
        &out.join("streaming-instructions.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let mut md = "| response | variant | Envoy instructions / response | per MiB | × no filter |\n|---|---|---:|---:|---:|\n".to_owned();
    for (name, size, per) in &rows {
        let none = rows
            .iter()
            .find(|(n, s, _)| s == size && n == "envoy, no filter")
            .map_or(0.0, |r| r.2);
        md += &format!(
            "| {} | {name} | {per:.0} | {:.0} | {:.2}× |\n",
            human(*size),
            per / (*size >> 20) as f64,
            if none > 0.0 { per / none } else { 0.0 }
        );
    }
    Ok(md)
}

/// A variant's name as a directory name.
fn slug(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn human(size: u64) -> String {
    format!("{} MiB", size >> 20)
}

/// The table: MiB/s per variant and size, the share of no filter's.
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "| response | variant | median MiB/s ({} × {} s, {} conn.) | × no filter | Envoy CPU / MiB |\n|---|---|---:|---:|---:|\n",
        r.rounds, r.seconds, r.connections
    );
    for v in &r.variants {
        let none = r
            .variants
            .iter()
            .find(|n| n.size == v.size && n.name == "envoy, no filter")
            .map_or(0.0, |n| n.bytes_per_second);
        let name = if v.name.starts_with("weir") {
            format!("**{}**", v.name)
        } else {
            v.name.clone()
        };
        s += &format!(
            "| {} | {name} | {:.1} | {:.2}× | {:.2} ms |\n",
            human(v.size),
            v.bytes_per_second / (1 << 20) as f64,
            if none > 0.0 {
                v.bytes_per_second / none
            } else {
                0.0
            },
            v.envoy_cpu_ms_per_mib
        );
    }
    s + &format!("\nGoal: a streaming filter ≥ {GOAL}× no filter's bytes per second.\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_transfer_rates_in_each_unit() {
        let out = "  4 requests in 5.00s, 400.00MB read\nRequests/sec:      0.80\nTransfer/sec:     80.00MB\n";
        assert_eq!(parse_transfer(out), Some(80.0 * 1024.0 * 1024.0));
        assert_eq!(
            parse_transfer("Transfer/sec: 1.50GB"),
            Some(1.5 * (1u64 << 30) as f64)
        );
        assert_eq!(
            parse_transfer("Transfer/sec: 512.00KB"),
            Some(512.0 * 1024.0)
        );
        assert_eq!(parse_transfer("Transfer/sec: 12B"), Some(12.0));
        assert_eq!(parse_transfer("Requests/sec: 3"), None);
        assert_eq!(parse_transfer("Transfer/sec: 3TB"), None);
    }

    #[test]
    fn the_body_floor_assembles() {
        wat::parse_str(FLOOR_WAT).unwrap();
    }
}
