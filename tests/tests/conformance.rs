//! Differential conformance: one corpus of scripted exchanges (the table in
//! [`corpus`]) runs through three runners — the native harness (`weir::testing`),
//! the same harness driving the compiled module (`weir-wasm-host`), and a real
//! Envoy 1.40 with real upstream and callout servers — and all three must agree on
//! what the client gets (status, headers, body, trailers), what the upstream gets
//! (headers, body, trailers), the filter's metrics and its log lines. A divergence
//! fails with the case's name, the two runners and the lines only one of them has.
//!
//! The filter is `tests/fixtures/conformance`, whose behaviour each request picks
//! with `x-op`. What must differ between a harness and a proxy on the wire is
//! normalized, and only that: see [`ENVOY_ONLY_REQUEST`], [`ENVOY_ONLY_RESPONSE`]
//! and [`HARNESS_ONLY`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conformance::Conformance;
use weir::log::Level;
use weir::testing::{Exchange, TestFilter, TestRequest, TestResponse};
use xtask::build::{self, Options};
use xtask::envoy::{Backend, Code, Envoy, WasmFilter};
use xtask::project::{self, Filter};

/// The fixture's configuration: ticks every 50 ms.
const CONFIG: &str = r#"{"tick_ms": 50}"#;
/// The filter's metrics, compared after the whole corpus ran.
const METRICS: [&str; 4] = [
    "conformance_requests",
    "conformance_replies",
    "conformance_callout_failures",
    "conformance_ticked",
];

/// Request headers Envoy adds on the way to the upstream, which no harness can
/// know (a fresh id, its own timeout, the scheme it was reached by): dropped from
/// what the upstream saw in Envoy, along with [`FRAMING`].
const ENVOY_ONLY_REQUEST: [&str; 5] = [
    "x-forwarded-proto",
    "x-request-id",
    "x-envoy-expected-rq-timeout-ms",
    FRAMING[0],
    FRAMING[1],
];
/// Response headers Envoy adds for the client (the time, its name, the upstream's
/// latency; `connection: close` answers the test client's own): dropped from what
/// the client got in Envoy, along with [`FRAMING`].
const ENVOY_ONLY_RESPONSE: [&str; 6] = [
    "date",
    "server",
    "x-envoy-upstream-service-time",
    "connection",
    FRAMING[0],
    FRAMING[1],
];
/// HTTP/1.1 framing, which each hop writes for the body it sends: dropped on every
/// side. The body bytes themselves are compared, so a length that does not match
/// the body shows as a different (cut) body.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];
/// What the harness shows that HTTP/1.1 does not carry (the request's `:scheme`),
/// and [`FRAMING`].
const HARNESS_ONLY: [&str; 3] = [":scheme", FRAMING[0], FRAMING[1]];

/// A header or trailer: name and raw bytes.
type Pair = (String, Vec<u8>);

/// What the upstream answers a case with.
#[derive(Clone, Debug)]
struct Upstream {
    status: u16,
    headers: Vec<Pair>,
    chunks: Vec<Vec<u8>>,
    trailers: Vec<Pair>,
    /// Framed with `content-length` (the header is then part of `headers`, as the
    /// harness's upstream response has it) instead of chunked.
    sized: bool,
}

/// One scripted exchange.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    /// After `x-case: <name>`; `x-op` among them picks the fixture's behaviour.
    headers: Vec<Pair>,
    chunks: Vec<Vec<u8>>,
    trailers: Vec<Pair>,
    upstream: Upstream,
    /// Let the tick hook run first (the harness calls it; Envoy is given time).
    tick: bool,
}

fn pair(name: &str, value: impl AsRef<[u8]>) -> Pair {
    (name.to_owned(), value.as_ref().to_vec())
}

fn ok() -> Upstream {
    Upstream {
        status: 200,
        headers: vec![pair("content-type", "text/plain")],
        chunks: vec![b"upstream body\n".to_vec()],
        trailers: Vec::new(),
        sized: false,
    }
}

fn case(name: &'static str, ops: &str) -> Case {
    Case {
        name,
        method: "GET",
        path: "/conformance",
        headers: vec![pair("x-op", ops)],
        chunks: Vec::new(),
        trailers: Vec::new(),
        upstream: ok(),
        tick: false,
    }
}

impl Case {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(pair(name, value));
        self
    }
    fn post(mut self, chunks: &[&[u8]]) -> Self {
        self.method = "POST";
        self.chunks = chunks.iter().map(|c| c.to_vec()).collect();
        self
    }
    fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push(pair(name, value));
        self
    }
    fn upstream(mut self, f: impl FnOnce(&mut Upstream)) -> Self {
        f(&mut self.upstream);
        self
    }
    /// The upstream answers `body` with a `content-length`.
    fn sized_response(mut self, body: &str) -> Self {
        let u = &mut self.upstream;
        u.chunks = vec![body.as_bytes().to_vec()];
        u.headers
            .push(pair("content-length", body.len().to_string()));
        u.sized = true;
        self
    }
    /// The request body goes with a `content-length`, in one piece.
    fn sized_request(mut self, body: &str) -> Self {
        self.method = "POST";
        self.chunks = vec![body.as_bytes().to_vec()];
        self.headers
            .push(pair("content-length", body.len().to_string()));
        self
    }
    fn after_tick(mut self) -> Self {
        self.tick = true;
        self
    }
}

/// The corpus. Cases run in this order in each runner (shared data and metrics
/// carry from one to the next, as in one Envoy).
fn corpus() -> Vec<Case> {
    let long = "v".repeat(8 * 1024);
    vec![
        case("plain", ""),
        case("echo-bytes", "echo")
            .header("x-h-bin", b"\xff\xfe\x80 caf\xc3\xa9")
            .header("x-h-tab", "a\tb")
            .header("x-h-empty", ""),
        case("echo-long", "echo").header("x-h-long", &long),
        case("echo-duplicates", "echo")
            .header("x-h-dup", "first")
            .header("x-h-dup", "second")
            .header("x-h-dup", "third"),
        case("echo-mixed-case", "echo")
            .header("X-H-Mixed", "Value")
            .header("x-H-mixed", "again"),
        case("mutate", "mutate,echo")
            .header("x-remove-me", "gone")
            .header("x-h-dup", "1")
            .header("x-h-dup", "2")
            .upstream(|u| {
                u.headers.push(pair("x-upstream-remove", "gone"));
                u.headers.push(pair("x-upstream-keep", "kept"));
            }),
        case("crlf-injection", "crlf"),
        case("reply", "reply"),
        case("reply-with-echo", "reply,echo").header("x-h-one", "1"),
        case("reply-empty", "reply-empty"),
        case("reply-json", "reply-json"),
        case(
            "reply-through-response-hooks",
            "reply,upper-response,mutate",
        ),
        case("reply-grpc-without-status", "reply").header("content-type", "application/grpc"),
        case("reply-from-request-body", "reply-body").post(&[b"some ", b"body"]),
        case(
            "reply-from-buffered-request-body",
            "buffer-request,reply-body",
        )
        .post(&[b"held ", b"whole"]),
        case("reply-from-response-body", "reply-response-body"),
        case("reply-grpc", "reply-grpc").header("content-type", "application/grpc"),
        case("reply-from-response", "reply-response"),
        case("request-body-chunks", "upper-request").post(&[b"first, ", b"second, ", b"third"]),
        case("request-trailers", "upper-request,trailers")
            .post(&[b"part one ", b"part two"])
            .trailer("x-request-trailer", "sent"),
        case("response-body-chunks", "upper-response").upstream(|u| {
            u.chunks = vec![b"one ".to_vec(), b"two ".to_vec(), b"three\n".to_vec()];
        }),
        case("response-trailers", "trailers,upper-response").upstream(|u| {
            u.chunks = vec![b"data ".to_vec(), b"more\n".to_vec()];
            u.trailers = vec![pair("x-upstream-trailer", "up")];
        }),
        case("response-buffered", "buffer-response").upstream(|u| {
            u.chunks = vec![b"held ".to_vec(), b"whole\n".to_vec()];
        }),
        case("response-buffered-trailers", "buffer-response,trailers").upstream(|u| {
            u.chunks = vec![b"held ".to_vec(), b"then trailers\n".to_vec()];
            u.trailers = vec![pair("x-upstream-trailer", "late")];
        }),
        case("response-sized-same-length", "upper-response").sized_response("sized body\n"),
        case("response-sized-grown", "buffer-response").sized_response("sized body\n"),
        case("request-sized", "upper-request").sized_request("a sized request body"),
        case("callout-then-body", "callout,upper-request")
            .header("x-callout-path", "/answer")
            .post(&[b"held while ", b"the callout runs"]),
        case("reply-grpc-through-response-hooks", "reply-grpc,mutate")
            .header("content-type", "application/grpc"),
        case("trace-one-chunk", "trace").post(&[b"one piece"]),
        case("trace-trailers-without-body", "trace,trailers")
            .post(&[])
            .trailer("x-request-trailer", "alone"),
        case("trace-empty-chunked-body", "trace").post(&[b""]),
        case("trace-sized-body", "trace").sized_request("twelve bytes"),
        case("trace-sized-response", "trace").sized_response("sized\n"),
        case("callout-from-response", "callout-response,mutate"),
        case("upstream-status", "echo").upstream(|u| {
            u.status = 503;
            u.chunks = vec![b"unavailable\n".to_vec()];
        }),
        case("upstream-no-body", "").upstream(|u| u.chunks.clear()),
        case("callout-answered", "callout").header("x-callout-path", "/answer"),
        case("callout-denied", "callout").header("x-callout-path", "/deny"),
        case("callout-timeout", "callout").header("x-callout-path", "/slow"),
        case("shared-first", "shared"),
        case("shared-second", "shared"),
        case("ticked", "ticked").after_tick(),
        case("log", "log"),
    ]
}

/// What the callout server answers each path with: `None` answers after the
/// callout's 300 ms timeout.
fn callout_answer(path: &str) -> Option<(u16, &'static str)> {
    match path {
        "/answer" => Some((200, "granted")),
        "/deny" => Some((403, "nope")),
        _ => None,
    }
}

/// One runner's view of one case, as comparable lines.
#[derive(Clone, Debug, Default)]
struct Seen {
    lines: Vec<String>,
}

fn esc(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

impl Seen {
    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    /// Headers sorted by name (order kept among one name's copies): HTTP/1.1 codecs
    /// and header maps order different names differently, and nothing here depends on it.
    fn headers(&mut self, what: &str, pairs: &[Pair], drop: &[&str]) {
        let mut pairs: Vec<&Pair> = pairs
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in pairs {
            self.push(format!("{what} {k}: {}", esc(v)));
        }
    }

    fn from_exchange(x: &Exchange) -> Seen {
        let pairs = |v: Vec<(String, weir::Value)>| -> Vec<Pair> {
            v.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
        };
        let mut s = Seen::default();
        s.push(format!("client status {}", x.status()));
        let headers = pairs(x.response_headers());
        s.headers(
            "client header",
            &headers,
            &[":status", FRAMING[0], FRAMING[1]],
        );
        s.push(format!("client body {}", esc(x.response_body())));
        s.headers("client trailer", &pairs(x.response_trailers()), &[]);
        if x.reset() {
            s.push("client reset".into());
        }
        if x.forwarded() {
            s.headers(
                "upstream header",
                &pairs(x.upstream_headers()),
                &HARNESS_ONLY,
            );
            s.push(format!("upstream body {}", esc(x.upstream_body())));
            s.headers("upstream trailer", &pairs(x.upstream_trailers()), &[]);
            if x.upstream_reset() {
                s.push("upstream reset".into());
            }
        } else {
            s.push("upstream none".into());
        }
        s
    }
}

/// A runner's results: each case's view, then the metrics and log lines.
struct Run {
    runner: &'static str,
    cases: Vec<Seen>,
    metrics: Vec<String>,
    logs: Vec<String>,
}

/// HTTP/1.1's framing as Envoy's codec delivers it: a body that ends without
/// trailers ends with an empty end-of-stream call after its last bytes (seen for
/// chunked and `content-length` bodies alike, even read in one piece). The harness
/// delivers the last chunk with end-of-stream (as an HTTP/2 DATA frame with
/// END_STREAM arrives), and takes an empty last chunk to mean HTTP/1.1's: the corpus
/// speaks HTTP/1.1 to Envoy, so it gives the harness that chunk.
fn http1_body(chunks: &[Vec<u8>], trailers: &[Pair]) -> Vec<Vec<u8>> {
    let mut chunks = chunks.to_vec();
    if trailers.is_empty() && chunks.last().is_some_and(|c| !c.is_empty()) {
        chunks.push(Vec::new());
    }
    chunks
}

fn test_request(c: &Case) -> TestRequest {
    let mut r = TestRequest::new(c.method, c.path).header("x-case", c.name);
    for (k, v) in &c.headers {
        r = r.header(k, v);
    }
    for chunk in http1_body(&c.chunks, &c.trailers) {
        r = r.chunk(chunk);
    }
    for (k, v) in &c.trailers {
        r = r.trailer(k, v);
    }
    let u = &c.upstream;
    let mut response = TestResponse::new(u.status);
    for (k, v) in &u.headers {
        response = response.header(k, v);
    }
    for chunk in http1_body(&u.chunks, &u.trailers) {
        response = response.chunk(chunk);
    }
    for (k, v) in &u.trailers {
        response = response.trailer(k, v);
    }
    r.respond_with(response)
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warning",
        Level::Error => "error",
        Level::Critical => "critical",
    }
}

/// The corpus through `weir::testing`: natively, or through `module`.
fn run_harness(module: Option<PathBuf>) -> Run {
    let mut filter = match &module {
        None => TestFilter::<Conformance>::configure(CONFIG),
        Some(path) => TestFilter::<Conformance>::configure_module(path, CONFIG),
    }
    .unwrap_or_else(|e| panic!("the fixture refused its configuration: {e}"));
    // Envoy runs at `--log-level info`.
    filter.set_log_level(Level::Info);
    filter.answer_callouts(|call| {
        let (status, body) = callout_answer(call.path())?;
        // What the callout service sends.
        Some(
            TestResponse::new(status)
                .header("content-length", body.len().to_string())
                .header("connection", "close")
                .body(body),
        )
    });
    let mut cases = Vec::new();
    let mut logs = Vec::new();
    for c in corpus() {
        if c.tick {
            for (l, m) in filter.tick() {
                logs.push(format!("[{}] {m}", level_name(l)));
            }
        }
        let x = filter.send(test_request(&c));
        for (l, m) in x.logs() {
            logs.push(format!("[{}] {m}", level_name(l)));
        }
        cases.push(Seen::from_exchange(&x));
    }
    let metrics = METRICS
        .iter()
        .map(|m| format!("{m} = {:?}", filter.metric(m).unwrap_or(0)))
        .collect();
    Run {
        runner: if module.is_some() {
            "wasm host"
        } else {
            "native"
        },
        cases,
        metrics,
        logs,
    }
}

/// What the upstream server received for each case (by `x-case`).
type Received = Arc<Mutex<HashMap<String, Seen>>>;

/// Splits a raw HTTP/1.1 head into its first line and its header pairs (names lowercased).
fn parse_head(head: &[u8]) -> (String, Vec<Pair>) {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty());
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let pairs = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
            Some((name, l[colon + 1..].trim_ascii().to_vec()))
        })
        .collect();
    (first, pairs)
}

/// Reads a head (up to the blank line), then a body framed by `content-length` or
/// chunked (with its trailers); `None` body framing reads to the close.
fn read_message(r: &mut impl BufRead) -> std::io::Result<Message> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if r.read_until(b'\n', &mut head)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the end of the head",
            ));
        }
    }
    let (first, headers) = parse_head(&head);
    let field = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
    };
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    let mut reset = false;
    if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line)? == 0 {
                // Cut off: Envoy reset the stream after sending part of it.
                reset = true;
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let size = text.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("chunk size {text:?}"),
                )
            })?;
            if size == 0 {
                let mut tail = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l)? == 0 || l == b"\r\n" {
                        break;
                    }
                    tail.extend_from_slice(&l);
                }
                trailers = parse_head(&[b"trailers\r\n", &tail[..]].concat()).1;
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = field("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if first.starts_with("HTTP/") {
        r.read_to_end(&mut body)?;
    }
    Ok(Message {
        first,
        headers,
        body,
        trailers,
        reset,
    })
}

/// An HTTP/1.1 message read off the wire.
struct Message {
    first: String,
    headers: Vec<Pair>,
    body: Vec<u8>,
    trailers: Vec<Pair>,
    /// The peer closed in the middle of a chunked body.
    reset: bool,
}

/// Writes `chunks` chunked, then `trailers`.
fn write_chunked(w: &mut impl Write, chunks: &[Vec<u8>], trailers: &[Pair]) -> std::io::Result<()> {
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        w.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
        w.write_all(c)?;
        w.write_all(b"\r\n")?;
        w.flush()?;
        // Separate chunks reach Envoy separately more often than not; nothing compared depends on it.
        std::thread::sleep(Duration::from_millis(5));
    }
    w.write_all(b"0\r\n")?;
    for (k, v) in trailers {
        w.write_all(format!("{k}: ").as_bytes())?;
        w.write_all(v)?;
        w.write_all(b"\r\n")?;
    }
    w.write_all(b"\r\n")?;
    w.flush()
}

/// The upstream: answers each request as its case says, and records what it got.
fn upstream(cases: Vec<Case>, received: Received) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().expect("its address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (cases, received) = (cases.clone(), received.clone());
            std::thread::spawn(move || {
                let _ = serve_upstream(stream, &cases, &received);
            });
        }
    });
    addr
}

fn serve_upstream(stream: TcpStream, cases: &[Case], received: &Received) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let Message {
        first,
        mut headers,
        body,
        trailers,
        reset,
    } = read_message(&mut r)?;
    let mut parts = first.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    for (k, _) in headers.iter_mut() {
        if k == "host" {
            *k = ":authority".into();
        }
    }
    headers.push(pair(":method", method));
    headers.push(pair(":path", path));
    let name = headers
        .iter()
        .find(|(k, _)| k == "x-case")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let mut seen = Seen::default();
    seen.headers("upstream header", &headers, &ENVOY_ONLY_REQUEST);
    seen.push(format!("upstream body {}", esc(&body)));
    seen.headers("upstream trailer", &trailers, &[]);
    if reset {
        seen.push("upstream reset".into());
        received.lock().unwrap().insert(name.clone(), seen);
        return Ok(());
    }
    received.lock().unwrap().insert(name.clone(), seen);

    let Some(c) = cases.iter().find(|c| c.name == name) else {
        return w.write_all(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    };
    let u = &c.upstream;
    let mut out = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", u.status).into_bytes();
    for (k, v) in &u.headers {
        out.extend_from_slice(format!("{k}: ").as_bytes());
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if u.sized {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&u.chunks.concat());
        return w.write_all(&out);
    }
    if u.chunks.is_empty() && u.trailers.is_empty() {
        out.extend_from_slice(b"content-length: 0\r\n\r\n");
        return w.write_all(&out);
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    w.write_all(&out)?;
    write_chunked(&mut w, &u.chunks, &u.trailers)
}

/// The callout service: [`callout_answer`] for each path, or silence past the timeout.
fn callout_service() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the callout service");
    let addr = listener.local_addr().expect("its address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut w = stream.try_clone()?;
                let mut r = BufReader::new(stream);
                let first = read_message(&mut r)?.first;
                let path = first.split(' ').nth(1).unwrap_or("").to_owned();
                let Some((status, body)) = callout_answer(&path) else {
                    std::thread::sleep(Duration::from_secs(2));
                    return Ok(());
                };
                w.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
            });
        }
    });
    addr
}

/// Sends one case to Envoy and reads what the client gets.
fn send_to_envoy(port: u16, c: &Case) -> std::io::Result<Seen> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\nx-case: {}\r\n",
        c.method, c.path, c.name
    )
    .into_bytes();
    for (k, v) in &c.headers {
        head.extend_from_slice(format!("{k}: ").as_bytes());
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    let sized = c.headers.iter().any(|(k, _)| k == "content-length");
    let body = !sized && (!c.chunks.is_empty() || !c.trailers.is_empty());
    if body {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if sized {
        // Head and body in one write, so Envoy reads them at once.
        head.extend_from_slice(&c.chunks.concat());
    }
    w.write_all(&head)?;
    if body {
        // Let Envoy's router send the headers upstream first, as it does when a body
        // is slower than its headers: a reply from the body hook then finds the
        // upstream request under way, every time.
        std::thread::sleep(Duration::from_millis(100));
        write_chunked(&mut w, &c.chunks, &c.trailers)?;
    }

    let mut r = BufReader::new(stream);
    let Message {
        first,
        headers,
        body,
        trailers,
        reset,
    } = read_message(&mut r)?;
    let status = first.split(' ').nth(1).unwrap_or("?").to_owned();
    let mut s = Seen::default();
    s.push(format!("client status {status}"));
    s.headers("client header", &headers, &ENVOY_ONLY_RESPONSE);
    s.push(format!("client body {}", esc(&body)));
    s.headers("client trailer", &trailers, &[]);
    if reset {
        s.push("client reset".into());
    }
    Ok(s)
}

/// The module of the fixture, built for Envoy and the wasm host.
fn fixture_module() -> PathBuf {
    let fixture = Filter {
        name: "conformance".into(),
        dir: project::root().join("tests/fixtures/conformance"),
    };
    match build::build(&fixture, &Options::default()) {
        Ok(built) => built.path,
        Err(e) => panic!("cannot build the conformance fixture: {e:#}"),
    }
}

/// The lines the filter logged in Envoy's log since byte `from`, as `[level] message`.
fn envoy_logs(envoy: &Envoy, from: usize) -> Vec<String> {
    let text = envoy.log_text();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            // [time][pid][info][wasm] [source/...:NNN] wasm log conformance conformance: <message>
            let level = l.split("][").nth(2)?;
            let (_, rest) = l.split_once("] wasm log ")?;
            let (_, message) = rest.split_once(": ")?;
            Some(format!("[{level}] {message}"))
        })
        .collect()
}

/// `upstream_expected[i]`: the native run says case `i` reached the upstream, so a
/// record the upstream writes late (a reset reaches it after the client's answer) is
/// waited for, up to a second; otherwise for 50 ms.
fn run_envoy(module: PathBuf, upstream_expected: &[bool]) -> Run {
    let cases = corpus();
    let received: Received = Arc::default();
    let mut b = weir_tests::bootstrap(vec![WasmFilter {
        name: "conformance".into(),
        root_id: "conformance".into(),
        code: Code::Local(module),
        configuration: Some(CONFIG.into()),
        failure_policy: None,
    }]);
    b.backend = Backend::Upstream(upstream(cases.clone(), received.clone()));
    b.clusters.push(("callout".into(), callout_service()));
    b.http1_trailers = true;
    let envoy = Envoy::start(&b).expect("envoy starts with the conformance fixture");
    std::thread::sleep(Duration::from_millis(100));
    let log_start = envoy.log_text().len();
    let mut seen = Vec::new();
    for (c, expected) in cases.iter().zip(upstream_expected) {
        if c.tick {
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut s = send_to_envoy(envoy.port, c)
            .unwrap_or_else(|e| panic!("case `{}`: no answer from Envoy: {e}", c.name));
        // An upstream request that was reset is recorded as the reset reaches the
        // upstream, which may be just after the client's answer: wait a moment for it.
        let wait = if *expected { 1000 } else { 50 };
        let deadline = Instant::now() + Duration::from_millis(wait);
        let up = loop {
            let up = received.lock().unwrap().remove(c.name);
            if up.is_some() || Instant::now() > deadline {
                break up;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match up {
            Some(up) => s.lines.extend(up.lines),
            None => s.push("upstream none".into()),
        }
        seen.push(s);
    }
    std::thread::sleep(Duration::from_millis(200)); // Envoy writes its log every 50 ms
    let metrics = METRICS
        .iter()
        .map(|m| {
            let v = envoy
                .stat(&format!("wasmcustom.{m}"))
                .expect("admin stats")
                .unwrap_or(0);
            format!("{m} = {v:?}")
        })
        .collect();
    let failures = weir_tests::vm_failures(&envoy);
    assert!(failures.is_empty(), "the VM failed in Envoy: {failures:#?}");
    Run {
        runner: "envoy",
        cases: seen,
        metrics,
        logs: envoy_logs(&envoy, log_start),
    }
}

/// The lines only `a` has and the lines only `b` has (as multisets).
fn diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let mut only_b: Vec<String> = b.to_vec();
    let mut only_a = Vec::new();
    for line in a {
        match only_b.iter().position(|l| l == line) {
            Some(i) => {
                only_b.remove(i);
            }
            None => only_a.push(line.clone()),
        }
    }
    (only_a, only_b)
}

fn shorten(line: &str) -> String {
    if line.len() > 300 {
        format!(
            "{}… ({} bytes)",
            &line[..line.floor_char_boundary(300)],
            line.len()
        )
    } else {
        line.to_owned()
    }
}

/// Every divergence between two runs, one paragraph each.
fn divergences(a: &Run, b: &Run, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut report = |what: String, x: &[String], y: &[String]| {
        let (only_a, only_b) = diff(x, y);
        if only_a.is_empty() && only_b.is_empty() {
            return;
        }
        let mut text = format!("{what}: {} and {} disagree", a.runner, b.runner);
        for l in only_a {
            text.push_str(&format!("\n  only {:>9}: {}", a.runner, shorten(&l)));
        }
        for l in only_b {
            text.push_str(&format!("\n  only {:>9}: {}", b.runner, shorten(&l)));
        }
        out.push(text);
    };
    for (i, name) in names.iter().enumerate() {
        report(
            format!("case `{name}`"),
            &a.cases[i].lines,
            &b.cases[i].lines,
        );
    }
    report("metrics".into(), &a.metrics, &b.metrics);
    report("log lines".into(), &a.logs, &b.logs);
    out
}

#[test]
fn native_harness_wasm_host_and_envoy_agree_on_the_corpus() {
    let started = Instant::now();
    let module = fixture_module();
    let built = started.elapsed();
    let wasm = module.clone();
    let module_run = std::thread::spawn(move || run_harness(Some(wasm)));
    let native = run_harness(None);
    let reached: Vec<bool> = native
        .cases
        .iter()
        .map(|c| !c.lines.iter().any(|l| l == "upstream none"))
        .collect();
    let envoy = run_envoy(module, &reached);
    let wasm = module_run.join().expect("the wasm host run");
    let names: Vec<&str> = corpus().iter().map(|c| c.name).collect();
    let mut found = divergences(&native, &wasm, &names);
    found.extend(divergences(&native, &envoy, &names));
    eprintln!(
        "conformance: {} cases through 3 runners in {:?} (module built in {built:?})",
        names.len(),
        started.elapsed()
    );
    assert!(
        found.is_empty(),
        "{} divergences:\n\n{}",
        found.len(),
        found.join("\n\n")
    );
}
