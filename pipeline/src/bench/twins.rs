//! `bench --twins`: each weir filter against the native Envoy filter a user would
//! otherwise choose (access-control / RBAC, rate-limit / `local_ratelimit`, ext-authz /
//! `ext_authz` against one authorization service), and the cheapest Wasm module doing
//! the same host calls (the floor). Envoy instructions per request under callgrind, and
//! req/s in interleaved rounds; every variant answers the same request with 200.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{median, parse_wrk, Run};
use crate::build::{self, Options as BuildOptions};
use crate::envoy::{self, Bootstrap, Code, Envoy, WasmFilter};
use crate::project;

/// The goal: a weir filter costs at most this many times its twin's instructions per request.
pub const GOAL: f64 = 1.25;

/// The one request every variant answers (200 from each: it passes every policy).
const PATH: &str = "/api/v1";
const HEADERS: [(&str, &str); 2] = [("authorization", "Bearer good"), ("x-api-key", "demo-key")];

/// What a variant is in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Envoy's own filter.
    Native,
    /// The weir filter.
    Weir,
    /// A hand-written module making the same host calls and nothing else.
    Floor,
    /// Envoy without any filter (the reference row).
    Baseline,
}

/// One Envoy configuration to measure.
struct Twin {
    name: String,
    /// The module and its configuration, for the wasmi count.
    module: Option<(PathBuf, String)>,
    group: &'static str,
    role: Role,
    filters: Vec<WasmFilter>,
    native: Vec<Value>,
    /// Needs the authorization service cluster.
    authz: bool,
}

/// One variant's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// What is measured.
    pub name: String,
    /// access-control, rate-limit, ext-authz (or "envoy" for the baseline).
    pub group: String,
    /// Its role in the group.
    pub role: Role,
    /// Envoy's instructions per request under callgrind (V8's JIT code included).
    pub instructions: Option<f64>,
    /// Host calls per request inside the module, on the twins' request (wasmi).
    pub host_calls: Option<f64>,
    /// Wasm instructions per request inside the module, on the twins' request (wasmi).
    pub wasm_instructions: Option<f64>,
    /// Every round's wrk run.
    pub runs: Vec<Run>,
    /// Median req/s over the rounds.
    pub rps: f64,
    /// Median Envoy CPU per request, microseconds.
    pub envoy_cpu_us: f64,
}

/// What `bench --twins` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// CPU, cores, Envoy.
    pub machine: String,
    /// Rounds of req/s.
    pub rounds: u32,
    /// Seconds per run.
    pub seconds: u32,
    /// wrk connections.
    pub connections: u32,
    /// Each variant.
    pub variants: Vec<Measured>,
}

const ACCESS_CONTROL: &str = r#"{
  "allow_sources": ["127.0.0.0/8", "10.0.0.0/8", "::1"],
  "deny_path_prefixes": ["/admin"],
  "deny_headers": [{"name": "x-debug-bypass"}],
  "_rules_": [
    {"_match_path_prefix_": ["/api/"], "require_headers": [{"name": "x-api-key", "values": ["demo-key"]}]}
  ]
}"#;

/// RBAC with access-control's example policy: sources 127/8, 10/8, ::1; no path under
/// /admin; no `x-debug-bypass`; under /api/ an `x-api-key` of `demo-key`.
fn rbac() -> Value {
    json!({"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "ALLOW", "policies": {"access-control": {
            "permissions": [{"and_rules": {"rules": [
                {"not_rule": {"url_path": {"path": {"prefix": "/admin"}}}},
                {"not_rule": {"header": {"name": "x-debug-bypass", "present_match": true}}},
                {"or_rules": {"rules": [
                    {"not_rule": {"url_path": {"path": {"prefix": "/api/"}}}},
                    {"header": {"name": "x-api-key", "string_match": {"exact": "demo-key"}}}
                ]}}
            ]}}],
            "principals": [{"or_ids": {"ids": [
                {"direct_remote_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}},
                {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
                {"direct_remote_ip": {"address_prefix": "::1", "prefix_len": 128}}
            ]}}]
        }}}
    }})
}

/// Far above what a run sends: both limiters take their allow path on every request.
const RATE_LIMIT: &str = r#"{"requests": 1000000000, "window_seconds": 60}"#;

fn local_ratelimit() -> Value {
    let percent = |key: &str| json!({"runtime_key": key, "default_value": {"numerator": 100, "denominator": "HUNDRED"}});
    json!({"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "local_rate_limit",
        "token_bucket": {"max_tokens": 1_000_000_000u64, "tokens_per_fill": 1_000_000_000u64, "fill_interval": "60s"},
        "filter_enabled": percent("local_rate_limit_enabled"),
        "filter_enforced": percent("local_rate_limit_enforced"),
    }})
}

/// The cluster both ext-authz twins call.
const AUTHZ_CLUSTER: &str = "ext-authz";

const EXT_AUTHZ: &str = r#"{"cluster": "ext-authz", "path_prefix": "/check", "timeout_ms": 30000,
  "forward_headers": ["authorization"], "upstream_headers": ["x-user"]}"#;

fn native_ext_authz(authz: &str) -> Value {
    json!({"name": "envoy.filters.http.ext_authz", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {"uri": format!("http://{authz}"), "cluster": AUTHZ_CLUSTER, "timeout": "30s"},
            "path_prefix": "/check",
            "authorization_request": {"allowed_headers": {"patterns": [{"exact": "authorization"}]}},
            "authorization_response": {"allowed_upstream_headers": {"patterns": [{"exact": "x-user"}]}},
        },
    }})
}

/// The authorization service both ext-authz twins ask: `authorization: Bearer good`
/// is allowed with `x-user: alice`, anything else is 403. Keep-alive, a thread per
/// connection, in this process (so callgrind does not count it).
pub fn authz_service() -> Result<String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("cannot bind the authorization service")?;
    let addr = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = authz_connection(stream);
            });
        }
    });
    Ok(addr)
}

fn authz_connection(stream: TcpStream) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let (mut allowed, mut length) = (false, 0usize);
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if l == "authorization: bearer good" {
                allowed = true;
            }
            if let Some(n) = l.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap_or(0);
            }
        }
        std::io::copy(&mut (&mut reader).take(length as u64), &mut std::io::sink())?;
        let answer: &[u8] = if allowed {
            b"HTTP/1.1 200 OK\r\nx-user: alice\r\ncontent-length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"
        };
        writer.write_all(answer)?;
    }
}

/// The hand-written floor modules: exports Envoy requires, a fixed scratch buffer for
/// whatever the host returns, and in `proxy_on_request_headers` (and the callout's
/// answer) exactly the host calls named, nothing else.
fn floor_wat(imports: &str, data: &str, request_headers: &str, extra: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  {data}
  (func (export "_initialize"))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 65536))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {request_headers})
  {extra})"#
    )
}

/// WAT string literal for these bytes.
fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// proxy-wasm's serialized header map.
fn serialized_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Scratch at 512 (returned pointer), 516 (returned size), 520 (cas / token), 528 (time);
/// the ext-authz floor keeps each callout's stream at 4096 + 4 × (token mod 1024), since
/// Envoy delivers the answer to the root context.
fn floors() -> Vec<(&'static str, String)> {
    let source = "source\0address";
    let access = floor_wat(
        r#"(import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $property (param i32 i32 i32 i32) (result i32)))"#,
        &format!(
            r#"(data (i32.const 1024) "{}")"#,
            wat_bytes(source.as_bytes())
        ),
        &format!(
            "(drop (call $pairs (i32.const 0) (i32.const 512) (i32.const 516)))
    (drop (call $property (i32.const 1024) (i32.const {}) (i32.const 512) (i32.const 516)))
    (i32.const 0)",
            source.len()
        ),
        "",
    );
    let key = "rl/g/0";
    let rate = floor_wat(
        r#"(import "env" "proxy_get_property" (func $property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))"#,
        &format!(
            r#"(data (i32.const 1024) "{}") (data (i32.const 1100) "{}")"#,
            wat_bytes(source.as_bytes()),
            wat_bytes(key.as_bytes())
        ),
        &format!(
            "(drop (call $property (i32.const 1024) (i32.const {}) (i32.const 512) (i32.const 516)))
    (drop (call $now (i32.const 528)))
    (drop (call $get (i32.const 1100) (i32.const {k}) (i32.const 512) (i32.const 516) (i32.const 520)))
    (drop (call $set (i32.const 1100) (i32.const {k}) (i32.const 528) (i32.const 20) (i32.load (i32.const 520))))
    (i32.const 0)",
            source.len(),
            k = key.len()
        ),
        "",
    );
    let callout = serialized_pairs(&[
        (":method", "GET"),
        (":path", "/check/api/v1"),
        (":authority", AUTHZ_CLUSTER),
        ("authorization", "Bearer good"),
    ]);
    let empty = serialized_pairs(&[]);
    let authz = floor_wat(
        r#"(import "env" "proxy_get_header_map_value" (func $value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))"#,
        &format!(
            r#"(data (i32.const 1024) "authorization") (data (i32.const 1040) "x-user") (data (i32.const 1050) "{AUTHZ_CLUSTER}") (data (i32.const 1100) "{}") (data (i32.const 1400) "{}")"#,
            wat_bytes(&callout),
            wat_bytes(&empty)
        ),
        &format!(
            "(drop (call $value (i32.const 0) (i32.const 1024) (i32.const 13) (i32.const 512) (i32.const 516)))
    (drop (call $call (i32.const 1050) (i32.const {}) (i32.const 1100) (i32.const {}) (i32.const 0) (i32.const 0) (i32.const 1400) (i32.const {}) (i32.const 30000) (i32.const 520)))
    (i32.store (i32.add (i32.const 4096) (i32.shl (i32.and (i32.load (i32.const 520)) (i32.const 1023)) (i32.const 2))) (local.get 0))
    (i32.const 1)",
            AUTHZ_CLUSTER.len(),
            callout.len(),
            empty.len()
        ),
        r#"(func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $effective (i32.load (i32.add (i32.const 4096) (i32.shl (i32.and (local.get 1) (i32.const 1023)) (i32.const 2))))))
    (drop (call $value (i32.const 6) (i32.const 1040) (i32.const 6) (i32.const 512) (i32.const 516)))
    (drop (call $replace (i32.const 0) (i32.const 1040) (i32.const 6) (i32.load (i32.const 512)) (i32.load (i32.const 516))))
    (drop (call $continue (i32.const 0))))"#,
    );
    vec![
        ("access-control", access),
        ("rate-limit", rate),
        ("ext-authz", authz),
    ]
}

fn floor_module(group: &str, wat: &str) -> Result<PathBuf> {
    let wasm = wat::parse_str(wat)
        .with_context(|| format!("the {group} floor module does not assemble"))?;
    let path = project::root()
        .join("target")
        .join("bench")
        .join(format!("floor-{group}.wasm"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    project::write_atomic(&path, &wasm)?;
    Ok(path)
}

fn weir(name: &str, config: &str) -> Result<WasmFilter> {
    let filter = project::filter(name)?;
    Ok(WasmFilter {
        name: name.to_owned(),
        root_id: name.to_owned(),
        code: Code::Local(build::build(&filter, &BuildOptions::default())?.path),
        configuration: Some(config.to_owned()),
        failure_policy: None,
    })
}

fn twins(authz: &str) -> Result<Vec<Twin>> {
    let twin = |name: &str, group, role, filters: Vec<WasmFilter>, native, authz| Twin {
        name: name.to_owned(),
        module: filters.first().and_then(|f| match &f.code {
            Code::Local(path) => Some((path.clone(), f.configuration.clone().unwrap_or_default())),
            _ => None,
        }),
        group,
        role,
        filters,
        native,
        authz,
    };
    let mut out = vec![twin(
        "envoy, no filter",
        "envoy",
        Role::Baseline,
        vec![],
        vec![],
        false,
    )];
    let floors = floors();
    for (group, native_name, native, config) in [
        ("access-control", "native RBAC", rbac(), ACCESS_CONTROL),
        (
            "rate-limit",
            "native local_ratelimit",
            local_ratelimit(),
            RATE_LIMIT,
        ),
        (
            "ext-authz",
            "native ext_authz",
            native_ext_authz(authz),
            EXT_AUTHZ,
        ),
    ] {
        let calls_out = group == "ext-authz";
        out.push(twin(
            native_name,
            group,
            Role::Native,
            vec![],
            vec![native],
            calls_out,
        ));
        out.push(twin(
            &format!("weir {group}"),
            group,
            Role::Weir,
            vec![weir(group, config)?],
            vec![],
            calls_out,
        ));
        let wat = &floors
            .iter()
            .find(|(g, _)| *g == group)
            .context("a floor per group")?
            .1;
        let floor = WasmFilter {
            name: format!("floor-{group}"),
            root_id: format!("floor-{group}"),
            code: Code::Local(floor_module(group, wat)?),
            configuration: None,
            failure_policy: None,
        };
        out.push(twin(
            &format!("wasm floor ({group}'s host calls)"),
            group,
            Role::Floor,
            vec![floor],
            vec![],
            calls_out,
        ));
    }
    Ok(out)
}

fn bootstrap(t: &Twin, authz: &str) -> Result<Bootstrap> {
    let mut b = Bootstrap::new(envoy::free_port()?, envoy::free_port()?, t.filters.clone());
    b.native_filters = t.native.clone();
    if t.authz {
        b.clusters.push((AUTHZ_CLUSTER.into(), authz.into()));
    }
    Ok(b)
}

fn request() -> Vec<u8> {
    let mut r = format!("GET {PATH} HTTP/1.1\r\nhost: localhost\r\n");
    for (k, v) in HEADERS {
        r += &format!("{k}: {v}\r\n");
    }
    (r + "\r\n").into_bytes()
}

/// A probe: path, headers, the status each twin must give.
type Probe = (&'static str, Vec<(&'static str, &'static [u8])>, u16);

/// Probes that show a pair enforces one policy.
fn probes(group: &str) -> Vec<Probe> {
    let measured: Vec<(&'static str, &'static [u8])> =
        HEADERS.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let mut out = vec![(PATH, measured, 200)];
    match group {
        "access-control" => {
            out.push(("/api/v1", vec![], 403));
            out.push(("/api/v1", vec![("x-api-key", b"wrong")], 403));
            out.push(("/admin/users", vec![], 403));
            out.push(("/", vec![("x-debug-bypass", b"1")], 403));
            out.push(("/", vec![], 200));
        }
        "ext-authz" => {
            out.push(("/", vec![("authorization", b"Bearer bad")], 403));
            out.push(("/", vec![], 403));
        }
        _ => {}
    }
    out
}

/// Sends the group's probes; fails when the variant does not answer as its policy says.
fn check(t: &Twin, envoy: &Envoy) -> Result<()> {
    if t.role == Role::Floor || t.role == Role::Baseline {
        let r = envoy
            .get(PATH, &[])
            .with_context(|| format!("{}: GET {PATH} got no answer", t.name))?;
        if r.status != 200 {
            bail!("{}: answered {} to a plain GET {PATH}", t.name, r.status);
        }
        return Ok(());
    }
    for (path, headers, want) in probes(t.group) {
        let r = envoy
            .get(path, &headers)
            .with_context(|| format!("{}: GET {path} got no answer", t.name))?;
        if r.status != want {
            bail!(
                "{}: GET {path} with {:?} answered {}, not {want}: the twins do not enforce the same policy",
                t.name,
                headers.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                r.status
            );
        }
    }
    Ok(())
}

/// wrk with the measured request's path and headers.
fn wrk(port: u16, seconds: u32, connections: u32) -> Result<Run> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    for (k, v) in HEADERS {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{PATH}"))
        .output()
        .context("cannot run wrk: run `cargo xtask setup`")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// Options of `bench --twins`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rounds of req/s (0: none).
    pub rounds: u32,
    /// Seconds per run.
    pub seconds: u32,
    /// wrk connections.
    pub connections: u32,
    /// Count instructions under callgrind.
    pub instructions: bool,
    /// Only this group (and the no-filter baseline): `access-control`, `rate-limit`
    /// or `ext-authz`.
    pub only: Option<String>,
}

/// The groups, each a weir filter with its twin and floor.
pub const GROUPS: [&str; 3] = ["access-control", "rate-limit", "ext-authz"];

/// Measures every twin; writes `twins.json`, `twins.md` and `twins.svg` under `out`.
pub fn run(options: &Options, out: &Path) -> Result<(Report, String)> {
    if let Some(only) = &options.only {
        if !GROUPS.contains(&only.as_str()) {
            bail!(
                "--only {only}: no such twins group; choose one of {}",
                GROUPS.join(", ")
            );
        }
    }
    let authz = authz_service()?;
    let mut twins = twins(&authz)?;
    if let Some(only) = &options.only {
        twins.retain(|t| t.role == Role::Baseline || t.group == only.as_str());
    }
    // Each pair enforces one policy: checked before anything is measured.
    for t in &twins {
        let envoy = Envoy::start_on(&bootstrap(t, &authz)?, Some(0))
            .with_context(|| format!("{}: envoy did not start", t.name))?;
        check(t, &envoy)?;
    }
    eprintln!("     Checked: each twin answers the probes as its policy says");
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); twins.len()];
    for round in 1..=options.rounds {
        let mut order: Vec<usize> = (0..twins.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let t = &twins[i];
            let envoy = Envoy::start_on(&bootstrap(t, &authz)?, Some(0))?;
            let _warm = wrk(envoy.port, 1, options.connections);
            let before = super::cpu_seconds(envoy.pid());
            let mut run = wrk(envoy.port, options.seconds, options.connections)?;
            if let (Some(b), Some(a)) = (before, super::cpu_seconds(envoy.pid())) {
                run.envoy_cpu_us = (a - b) * 1e6 / run.requests.max(1) as f64;
            }
            eprintln!(
                "  round {round}/{}  {:<40} {:>8.0} req/s  cpu {:>6.1} us/req{}",
                options.rounds,
                t.name,
                run.rps,
                run.envoy_cpu_us,
                if run.errors > 0 {
                    format!("  {} errors", run.errors)
                } else {
                    String::new()
                }
            );
            runs[i].push(run);
        }
    }
    let mut instructions = vec![None; twins.len()];
    if options.instructions {
        if envoy::which("valgrind").is_none() || envoy::which("callgrind_control").is_none() {
            bail!("--twins counts instructions with valgrind: install it (`apt-get install valgrind`), or measure req/s alone with `--twins --quick`");
        }
        let envoy_bin = super::envoy_binary()?;
        for (i, t) in twins.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            eprintln!("  {:<40} under callgrind ...", t.name);
            // One variant that cannot be counted leaves a gap in the table, not an
            // empty table.
            match super::count_instructions_of(
                &bootstrap(t, &authz)?,
                &request(),
                &envoy_bin,
                dir.path(),
            ) {
                Ok(per) => {
                    eprintln!("  {:<40} {per:>10.0} instructions per request", t.name);
                    instructions[i] = Some(per);
                }
                Err(e) => eprintln!("  {:<40} not counted: {e:#}", t.name),
            }
        }
    }
    let variants: Vec<Measured> = twins
        .iter()
        .zip(runs)
        .zip(instructions)
        .map(|((t, runs), instructions)| {
            let work = t.module.as_ref().and_then(|(path, config)| {
                let wasm = std::fs::read(path).ok()?;
                request_work(&wasm, config)
                    .map_err(|e| eprintln!("  {}: work not counted: {e:#}", t.name))
                    .ok()
            });
            Measured {
                name: t.name.clone(),
                host_calls: work.map(|w| w.0),
                wasm_instructions: work.map(|w| w.1),
                group: t.group.to_owned(),
                role: t.role,
                instructions,
                rps: median(runs.iter().map(|r| r.rps).collect()),
                envoy_cpu_us: median(runs.iter().map(|r| r.envoy_cpu_us).collect()),
                runs,
            }
        })
        .collect();
    let report = Report {
        machine: super::machine(),
        rounds: options.rounds,
        seconds: options.seconds,
        connections: options.connections,
        variants,
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    project::write_atomic(
        &out.join("twins.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    project::write_atomic(&out.join("twins.svg"), chart(&report).as_bytes())?;
    let md = markdown(&report);
    project::write_atomic(&out.join("twins.md"), md.as_bytes())?;
    Ok((report, md))
}

fn find<'a>(r: &'a Report, group: &str, role: Role) -> Option<&'a Measured> {
    r.variants
        .iter()
        .find(|v| v.group == group && v.role == role)
}

/// The report as markdown: one table, each weir filter's ratio to its twin and floor.
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "| group | variant | Envoy instructions / request | over no filter | × twin | host calls | wasm instructions | median req/s ({} × {} s, {} conn.) | Envoy CPU / request |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        r.rounds, r.seconds, r.connections
    );
    let base = find(r, "envoy", Role::Baseline).and_then(|v| v.instructions);
    for v in &r.variants {
        let twin = find(r, &v.group, Role::Native).and_then(|n| n.instructions);
        let cell = |x: Option<f64>| x.map_or("—".to_owned(), |x| format!("{x:.0}"));
        let over = match (v.instructions, base) {
            (Some(i), Some(b)) => format!("{:+.0}", i - b),
            _ => "—".into(),
        };
        let times = match (v.instructions, twin) {
            (Some(i), Some(t)) if v.role != Role::Baseline => format!("{:.3}×", i / t),
            _ => "—".into(),
        };
        let name = if v.role == Role::Weir {
            format!("**{}**", v.name)
        } else {
            v.name.clone()
        };
        s += &format!(
            "| {} | {name} | {} | {over} | {times} | {} | {} | {} | {} |\n",
            v.group,
            cell(v.instructions),
            v.host_calls.map_or("—".to_owned(), |x| format!("{x:.1}")),
            cell(v.wasm_instructions),
            if v.runs.is_empty() {
                "—".into()
            } else {
                format!("{:.0}", v.rps)
            },
            if v.runs.is_empty() {
                "—".into()
            } else {
                format!("{:.1} µs", v.envoy_cpu_us)
            },
        );
    }
    s += &format!("\nGoal: each weir filter ≤ {GOAL}× its twin's instructions per request.\n\n");
    for group in ["access-control", "rate-limit", "ext-authz"] {
        let get = |role| find(r, group, role).and_then(|v| v.instructions);
        if let (Some(w), Some(n), Some(f)) = (get(Role::Weir), get(Role::Native), get(Role::Floor))
        {
            s += &format!(
                "- {group}: weir {:.3}× its twin ({}); the floor is {:.3}×, so weir's own cost above the floor is {:+.0} instructions ({:.1}% of the request)\n",
                w / n,
                if w / n <= GOAL { "met" } else { "missed" },
                f / n,
                w - f,
                (w - f) / w * 100.0
            );
        }
    }
    s
}

/// A grouped bar chart of instructions per request (lower is better), the goal marked.
pub fn chart(r: &Report) -> String {
    let rows: Vec<&Measured> = r
        .variants
        .iter()
        .filter(|v| v.instructions.is_some())
        .collect();
    let max = rows
        .iter()
        .filter_map(|v| v.instructions)
        .fold(1.0, f64::max);
    let (label_w, bar_w, row_h) = (300.0, 420.0, 28.0);
    let height = 70.0 + row_h * rows.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Envoy instructions per request, callgrind (lower is better)</text>\n\
         <text x=\"10\" y=\"42\" font-size=\"12\">red tick: {GOAL}× the native twin (the goal)</text>\n",
        label_w + bar_w + 110.0
    );
    for (i, v) in rows.iter().enumerate() {
        let y = 55.0 + row_h * i as f64;
        let n = v.instructions.unwrap_or(0.0);
        let w = bar_w * n / max;
        let color = match v.role {
            Role::Weir => "#2b7a4b",
            Role::Native => "#5470a8",
            Role::Floor => "#999999",
            Role::Baseline => "#333333",
        };
        svg += &format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n<rect x=\"{label_w}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"20\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{n:.0}</text>\n",
            label_w - 8.0,
            y + 15.0,
            super::xml_escape(&v.name),
            label_w + w + 6.0,
            y + 15.0,
        );
        if v.role == Role::Weir {
            if let Some(t) = find(r, &v.group, Role::Native).and_then(|t| t.instructions) {
                let x = label_w + bar_w * t * GOAL / max;
                svg += &format!(
                    "<line x1=\"{x:.1}\" y1=\"{:.0}\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#c0392b\" stroke-width=\"2\"/>\n",
                    y - 3.0,
                    y + 23.0
                );
            }
        }
    }
    svg + "</svg>\n"
}

/// The twins' request as a wasmi host sees it (`bench --work`'s host answers nothing
/// found, so it measures a filter's deny path): Envoy's request headers for the
/// measured GET, a loopback source, shared data, and an authorization service that
/// allows with `x-user: alice`.
struct TwinHost {
    configuration: Vec<u8>,
    shared: std::collections::HashMap<Vec<u8>, (Vec<u8>, u32)>,
    calls: u32,
}

impl TwinHost {
    fn request_headers() -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut pairs: Vec<(&str, &str)> = vec![
            (":authority", "localhost"),
            (":path", PATH),
            (":method", "GET"),
            (":scheme", "http"),
        ];
        pairs.extend(HEADERS);
        pairs.extend([
            ("x-forwarded-proto", "http"),
            ("x-request-id", "6a0b7c52-4bd4-4b51-9a5c-0d9f3c1e2a77"),
        ]);
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn map(map: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        match map {
            0 => Self::request_headers(),
            // The authorization service's answer (HttpCallResponseHeaders).
            6 => vec![
                (b":status".to_vec(), b"200".to_vec()),
                (b"x-user".to_vec(), b"alice".to_vec()),
                (b"content-length".to_vec(), b"0".to_vec()),
            ],
            _ => vec![],
        }
    }
}

impl weir_wasm_host::Proxy for TwinHost {
    fn map_get(&mut self, map: u32, name: &[u8]) -> Option<Vec<u8>> {
        Self::map(map)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    fn map_pairs(&mut self, map: u32) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        Some(Self::map(map))
    }
    fn map_set(&mut self, _: u32, _: &[u8], _: &[u8]) -> bool {
        true
    }
    fn map_add(&mut self, _: u32, _: &[u8], _: &[u8]) -> bool {
        true
    }
    fn map_remove(&mut self, _: u32, _: &[u8]) -> bool {
        true
    }
    fn buffer_get(&mut self, buffer: u32, start: usize, max: usize) -> Option<Vec<u8>> {
        if buffer != weir_wasm_host::PLUGIN_CONFIGURATION {
            return None;
        }
        let c = &self.configuration;
        let start = start.min(c.len());
        Some(c[start..start.saturating_add(max).min(c.len())].to_vec())
    }
    fn property(&mut self, path: &[&[u8]]) -> Option<Vec<u8>> {
        match path {
            [b"source", b"address"] => Some(b"127.0.0.1:40000".to_vec()),
            [b"request", b"path"] => Some(PATH.as_bytes().to_vec()),
            [b"request", b"host"] => Some(b"localhost".to_vec()),
            [b"request", b"method"] => Some(b"GET".to_vec()),
            _ => None,
        }
    }
    fn define_metric(&mut self, _: u32, _: &[u8]) -> Option<u32> {
        Some(1)
    }
    fn increment_metric(&mut self, _: u32, _: i64) -> bool {
        true
    }
    fn shared_get(&mut self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key).cloned()
    }
    fn shared_set(&mut self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        let entry = self.shared.entry(key.to_vec()).or_insert((Vec::new(), 0));
        if cas != 0 && cas != entry.1 {
            return weir_wasm_host::CAS_MISMATCH;
        }
        *entry = (value.to_vec(), entry.1 + 1);
        weir_wasm_host::OK
    }
    fn continue_stream(&mut self, _: u32) -> bool {
        true
    }
    fn now_nanos(&mut self) -> Option<u64> {
        Some(1_800_000_000_000_000_000)
    }
    fn http_call(&mut self, _: weir_wasm_host::HttpCall) -> Option<u32> {
        self.calls += 1;
        Some(self.calls)
    }
    fn set_effective_context(&mut self, _: u32) -> bool {
        true
    }
}

/// Per-request work inside a module for the twins' request: (host calls, wasm
/// instructions), over 10,000 requests after 1,000 warm-up ones.
pub fn request_work(wasm: &[u8], configuration: &str) -> Result<(f64, f64)> {
    request_work_by_hook(wasm, configuration).map(|(calls, instructions, _)| (calls, instructions))
}

/// Host calls and wasm instructions per request, and the wasm instructions per
/// request of each export entered.
pub type WorkByHook = (f64, f64, Vec<(&'static str, f64)>);

/// [`request_work`], and the wasm instructions per request of each export it entered.
pub fn request_work_by_hook(wasm: &[u8], configuration: &str) -> Result<WorkByHook> {
    type Hooks = Vec<(&'static str, u64)>;
    fn call(
        m: &mut weir_wasm_host::Instance<TwinHost>,
        hooks: &mut Hooks,
        name: &'static str,
        args: &[i32],
    ) -> Result<()> {
        if m.exports(name) {
            let before = m.instructions();
            m.call(name, args)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let spent = m.instructions() - before;
            match hooks.iter_mut().find(|(n, _)| *n == name) {
                Some((_, total)) => *total += spent,
                None => hooks.push((name, spent)),
            }
        }
        Ok(())
    }
    fn one(m: &mut weir_wasm_host::Instance<TwinHost>, hooks: &mut Hooks, id: i32) -> Result<()> {
        call(m, hooks, "proxy_on_context_create", &[id, 1])?;
        let before = m.proxy().calls;
        call(m, hooks, "proxy_on_request_headers", &[id, 8, 1])?;
        let token = m.proxy().calls;
        if token != before {
            call(
                m,
                hooks,
                "proxy_on_http_call_response",
                &[1, token as i32, 3, 0, 0],
            )?;
        }
        call(m, hooks, "proxy_on_response_headers", &[id, 3, 1])?;
        call(m, hooks, "proxy_on_log", &[id])?;
        call(m, hooks, "proxy_on_delete", &[id])
    }
    let host = TwinHost {
        configuration: configuration.as_bytes().to_vec(),
        shared: Default::default(),
        calls: 0,
    };
    let run = move || -> Result<WorkByHook> {
        let mut m =
            weir_wasm_host::Instance::new(wasm, host).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut hooks = Hooks::new();
        call(&mut m, &mut hooks, "_initialize", &[])?;
        call(&mut m, &mut hooks, "proxy_on_context_create", &[1, 0])?;
        call(&mut m, &mut hooks, "proxy_on_vm_start", &[1, 0])?;
        call(
            &mut m,
            &mut hooks,
            "proxy_on_configure",
            &[1, configuration.len() as i32],
        )?;
        for id in 0..1_000 {
            one(&mut m, &mut hooks, 2 + id)?;
        }
        let (calls, instructions) = (m.host_calls(), m.instructions());
        hooks.clear();
        for id in 0..10_000 {
            one(&mut m, &mut hooks, 1_002 + id)?;
        }
        Ok((
            (m.host_calls() - calls) as f64 / 10_000.0,
            (m.instructions() - instructions) as f64 / 10_000.0,
            hooks
                .into_iter()
                .map(|(name, total)| (name, total as f64 / 10_000.0))
                .collect(),
        ))
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn_scoped(scope, run)
            .context("cannot start the interpreter thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the request-work run panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_assemble_and_each_group_has_one() {
        let floors = floors();
        for group in ["access-control", "rate-limit", "ext-authz"] {
            let (_, wat) = floors.iter().find(|(g, _)| *g == group).unwrap();
            wat::parse_str(wat).unwrap_or_else(|e| panic!("{group}: {e}"));
        }
    }

    #[test]
    fn the_authorization_service_allows_only_the_good_token() {
        let addr = authz_service().unwrap();
        let ask = |auth: &str| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "GET /check/x HTTP/1.1\r\nhost: a\r\nauthorization: {auth}\r\n\r\n"
            )
            .unwrap();
            let mut pending = Vec::new();
            envoy::read_response(&mut s, &mut pending).unwrap()
        };
        let good = ask("Bearer good");
        assert_eq!(good.status, 200);
        assert_eq!(good.header_str("x-user").as_deref(), Some("alice"));
        assert_eq!(ask("Bearer bad").status, 403);
    }

    /// `WEIR_TWIN_MODULES="group=a.wasm;…" cargo test -p weir-build --lib twin_instructions
    /// -- --ignored --nocapture`: Envoy's instructions per request (callgrind) for other
    /// builds of a group's weir filter, with that group's configuration and request (to
    /// count a filter before and after a change in one session).
    #[test]
    #[ignore]
    fn twin_instructions() {
        let list = std::env::var("WEIR_TWIN_MODULES").expect("WEIR_TWIN_MODULES");
        let authz = authz_service().unwrap();
        let envoy_bin = super::super::envoy_binary().unwrap();
        for item in list.split(';').filter(|s| !s.is_empty()) {
            let (group, module) = item.split_once('=').expect("group=module");
            let config = match group {
                "access-control" => ACCESS_CONTROL,
                "rate-limit" => RATE_LIMIT,
                "ext-authz" => EXT_AUTHZ,
                other => panic!("no group {other}"),
            };
            let t = Twin {
                name: module.to_owned(),
                module: None,
                group: "x",
                role: Role::Weir,
                filters: vec![WasmFilter {
                    name: group.to_owned(),
                    root_id: group.to_owned(),
                    code: Code::Local(PathBuf::from(module)),
                    configuration: Some(config.to_owned()),
                    failure_policy: None,
                }],
                native: vec![],
                authz: group == "ext-authz",
            };
            let dir = tempfile::tempdir().unwrap();
            let per = super::super::count_instructions_of(
                &bootstrap(&t, &authz).unwrap(),
                &request(),
                &envoy_bin,
                dir.path(),
            )
            .unwrap();
            println!("{group} {module}: {per:.0} Envoy instructions per request");
        }
    }

    /// `WEIR_TWIN_WORK="a.wasm=CONFIG-FILE;b.wasm=CONFIG-FILE" cargo test -p weir-build --lib
    /// twin_work -- --ignored --nocapture`: the per-request work of any module on the
    /// twins' request (to compare a module before and after a change).
    #[test]
    #[ignore]
    fn twin_work() {
        let list = std::env::var("WEIR_TWIN_WORK").expect("WEIR_TWIN_WORK");
        for item in list.split(';').filter(|s| !s.is_empty()) {
            let (module, config) = item.split_once('=').expect("module=config-file");
            let wasm = std::fs::read(module).unwrap();
            let config = std::fs::read_to_string(config).unwrap();
            let (calls, instructions, hooks) = request_work_by_hook(&wasm, &config).unwrap();
            println!(
                "{module}: {calls:.1} host calls, {instructions:.0} wasm instructions per request"
            );
            for (hook, instructions) in hooks {
                println!("  {hook:<32} {instructions:>8.0}");
            }
        }
    }
}
