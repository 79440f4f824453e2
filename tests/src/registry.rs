//! A real registry for the push/pull tests: CNCF distribution on a free loopback port (with or
//! without htpasswd), a fault-injecting proxy in front of it, the xtask binary, and the peers
//! nobody here wrote (oras-py, skopeo).

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Panics unless `tool` runs: the tests need the real thing, never a silent skip.
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{tool}` is not installed: run `cargo xtask setup`");
}

/// Where `tool` is on PATH, if it is.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Panics unless python3 can `import oras.client` (oras-py).
pub fn need_oras_py() {
    let ok = Command::new("python3")
        .args(["-I", "-c", "import oras.client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "oras-py is not installed (python3 -I -c 'import oras.client' fails): run `cargo xtask setup`"
    );
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// A running `docker-registry serve`, stopped (by its pid) when dropped.
pub struct Registry {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it stores blobs (`docker/registry/v2/...`).
    pub storage: PathBuf,
    log: PathBuf,
    config: PathBuf,
    tls: bool,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A registry anyone may push to.
    pub fn start() -> Self {
        Self::spawn(None, None)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt, basic auth over HTTP).
    pub fn start_with_login(user: &str, password: &str) -> Self {
        Self::spawn(Some((user, password)), None)
    }

    /// A registry serving HTTPS with `tls`'s certificate.
    pub fn start_tls(tls: &Tls) -> Self {
        Self::spawn(None, Some(tls))
    }

    /// A registry that wants bearer tokens from `tokens` (distribution's `auth: token`).
    pub fn start_with_tokens(tokens: &TokenServer) -> Self {
        Self::spawn_with(None, None, Some(tokens))
    }

    fn spawn(login: Option<(&str, &str)>, tls: Option<&Tls>) -> Self {
        Self::spawn_with(login, tls, None)
    }

    fn spawn_with(
        login: Option<(&str, &str)>,
        tls: Option<&Tls>,
        tokens: Option<&TokenServer>,
    ) -> Self {
        need("docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: weir-test\n",
            storage.display()
        );
        if let Some((user, password)) = login {
            need("htpasswd");
            let file = dir.path().join("htpasswd");
            // -i: the password comes on stdin, not in htpasswd's arguments.
            let mut h = Command::new("htpasswd")
                .args(["-iBc"])
                .arg(&file)
                .arg(user)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run htpasswd");
            h.stdin
                .take()
                .expect("stdin")
                .write_all(password.as_bytes())
                .expect("write password");
            let out = h.wait_with_output().expect("htpasswd");
            assert!(
                out.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: weir-test\n    path: {}\n",
                file.display()
            ));
        }
        if let Some(t) = tokens {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                t.port,
                t.cert.display()
            ));
        }
        if let Some(tls) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                tls.cert.display(),
                tls.key.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.path().join("registry.log");
        let child = run_registry(&config_path, &log);
        let mut r = Registry {
            child,
            port,
            storage,
            log,
            config: config_path,
            tls: tls.is_some(),
            _dir: dir,
        };
        r.wait_ready();
        r
    }

    /// Kills the registry process (SIGKILL, as a crash would) and waits for it; the port
    /// and the storage stay, for [`Registry::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again with the same configuration: same port, same storage, same
    /// upload secret; returns once it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.child = run_registry(&self.config, &self.log);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{}", self.log_text());
            }
            if self.tls {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
            } else if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/1.1") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not answer on port {} within 20 s:\n{}",
            self.port,
            self.log_text()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the registry logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Blob upload requests seen so far (POST/PATCH/PUT to `/blobs/uploads/`, from the access log).
    pub fn upload_requests(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| {
                ["\"POST /v2/", "\"PUT /v2/", "\"PATCH /v2/"]
                    .iter()
                    .any(|m| l.contains(m))
                    && l.contains("/blobs/uploads/")
            })
            .count()
    }

    /// The file holding blob `digest` (`sha256:...`) in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// `docker-registry serve CONFIG`, logging (appending) to `log`.
fn run_registry(config: &Path, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("start docker-registry")
}

/// One plain-HTTP/1.0 request to `127.0.0.1:port` (so no chunked answer): the status and body.
/// Asks for OCI and Docker manifests, as pull clients do.
pub fn http(port: u16, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the registry");
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json";
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    (status, raw[end..].to_vec())
}

/// What a registry holds under `repo:reference`, read over HTTP.
#[derive(Debug)]
pub struct Tagged {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// Its sha256 digest (`sha256:...`), computed here.
    pub digest: String,
    /// Every blob it names (config, then layers).
    pub blobs: Vec<String>,
    /// Those the registry answers 404 to (HEAD `/v2/REPO/blobs/DIGEST`).
    pub missing: Vec<String>,
}

/// `None` when the registry has no manifest for `repo:reference` (404); otherwise the manifest
/// and which of its blobs the registry lacks. Panics on any other answer.
pub fn tagged(port: u16, repo: &str, reference: &str) -> Option<Tagged> {
    let (status, manifest) = http(port, "GET", &format!("/v2/{repo}/manifests/{reference}"));
    if status == 404 {
        return None;
    }
    assert_eq!(
        status,
        200,
        "GET manifest {repo}:{reference}: {}",
        String::from_utf8_lossy(&manifest)
    );
    let json: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest is JSON");
    let blobs: Vec<String> = std::iter::once(&json["config"])
        .chain(json["layers"].as_array().into_iter().flatten())
        .filter_map(|d| d["digest"].as_str().map(str::to_owned))
        .collect();
    let missing = blobs
        .iter()
        .filter(|d| {
            let (status, _) = http(port, "HEAD", &format!("/v2/{repo}/blobs/{d}"));
            assert!(matches!(status, 200 | 404), "HEAD blob {d}: {status}");
            status == 404
        })
        .cloned()
        .collect();
    Some(Tagged {
        digest: format!("sha256:{}", xtask::project::sha256_hex(&manifest)),
        manifest,
        blobs,
        missing,
    })
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA and a server certificate it signed for 127.0.0.1 (made with openssl).
pub struct Tls {
    /// The CA certificate (PEM): what `--ca-file` takes.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

impl Tls {
    /// Makes a CA and a server certificate in `dir`.
    pub fn make(dir: &Path) -> Tls {
        need("openssl");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=weir test CA",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat());
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

const TOKEN_SERVICE: &str = "weir-test-registry";
const TOKEN_ISSUER: &str = "weir-test-issuer";

/// A token server for distribution's bearer auth: it checks a basic-auth login and hands out
/// ES256 JWTs (signed by `openssl dgst`, certificate in `x5c`) granting pull and push.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The signing certificate (the registry's `rootcertbundle`).
    pub cert: PathBuf,
    /// The `scope` of every token request, and whether it was granted.
    pub requests: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    /// Starts one that accepts `user`/`password`, with its key in `dir`.
    pub fn start(dir: &Path, user: &str, password: &str) -> Self {
        need("openssl");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .args([
                "-keyout",
                "token.key",
                "-out",
                "token.pem",
                "-days",
                "2",
                "-subj",
                "/CN=weir token signer",
            ])
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cert = dir.join("token.pem");
        let der_b64: String = std::fs::read_to_string(&cert)
            .expect("cert")
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st, key) = (requests.clone(), stop.clone(), dir.join("token.key"));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let user = user.to_owned();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 1 << 16 {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let scope = query_value(&target, "scope");
                let authorized = head.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization") && v.trim() == expected
                    })
                });
                if let Ok(mut log) = r.lock() {
                    log.push((scope.clone(), authorized));
                }
                let response = if authorized {
                    let token = sign_token(&key, &der_b64, &user, &scope);
                    let body = format!(
                        r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#
                    );
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                } else {
                    let body = r#"{"details":"wrong user name or password"}"#;
                    format!("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                let _ = conn.write_all(response.as_bytes());
                let _ = conn.shutdown(Shutdown::Both);
            }
        });
        TokenServer {
            port,
            cert,
            requests,
            stop,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn query_value(target: &str, key: &str) -> String {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
        })
        .map(|v| {
            v.replace("%3A", ":")
                .replace("%3a", ":")
                .replace("%2C", ",")
                .replace("%2c", ",")
                .replace("%2F", "/")
                .replace("%2f", "/")
                .replace('+', " ")
        })
        .unwrap_or_default()
}

/// An ES256 JWT for `scope` (`repository:NAME:ACTIONS`), as distribution's token auth wants it.
fn sign_token(key: &Path, cert_der_b64: &str, user: &str, scope: &str) -> String {
    use base64::Engine as _;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [cert_der_b64]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": user, "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("weir-{now}-{}", free_port()),
        "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
    });
    let input = format!(
        "{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let der = child.wait_with_output().expect("openssl dgst").stdout;
    format!("{input}.{}", url.encode(der_ecdsa_to_raw(&der)))
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` to the 64-byte `r || s` JWS wants.
fn der_ecdsa_to_raw(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut i = 2; // SEQUENCE tag and (short) length
    for _ in 0..2 {
        let len = der.get(i + 1).copied().unwrap_or(0) as usize;
        let int = der.get(i + 2..i + 2 + len).unwrap_or(&[]);
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

/// What the fault proxy does to the requests it sees.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer 503 to this many of the next upload requests (POST/PATCH/PUT to `/blobs/uploads/`).
    pub fail_uploads: usize,
    /// Drop the connection half-way through the body of this many of the next blob PUTs.
    pub drop_uploads: usize,
    /// Accept connections and never answer.
    pub stall: bool,
    /// Answer every upload with 403 DENIED (an account that may not push).
    pub deny_uploads: bool,
    /// Answer every upload with 404 NAME_UNKNOWN (a registry that does not create
    /// repositories on push).
    pub no_repository: bool,
    /// Answer a manifest PUT whose body contains this text with 400 MANIFEST_INVALID (a
    /// registry that refuses custom artifact media types).
    pub reject_manifest_containing: Option<String>,
    /// Forward blob PUT bodies 8 KiB at a time with this pause after each piece (a slow
    /// link), so a test can act while an upload is under way.
    pub slow_uploads: Option<Duration>,
    /// Forward this many of the next manifest PUTs to the registry, then drop the connection
    /// instead of passing its answer back: the tag is written, the client never hears so.
    pub drop_manifest_answers: usize,
    /// Answer every blob GET with `307 Temporary Redirect` to this URL, as registries on object
    /// storage do (S3 or Azure pre-signed URLs carry a signature in the query).
    pub redirect_blob_gets: Option<String>,
    /// A registry that lies about sizes: answer every blob GET with 200 and this many bytes
    /// (whatever the manifest declared), announced in a Content-Length unless `hide_length`.
    pub huge_blob_gets: Option<u64>,
    /// Send `huge_blob_gets` without a Content-Length (the body ends when the connection does),
    /// so only counting what arrives can stop it.
    pub hide_length: bool,
    /// Answer every manifest GET with 200 and a JSON manifest padded to this many bytes.
    pub huge_manifest_gets: Option<u64>,
    /// Answer every manifest GET with this status and body (say, one carrying terminal escapes).
    pub manifest_get_error: Option<(u16, String)>,
    /// Pass blob GET answers back one byte at a time with this pause after each (a slow drip
    /// that keeps every single read within any per-read timeout).
    pub drip_blob_gets: Option<Duration>,
    /// Answer every upload request (POST/PATCH/PUT to `/blobs/uploads/`) with this status and body.
    pub upload_error: Option<(u16, String)>,
    /// Blob GETs seen so far.
    pub blob_gets: usize,
    /// Manifest GETs seen so far.
    pub manifest_gets: usize,
    /// Bytes sent under `huge_blob_gets` and `huge_manifest_gets` so far.
    pub lied_bytes: u64,
    /// 503s answered so far.
    pub answered_503: usize,
    /// Connections dropped mid-blob so far.
    pub dropped: usize,
    /// Blob bytes forwarded under `slow_uploads` so far.
    pub slowed_bytes: usize,
    /// Manifest answers dropped so far.
    pub dropped_manifest_answers: usize,
}

/// A small HTTP proxy in front of a real registry that injects [`Faults`]; everything else
/// goes through untouched (one request per connection).
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    faults: Arc<Mutex<Faults>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, faults: Faults) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let faults = Arc::new(Mutex::new(faults));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (faults.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (f, s) = (f.clone(), s.clone());
                std::thread::spawn(move || serve(conn, upstream, &f, &s));
            }
        });
        FaultProxy { port, faults, stop }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The faults now (with the counts of what was injected).
    pub fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Replaces the faults to inject from now on (the counts carry over).
    pub fn set(&self, new: Faults) {
        if let Ok(mut f) = self.faults.lock() {
            *f = Faults {
                answered_503: f.answered_503,
                dropped: f.dropped,
                slowed_bytes: f.slowed_bytes,
                dropped_manifest_answers: f.dropped_manifest_answers,
                blob_gets: f.blob_gets,
                manifest_gets: f.manifest_gets,
                lied_bytes: f.lied_bytes,
                ..new
            };
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut client: TcpStream, upstream: u16, faults: &Mutex<Faults>, stop: &AtomicBool) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 16 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let upload = path.contains("/blobs/uploads/") && matches!(method, "POST" | "PUT" | "PATCH");
    if method == "PUT" && path.contains("/manifests/") {
        // Manifests are small: read the whole body so the fault can look at it.
        while buf.len() - head_end < length {
            match client.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let body_has = |needle: &str| String::from_utf8_lossy(&buf[head_end..]).contains(needle);
    let blob_get = method == "GET" && path.contains("/blobs/sha256:");
    let manifest_get = method == "GET" && path.contains("/manifests/");
    let action = {
        let Ok(mut f) = faults.lock() else { return };
        if blob_get {
            f.blob_gets += 1;
        }
        if manifest_get {
            f.manifest_gets += 1;
        }
        if f.stall {
            "stall"
        } else if blob_get && f.huge_blob_gets.is_some() {
            "huge blob"
        } else if manifest_get && f.huge_manifest_gets.is_some() {
            "huge manifest"
        } else if manifest_get && f.manifest_get_error.is_some() {
            "error"
        } else if upload && f.upload_error.is_some() {
            "upload error"
        } else if blob_get && f.drip_blob_gets.is_some() {
            "drip"
        } else if upload && f.deny_uploads {
            "403"
        } else if upload && f.no_repository {
            "404"
        } else if f
            .reject_manifest_containing
            .as_deref()
            .is_some_and(|n| method == "PUT" && path.contains("/manifests/") && body_has(n))
        {
            "400"
        } else if upload && f.fail_uploads > 0 {
            f.fail_uploads -= 1;
            f.answered_503 += 1;
            "503"
        } else if upload && method == "PUT" && length > 1 && f.drop_uploads > 0 {
            f.drop_uploads -= 1;
            f.dropped += 1;
            "drop"
        } else if upload && method == "PUT" && length > 1 && f.slow_uploads.is_some() {
            "slow"
        } else if method == "GET"
            && path.contains("/blobs/sha256:")
            && f.redirect_blob_gets.is_some()
        {
            "redirect"
        } else if method == "PUT" && path.contains("/manifests/") && f.drop_manifest_answers > 0 {
            f.drop_manifest_answers -= 1;
            f.dropped_manifest_answers += 1;
            "drop answer"
        } else {
            "forward"
        }
    };
    match action {
        "stall" => {
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "503" => {
            // Read the body first, so the client sees the answer rather than a reset.
            let mut have = buf.len() - head_end;
            while have < length {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => have += n,
                }
            }
            let _ = client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nfault proxy says no");
            let _ = client.shutdown(Shutdown::Both);
        }
        "403" | "404" | "400" => {
            let (status, body) = if action == "403" {
                (
                    "403 Forbidden",
                    r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
                )
            } else if action == "404" {
                (
                    "404 Not Found",
                    r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
                )
            } else {
                (
                    "400 Bad Request",
                    r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"unsupported config media type"}]}"#,
                )
            };
            let mut have = buf.len() - head_end;
            while have < length {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => have += n,
                }
            }
            let _ = client.write_all(format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes());
            let _ = client.shutdown(Shutdown::Both);
        }
        "drop" => {
            let mut have = buf.len() - head_end;
            while have < length / 2 {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => have += n,
                }
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        "redirect" => {
            let to = faults
                .lock()
                .ok()
                .and_then(|f| f.redirect_blob_gets.clone())
                .unwrap_or_default();
            let _ = client.write_all(format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
            let _ = client.shutdown(Shutdown::Both);
        }
        "slow" => forward_slowly(client, upstream, &buf, head_end, length, faults),
        "huge blob" | "huge manifest" => {
            let (size, hide, content_type, prefix): (u64, bool, &str, &[u8]) = {
                let Ok(f) = faults.lock() else { return };
                if action == "huge blob" {
                    (
                        f.huge_blob_gets.unwrap_or(0),
                        f.hide_length,
                        "application/octet-stream",
                        b"\0asm",
                    )
                } else {
                    (
                        f.huge_manifest_gets.unwrap_or(0),
                        f.hide_length,
                        "application/vnd.oci.image.manifest.v1+json",
                        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#,
                    )
                }
            };
            let length = if hide {
                String::new()
            } else {
                format!("Content-Length: {size}\r\n")
            };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{length}Connection: close\r\n\r\n");
            if client.write_all(head.as_bytes()).is_err() {
                return;
            }
            let mut piece = vec![b'a'; 64 << 10];
            piece[..prefix.len()].copy_from_slice(prefix);
            let mut sent = 0u64;
            while sent < size && !stop.load(Ordering::SeqCst) {
                let n = (size - sent).min(piece.len() as u64) as usize;
                if client.write_all(&piece[..n]).is_err() {
                    break;
                }
                sent += n as u64;
                if let Ok(mut f) = faults.lock() {
                    f.lied_bytes += n as u64;
                }
                piece[..prefix.len()].fill(b'a');
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        "error" | "upload error" => {
            let (code, body) = faults
                .lock()
                .ok()
                .and_then(|f| {
                    if action == "error" {
                        f.manifest_get_error.clone()
                    } else {
                        f.upload_error.clone()
                    }
                })
                .unwrap_or((500, String::new()));
            // Read the request body first, so the client sees the answer rather than a reset.
            let mut have = buf.len() - head_end;
            while have < length {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => have += n,
                }
            }
            let _ = client.write_all(format!("HTTP/1.1 {code} Fault\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes());
            let _ = client.shutdown(Shutdown::Both);
        }
        "drip" => {
            let pause = faults
                .lock()
                .ok()
                .and_then(|f| f.drip_blob_gets)
                .unwrap_or_default();
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            if up.write_all(&close_head(&buf[..head_end])).is_err() {
                return;
            }
            let mut answer = Vec::new();
            let _ = up.read_to_end(&mut answer);
            // The head at once, then the body a byte at a time.
            let body_at = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(answer.len(), |i| i + 4);
            if client.write_all(&answer[..body_at]).is_err() {
                return;
            }
            for b in &answer[body_at..] {
                if stop.load(Ordering::SeqCst) || client.write_all(std::slice::from_ref(b)).is_err()
                {
                    break;
                }
                std::thread::sleep(pause);
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        "drop answer" => {
            // The registry gets the whole request and answers; the client gets a closed socket.
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            if up.write_all(&close_head(&buf[..head_end])).is_ok()
                && up.write_all(&buf[head_end..]).is_ok()
            {
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        _ => forward(client, upstream, &buf, head_end),
    }
}

/// The request head with `Connection: close` in place of any Connection header.
fn close_head(head: &[u8]) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
}

/// [`forward`] for a blob PUT under `slow_uploads`: the body goes on 8 KiB at a time, counted
/// in `slowed_bytes`; if the registry goes away the client's connection is closed.
fn forward_slowly(
    mut client: TcpStream,
    upstream: u16,
    buf: &[u8],
    head_end: usize,
    length: usize,
    faults: &Mutex<Faults>,
) {
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    if up.write_all(&close_head(&buf[..head_end])).is_err() {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let mut body = buf[head_end..].to_vec();
    let mut sent = 0;
    let mut chunk = [0u8; 8192];
    while sent < length {
        if body.len() - sent < 8192 && body.len() < length {
            match client.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
            continue;
        }
        let piece = &body[sent..body.len().min(sent + 8192)];
        if up.write_all(piece).is_err() {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        sent += piece.len();
        let pause = faults.lock().map_or(None, |mut f| {
            f.slowed_bytes += piece.len();
            f.slow_uploads
        });
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    }
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(Shutdown::Both);
}

/// Sends the request on with `Connection: close`, then pipes both ways until the registry is done.
fn forward(mut client: TcpStream, upstream: u16, buf: &[u8], head_end: usize) {
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let new_head = format!("{}\r\n\r\n", lines.join("\r\n"));
    if up.write_all(new_head.as_bytes()).is_err() || up.write_all(&buf[head_end..]).is_err() {
        return;
    }
    let (Ok(mut client_r), Ok(mut up_w)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut up_w);
    });
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
}

/// What one run of the xtask binary printed.
pub struct Run {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertions and failure messages.
    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// The xtask binary, built (once per test process) so it matches the source; `WEIR_XTASK_BIN`
/// names another one (an older build, to measure what a fix changed).
pub fn xtask_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("WEIR_XTASK_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--package", "xtask", "--bin", "xtask"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the xtask binary");
        assert!(status.success(), "cargo build --package xtask failed");
        // target/debug/deps/registry-HASH -> target/debug/xtask
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        dir.join("xtask")
    })
}

/// Runs `xtask ARGS` with `stdin`, isolated from the machine's docker logins.
pub fn xtask(args: &[&str], stdin: Option<&str>) -> Run {
    xtask_env(args, stdin, &[])
}

/// [`xtask`] with extra environment variables.
pub fn xtask_env(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let empty = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(xtask_bin());
    cmd.args(args)
        .env("DOCKER_CONFIG", empty.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run xtask");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for xtask");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`xtask`] under GNU time (`/usr/bin/time`): the run and the xtask process's peak resident
/// memory in KiB.
pub fn xtask_peak_rss(args: &[&str]) -> (Run, u64) {
    need("/usr/bin/time");
    let empty = tempfile::tempdir().expect("temp dir");
    let report = empty.path().join("rss");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(xtask_bin())
        .args(args)
        .env("DOCKER_CONFIG", empty.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .expect("run xtask under /usr/bin/time");
    let text = std::fs::read_to_string(&report).expect("/usr/bin/time wrote its report");
    let kib = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS in /usr/bin/time's report: {text}"));
    let run = Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, kib)
}

/// A module Envoy's ABI check accepts, of about `size` bytes (the required exports and a data segment of
/// incompressible bytes seeded by `seed`), so every test has its own digest.
pub fn module(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = String::with_capacity(size * 3);
    for _ in 0..size.saturating_sub(200) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push_str(&format!("\\{:02x}", (x & 0xff) as u8));
    }
    let pages = size / 65536 + 1;
    let text = format!(
        r#"(module
  (memory (export "memory") {pages})
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "malloc") (param i32) (result i32) i32.const 0)
  (data (i32.const 0) "{data}"))"#
    );
    wat::parse_str(text).expect("the test module assembles")
}

/// Writes `module(size, seed)` to `dir/name.wasm`.
pub fn module_file(dir: &Path, name: &str, size: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let bytes = module(size, seed);
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, &bytes).expect("write module");
    (path, bytes)
}

/// Runs a python snippet with oras-py; `args` become `sys.argv[1:]`.
pub fn oras_py(script: &str, args: &[&str], cwd: &Path) -> Run {
    need_oras_py();
    let out = Command::new("python3")
        .arg("-I")
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run python3");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// oras-py pulls `target` from a plain-HTTP registry into `outdir`; returns the files it wrote.
pub fn oras_pull(host: &str, target: &str, outdir: &Path) -> Vec<PathBuf> {
    let script = "import sys, oras.client\nc = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)\nfor f in c.pull(target=sys.argv[2], outdir=sys.argv[3]):\n    print(f)\n";
    let run = oras_py(
        script,
        &[host, target, &outdir.display().to_string()],
        outdir,
    );
    assert!(run.status.success(), "oras-py pull failed:\n{}", run.all());
    run.stdout.lines().map(PathBuf::from).collect()
}

/// The seed's push, by oras-py: `--manifest-config runtime-config.json:application/vnd.module.wasm.config.v1+json FILE:application/vnd.module.wasm.content.layer.v1+wasm`.
pub fn oras_push_seed_layout(
    host: &str,
    target: &str,
    dir: &Path,
    wasm_name: &str,
    runtime_config: &str,
) {
    std::fs::write(dir.join("runtime-config.json"), runtime_config).expect("write runtime config");
    let script = "import sys, oras.client\nc = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)\nr = c.push(target=sys.argv[2], files=[sys.argv[3] + ':application/vnd.module.wasm.content.layer.v1+wasm'], manifest_config='runtime-config.json:application/vnd.module.wasm.config.v1+json')\nassert r.status_code in (200, 201), r.status_code\n";
    let run = oras_py(script, &[host, target, wasm_name], dir);
    assert!(run.status.success(), "oras-py push failed:\n{}", run.all());
}

/// `skopeo ARGS`, returning stdout; panics with skopeo's words if it fails.
pub fn skopeo(args: &[&str]) -> String {
    need("skopeo");
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The manifest a registry serves for `repo:tag`, read by skopeo.
pub fn registry_manifest(host: &str, reference: &str) -> serde_json::Value {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/{reference}"),
    ]);
    serde_json::from_str(&raw).expect("skopeo prints the manifest as JSON")
}
