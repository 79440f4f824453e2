//! Every filter under `filters/` in a real Envoy 1.40, under hostile traffic:
//! header values with bytes 0x80–0xFF and empty ones, a 60 KB value, 150
//! headers, the same header 60 times (including the one the filter reads),
//! 16 KB paths, bodies over the SDK's 1 MiB body limit (sized and chunked),
//! broken gRPC framing, and a client that hangs up mid-body.
//!
//! Each filter gets one Envoy (header limits raised to 96 KB and 200 headers,
//! an echo upstream behind it, `FAIL_RELOAD` so a VM failure shows in
//! `wasm.<filter>.vm_reload_*`) and every case runs on it. Each answer is
//! checked against what the filter is meant to answer for that request; then
//! a normal request must still be answered, Envoy's log must show no trap, the
//! VM must never have been reloaded, and the filter's own counters must match
//! the answers seen. A filter this file has no profile for runs with its
//! `config.example.json`, and every answer must then be below 500.

use std::time::{Duration, Instant};

use weir_tests::client::{self, Body, RawRequest};
use weir_tests::server::{answer, serve, serve_requests, Answer};
use weir_tests::{bootstrap, vm_failures, wasm_filter};
use xtask::envoy::{Backend, Bootstrap, Envoy, FailurePolicy, HeaderLimits, HttpResponse};

/// The listener's limits for these tests (Envoy's defaults: 60 KB, 100 headers).
const LIMITS: HeaderLimits = HeaderLimits {
    max_request_headers_kb: 96,
    max_headers_count: 200,
};
/// One header value's size.
const BIG_VALUE: usize = 60 * 1024;
/// Headers in the many-headers cases.
const MANY: usize = 150;
/// Copies of a header in the duplicate cases.
const DUPS: usize = 60;
/// Path length in the long-path cases.
const LONG_PATH: usize = 16 * 1024;
/// Over `HttpFilter::BODY_LIMIT`'s default (1 MiB), the largest limit any filter
/// has (ext-authz's is 8 KiB).
const BIG_BODY: usize = (1 << 20) + (512 << 10);
/// rate-limit's window here: long enough that no window ends during the test.
const RATE_WINDOW: u64 = 1_000_000_000;

// ---------------------------------------------------------------------------
// Hostile payloads.

/// 0x80..=0xFF: the bytes that took workers down with raw proxy-wasm.
fn high() -> Vec<u8> {
    (0x80..=0xFF).collect()
}

/// `len` bytes of every visible ASCII byte, space and 0x80–0xFF, starting and
/// ending with `v` (Envoy trims spaces at the ends of a value).
fn mixed(len: usize) -> Vec<u8> {
    let alphabet: Vec<u8> = (0x20..=0x7E).chain(0x80..=0xFF).collect();
    let mut v: Vec<u8> = (0..len).map(|i| alphabet[i % alphabet.len()]).collect();
    v[0] = b'v';
    v[len - 1] = b'v';
    v
}

/// `len` bytes of lowercase ASCII.
fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `prefix` followed by path segments up to `LONG_PATH` bytes.
fn long_path(prefix: &str) -> String {
    let mut path = prefix.to_owned();
    let mut i = 0;
    while path.len() < LONG_PATH {
        path.push_str(&format!("segment-{i:05}/"));
        i += 1;
    }
    path
}

/// A body over the body limit holding every byte value.
fn big_body() -> Vec<u8> {
    (0..BIG_BODY).map(|i| (i * 7 % 256) as u8).collect()
}

/// A gRPC frame whose 5-byte prefix claims 1000 bytes; 3 follow.
fn grpc_truncated() -> Vec<u8> {
    [&[0u8, 0, 0, 0x03, 0xE8][..], b"abc"].concat()
}

/// A prefix no gRPC peer sends (flag 0xFF, length 4 GiB - 1), then noise.
fn grpc_garbage() -> Vec<u8> {
    [
        &[0xFFu8, 0xFF, 0xFF, 0xFF, 0xFF][..],
        b"\x00\x80not a message\xFF",
    ]
    .concat()
}

/// Two bytes: not even a whole prefix.
fn grpc_short() -> Vec<u8> {
    vec![0x00, 0x00]
}

fn grpc(path: &str, body: Vec<u8>) -> RawRequest {
    RawRequest::post(path, Body::Sized(body))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
}

/// `MANY` distinct headers.
fn many(mut r: RawRequest) -> RawRequest {
    for i in 0..MANY {
        r = r.header(&format!("x-hostile-{i:03}"), format!("value {i}"));
    }
    r
}

/// `name: value` `n` times.
fn repeated(mut r: RawRequest, name: &str, value: &[u8], n: usize) -> RawRequest {
    for _ in 0..n {
        r = r.header(name, value);
    }
    r
}

// ---------------------------------------------------------------------------
// What a request should get.

/// What the filter decided, as its counters count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Denied,
}

#[derive(Clone, Debug)]
enum Expect {
    /// Through the filter to the upstream, unchanged: the echo's 200, having
    /// seen the whole body and every header as sent.
    Pass,
    /// A local reply with this status (and body, when given).
    Reply {
        status: u16,
        body: Option<Vec<u8>>,
        /// A `retry-after` of 1..=this many seconds.
        retry_after: Option<u64>,
    },
    /// A gRPC local reply: HTTP 200 with this `grpc-status`.
    Grpc(u32),
    /// The client hung up: no answer at all.
    NoAnswer,
    /// The client hung up after the filter had answered: that answer, or none
    /// (Envoy drops an answer not yet written when it sees the hang-up in the
    /// same read).
    AnswerOrNone(Box<Expect>),
    /// A filter without a profile: any answer below 500 (or none, when `or_none`).
    Answered { or_none: bool },
}

struct Check {
    case: String,
    request: RawRequest,
    expect: Expect,
    verdict: Option<Verdict>,
}

fn check(
    case: impl Into<String>,
    request: RawRequest,
    expect: Expect,
    verdict: Option<Verdict>,
) -> Check {
    Check {
        case: case.into(),
        request,
        expect,
        verdict,
    }
}

fn pass(case: impl Into<String>, request: RawRequest) -> Check {
    check(case, request, Expect::Pass, Some(Verdict::Allowed))
}

fn deny(case: impl Into<String>, request: RawRequest, status: u16, body: &[u8]) -> Check {
    let expect = Expect::Reply {
        status,
        body: Some(body.to_vec()),
        retry_after: None,
    };
    check(case, request, expect, Some(Verdict::Denied))
}

fn grpc_deny(case: impl Into<String>, request: RawRequest, status: u32) -> Check {
    check(case, request, Expect::Grpc(status), Some(Verdict::Denied))
}

/// The hostile shapes every filter gets, each a request the filter should let
/// through once `neutral` has added what it needs. `(case, request)`.
fn shapes() -> Vec<(&'static str, RawRequest)> {
    vec![
        (
            "header values with bytes 0x80-0xFF",
            RawRequest::get("/hostile")
                .header("x-hostile-high", high())
                .header("x-hostile-mixed", [&b"ok "[..], &high(), b" ok"].concat()),
        ),
        (
            "empty header values",
            RawRequest::get("/hostile")
                .header("x-hostile-empty-1", "")
                .header("x-hostile-empty-2", "")
                .header("accept", ""),
        ),
        (
            "a 60 KB header value (all byte classes)",
            RawRequest::get("/hostile").header("x-hostile-big", mixed(BIG_VALUE)),
        ),
        ("150 headers", many(RawRequest::get("/hostile"))),
        (
            "one header 60 times",
            repeated(RawRequest::get("/hostile"), "x-hostile-dup", b"same", DUPS),
        ),
        ("a 16 KB path", RawRequest::get(long_path("/hostile/"))),
        (
            "a 1.5 MiB POST body",
            RawRequest::post("/hostile/upload", Body::Sized(big_body())),
        ),
        (
            "a 1.5 MiB chunked POST body",
            RawRequest::post("/hostile/upload", Body::Chunked(big_body(), 16 * 1024)),
        ),
        (
            "gRPC, prefix claims more than sent",
            grpc("/hostile.Svc/Call", grpc_truncated()),
        ),
        (
            "gRPC, garbage prefix",
            grpc("/hostile.Svc/Call", grpc_garbage()),
        ),
        (
            "gRPC, body shorter than a prefix",
            grpc("/hostile.Svc/Call", grpc_short()),
        ),
    ]
}

/// The client sends the head and part of the body, then hangs up.
fn hang_up(path: &str) -> RawRequest {
    RawRequest::post(
        path,
        Body::CutOff {
            declared: 100_000,
            sent: b"only this".to_vec(),
        },
    )
}

// ---------------------------------------------------------------------------
// Per-filter knowledge.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    AddHeader,
    AccessControl,
    ExtAuthz,
    RateLimit,
    /// A filter this file does not know: its example configuration, generic checks.
    Unknown,
}

struct Profile {
    filter: String,
    kind: Kind,
    configuration: Option<String>,
    /// add-header: the header every response must carry.
    added: Option<(String, Vec<u8>)>,
}

/// ext-authz's authorization service allows this token (and sets `x-user: alice`).
const GOOD_TOKEN: &str = "Bearer good";
/// ... and this one after `SLOW_CHECK`.
const SLOW_TOKEN: &str = "Bearer slow";
const SLOW_CHECK: Duration = Duration::from_millis(500);
const AUTH_DENIED: &[u8] = b"who are you?";

const ACCESS_DENIED: &[u8] = b"access denied\n";

impl Profile {
    fn new(filter: &xtask::project::Filter) -> Profile {
        let example = filter.example_config().ok();
        let kind = match filter.name.as_str() {
            "add-header" => Kind::AddHeader,
            "access-control" => Kind::AccessControl,
            "ext-authz" => Kind::ExtAuthz,
            "rate-limit" => Kind::RateLimit,
            _ => Kind::Unknown,
        };
        let configuration = match kind {
            // Its example, with a timeout a busy 2-core machine always meets.
            Kind::ExtAuthz => {
                let mut c: serde_json::Value = serde_json::from_str(
                    example
                        .as_deref()
                        .expect("filters/ext-authz/config.example.json"),
                )
                .expect("ext-authz's example configuration is JSON");
                c["timeout_ms"] = 2000.into();
                Some(c.to_string())
            }
            // Counted per `x-client`, so each case has its own count.
            Kind::RateLimit => Some(format!(
                r#"{{"requests": 2, "window_seconds": {RATE_WINDOW}, "key_header": "x-client"}}"#
            )),
            _ => example,
        };
        let added = (kind == Kind::AddHeader).then(|| {
            let c: serde_json::Value = serde_json::from_str(
                configuration
                    .as_deref()
                    .expect("filters/add-header/config.example.json"),
            )
            .expect("add-header's example configuration is JSON");
            let text = |k: &str| {
                c[k].as_str()
                    .unwrap_or_else(|| panic!("add-header example: no `{k}`"))
                    .to_owned()
            };
            (text("name"), text("value").into_bytes())
        });
        Profile {
            filter: filter.name.clone(),
            kind,
            configuration,
            added,
        }
    }

    /// Adds what makes the filter let a request through; `n` makes it unique.
    fn neutral(&self, r: RawRequest, n: usize) -> RawRequest {
        match self.kind {
            Kind::ExtAuthz => r.header("authorization", GOOD_TOKEN),
            Kind::RateLimit => r.header("x-client", format!("neutral-{n}")),
            _ => r,
        }
    }

    /// Request headers the filter replaces on the way upstream.
    fn replaced(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::ExtAuthz => &["x-user"],
            _ => &[],
        }
    }

    /// The counters for allowed and denied requests, and ones that must stay 0.
    fn counters(
        &self,
    ) -> (
        Option<&'static str>,
        Option<&'static str>,
        &'static [&'static str],
    ) {
        match self.kind {
            Kind::AccessControl => (
                Some("access_control_allowed"),
                Some("access_control_denied"),
                &[],
            ),
            Kind::ExtAuthz => (
                Some("ext_authz_allowed"),
                Some("ext_authz_denied"),
                &["ext_authz_failed"],
            ),
            Kind::RateLimit => (Some("rate_limit_allowed"), Some("rate_limit_limited"), &[]),
            Kind::AddHeader | Kind::Unknown => (None, None, &[]),
        }
    }

    fn bootstrap(&self) -> Bootstrap {
        let mut filter = wasm_filter(&self.filter, self.configuration.as_deref());
        filter.failure_policy = Some(FailurePolicy::FailReload);
        let mut b = bootstrap(vec![filter]);
        b.header_limits = Some(LIMITS);
        b.backend = Backend::Upstream(echo());
        if self.kind == Kind::ExtAuthz {
            b.clusters
                .push(("ext-authz".into(), authorization_service()));
        }
        b
    }

    /// Every request to send, in order, with what it should get.
    fn checks(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let mut n = 0;
        let mut neutral = |r: RawRequest| {
            n += 1;
            self.neutral(r, n)
        };
        let generic = self.kind == Kind::Unknown;
        out.push(if generic {
            check(
                "a normal request, first",
                RawRequest::get("/"),
                Expect::Answered { or_none: false },
                None,
            )
        } else {
            pass("a normal request, first", neutral(RawRequest::get("/")))
        });
        for (case, r) in shapes() {
            out.push(if generic {
                check(case, r, Expect::Answered { or_none: false }, None)
            } else {
                pass(case, neutral(r))
            });
        }
        // Headers complete, then the client goes: access-control and rate-limit
        // have decided and counted. ext-authz's check could be answered before
        // or after the hang-up is seen, so it gets a slow check instead (below).
        let hang_verdict = match self.kind {
            Kind::AccessControl | Kind::RateLimit => Some(Verdict::Allowed),
            _ => None,
        };
        if self.kind != Kind::ExtAuthz {
            let expect = if generic {
                Expect::Answered { or_none: true }
            } else {
                Expect::NoAnswer
            };
            out.push(check(
                "the client hangs up mid-body",
                neutral(hang_up("/hostile/upload")),
                expect,
                hang_verdict,
            ));
        }
        out.extend(match self.kind {
            Kind::AccessControl => access_control_checks(),
            Kind::ExtAuthz => ext_authz_checks(),
            Kind::RateLimit => rate_limit_checks(),
            Kind::AddHeader | Kind::Unknown => Vec::new(),
        });
        out.push(if generic {
            check(
                "a normal request, last",
                RawRequest::get("/"),
                Expect::Answered { or_none: false },
                None,
            )
        } else {
            pass("a normal request, last", neutral(RawRequest::get("/")))
        });
        out
    }

    /// What a response that went upstream must also show for this filter.
    fn check_pass(&self, response: &HttpResponse, seen: &[u8]) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some((name, value)) = &self.added {
            if response.header(name) != Some(&value[..]) {
                problems.push(format!(
                    "the response lacks `{name}: {}` (has {:?})",
                    String::from_utf8_lossy(value),
                    response.header_str(name)
                ));
            }
        }
        if self.kind == Kind::ExtAuthz {
            let users: Vec<&[u8]> = header_lines(seen, "x-user");
            if users != [&b"alice"[..]] {
                problems.push(format!(
                    "the upstream should see exactly `x-user: alice` (the service's), saw {:?}",
                    users.iter().map(|v| lossy_short(v)).collect::<Vec<_>>()
                ));
            }
        }
        problems
    }
}

fn access_control_checks() -> Vec<Check> {
    // config.example.json: sources 127/8 allowed; /admin denied; x-debug-bypass
    // (any value) denied; under /api/, `x-api-key: demo-key` required. A
    // repeated header is judged on every copy (`Headers::get_all`).
    let key = |r: RawRequest| r.header("x-api-key", "demo-key");
    vec![
        deny(
            "x-debug-bypass with bytes 0x80-0xFF",
            RawRequest::get("/").header("x-debug-bypass", high()),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "x-api-key with bytes 0x80-0xFF under /api/",
            RawRequest::get("/api/v1").header("x-api-key", high()),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "empty x-debug-bypass (present, so denied)",
            RawRequest::get("/").header("x-debug-bypass", ""),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "empty x-api-key under /api/",
            RawRequest::get("/api/v1").header("x-api-key", ""),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "a 60 KB x-api-key under /api/",
            RawRequest::get("/api/v1").header("x-api-key", mixed(BIG_VALUE)),
            403,
            ACCESS_DENIED,
        ),
        pass(
            "a 60 KB header and the right key under /api/",
            key(RawRequest::get("/api/v1").header("x-hostile-big", mixed(BIG_VALUE))),
        ),
        pass(
            "150 headers and the right key under /api/",
            key(many(RawRequest::get("/api/v1"))),
        ),
        deny(
            "150 headers, x-debug-bypass last",
            many(RawRequest::get("/")).header("x-debug-bypass", "1"),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "x-api-key 60 times, the right key first (every copy must be right)",
            repeated(
                key(RawRequest::get("/api/v1")),
                "x-api-key",
                b"wrong",
                DUPS - 1,
            ),
            403,
            ACCESS_DENIED,
        ),
        pass(
            "x-api-key 60 times, the right key in every copy",
            repeated(
                key(RawRequest::get("/api/v1")),
                "x-api-key",
                b"demo-key",
                DUPS - 1,
            ),
        ),
        deny(
            "x-api-key 60 times, a wrong key first",
            repeated(
                RawRequest::get("/api/v1").header("x-api-key", "wrong"),
                "x-api-key",
                b"demo-key",
                DUPS - 1,
            ),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "x-debug-bypass 60 times",
            repeated(RawRequest::get("/"), "x-debug-bypass", b"1", DUPS),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "a 16 KB path under /admin",
            RawRequest::get(long_path("/admin/")),
            403,
            ACCESS_DENIED,
        ),
        // Path spellings (issue 12): one path, however it is written.
        deny(
            "//admin/users",
            RawRequest::get("//admin/users"),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "/x/../admin",
            RawRequest::get("/x/../admin"),
            403,
            ACCESS_DENIED,
        ),
        deny("/%61dmin", RawRequest::get("/%61dmin"), 403, ACCESS_DENIED),
        deny(
            "/x/%2e%2e/admin",
            RawRequest::get("/x/%2e%2e/admin"),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "/admin;x/users",
            RawRequest::get("/admin;x/users"),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "//api/v1 without a key",
            RawRequest::get("//api/v1"),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "x-debug-bypass merged with another value",
            RawRequest::get("/").header("x-debug-bypass", "0, 1"),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "x-api-key with the right key and a wrong one, comma-joined",
            RawRequest::get("/api/v1").header("x-api-key", "demo-key, wrong"),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "a 16 KB path under /api/ without a key",
            RawRequest::get(long_path("/api/")),
            403,
            ACCESS_DENIED,
        ),
        pass(
            "a 16 KB path under /api/ with the key",
            key(RawRequest::get(long_path("/api/"))),
        ),
        deny(
            "a 1.5 MiB POST to /admin (denied before the body)",
            RawRequest::post("/admin/upload", Body::Sized(big_body())),
            403,
            ACCESS_DENIED,
        ),
        deny(
            "a 1.5 MiB chunked POST to /admin",
            RawRequest::post("/admin/upload", Body::Chunked(big_body(), 16 * 1024)),
            403,
            ACCESS_DENIED,
        ),
        grpc_deny(
            "gRPC to /admin, prefix claims more than sent",
            grpc("/admin.Admin/Drop", grpc_truncated()),
            7,
        ),
        grpc_deny(
            "gRPC to /admin, garbage prefix",
            grpc("/admin.Admin/Drop", grpc_garbage()),
            7,
        ),
        grpc_deny(
            "gRPC under /api/ without a key, short body",
            grpc("/api/Svc/Call", grpc_short()),
            7,
        ),
        check(
            "the client hangs up mid-body under /admin (denied first)",
            hang_up("/admin/upload"),
            Expect::AnswerOrNone(Box::new(Expect::Reply {
                status: 403,
                body: Some(ACCESS_DENIED.to_vec()),
                retry_after: None,
            })),
            Some(Verdict::Denied),
        ),
    ]
}

fn ext_authz_checks() -> Vec<Check> {
    // config.example.json (timeout 2 s): the service at /check + path gets
    // `authorization` and `cookie` (UTF-8 values only); a 2xx lets the request
    // through with the service's `x-user`; its 401 becomes 403 with its body.
    let good = |r: RawRequest| r.header("authorization", GOOD_TOKEN);
    vec![
        deny(
            "authorization with bytes 0x80-0xFF (not sendable: refused)",
            RawRequest::get("/").header("authorization", high()),
            400,
            b"header value is not text\n",
        ),
        deny(
            "a cookie with bytes 0x80-0xFF, good token (not sendable: refused)",
            good(RawRequest::get("/").header("cookie", high())),
            400,
            b"header value is not text\n",
        ),
        deny(
            "empty authorization",
            RawRequest::get("/").header("authorization", ""),
            403,
            AUTH_DENIED,
        ),
        deny(
            "a 60 KB authorization",
            RawRequest::get("/").header("authorization", ascii(BIG_VALUE)),
            403,
            AUTH_DENIED,
        ),
        pass(
            "a 60 KB cookie sent to the service, good token",
            good(RawRequest::get("/").header("cookie", ascii(BIG_VALUE))),
        ),
        deny(
            "150 headers, no token",
            many(RawRequest::get("/")),
            403,
            AUTH_DENIED,
        ),
        // Envoy joins a repeated `authorization` into one value: the service
        // sees `Bearer good,Bearer good`, which it does not accept.
        deny(
            "the good token twice",
            good(good(RawRequest::get("/"))),
            403,
            AUTH_DENIED,
        ),
        pass(
            "x-user spoofed 60 times, good token",
            good(repeated(RawRequest::get("/"), "x-user", b"mallory", DUPS)),
        ),
        pass(
            "x-user spoofed with bytes 0x80-0xFF, good token",
            good(RawRequest::get("/").header("x-user", high())),
        ),
        pass(
            "empty x-user, good token",
            good(RawRequest::get("/").header("x-user", "")),
        ),
        deny(
            "a 16 KB path, no token",
            RawRequest::get(long_path("/")),
            403,
            AUTH_DENIED,
        ),
        deny(
            "a 1.5 MiB POST, no token (denied while the body comes)",
            RawRequest::post("/upload", Body::Sized(big_body())),
            403,
            AUTH_DENIED,
        ),
        pass(
            "a 1.5 MiB POST held during a slow check",
            RawRequest::post("/upload", Body::Sized(big_body()))
                .header("authorization", SLOW_TOKEN),
        ),
        // A gRPC local reply: Envoy maps HTTP 403 to PERMISSION_DENIED.
        grpc_deny(
            "gRPC, prefix claims more than sent, no token",
            grpc("/pkg.Svc/Call", grpc_truncated()),
            7,
        ),
        grpc_deny(
            "gRPC, garbage prefix, bad token",
            grpc("/pkg.Svc/Call", grpc_garbage()).header("authorization", "Bearer bad"),
            7,
        ),
        check(
            "the client hangs up during a slow check",
            hang_up("/upload").header("authorization", SLOW_TOKEN),
            Expect::NoAnswer,
            None,
        ),
    ]
}

fn rate_limit_checks() -> Vec<Check> {
    // {"requests": 2, "key_header": "x-client"}: per key, two pass, the third
    // gets 429 with retry-after. A repeated header counts under its first value.
    let limited = Expect::Reply {
        status: 429,
        body: Some(b"rate limited\n".to_vec()),
        retry_after: Some(RATE_WINDOW),
    };
    let mut out = Vec::new();
    let mut thrice = |case: &str, r: RawRequest| {
        out.push(pass(format!("{case}, #1"), r.clone()));
        out.push(pass(format!("{case}, #2"), r.clone()));
        out.push(check(
            format!("{case}, #3 (over the limit)"),
            r,
            limited.clone(),
            Some(Verdict::Denied),
        ));
    };
    let key = |k: &[u8]| RawRequest::get("/").header("x-client", k);
    thrice("x-client with bytes 0x80-0xFF", key(&high()));
    thrice("empty x-client", key(b""));
    thrice("a 60 KB x-client", key(&mixed(BIG_VALUE)));
    thrice("150 headers, one x-client", many(key(b"many")));
    thrice(
        "x-client 60 times (first value counts)",
        repeated(key(b"dup-first"), "x-client", b"dup-other", DUPS - 1),
    );
    thrice(
        "a 16 KB path",
        RawRequest::get(long_path("/")).header("x-client", "long-path"),
    );
    thrice(
        "a 1.5 MiB POST",
        RawRequest::post("/upload", Body::Sized(big_body())).header("x-client", "big-body"),
    );
    // The repeated header's first value is the count; its other value has its own.
    out.push(check(
        "x-client `dup-first` alone (its count is used up)",
        key(b"dup-first"),
        limited.clone(),
        Some(Verdict::Denied),
    ));
    out.push(pass(
        "x-client `dup-other` alone (a count of its own)",
        key(b"dup-other"),
    ));
    // Byte 0xFF and the text `%FF` are different clients.
    out.push(pass(
        "x-client `%FF` as text, #1 (not byte 0xFF)",
        key(b"%FF"),
    ));
    out.push(pass("x-client `%FF` as text, #2", key(b"%FF")));
    out.push(pass("x-client byte 0xFF, #1", key(b"\xFF")));
    out.push(pass("x-client byte 0xFF, #2", key(b"\xFF")));
    out.push(check(
        "x-client byte 0xFF, #3 (over the limit)",
        key(b"\xFF"),
        limited.clone(),
        Some(Verdict::Denied),
    ));
    // gRPC over the limit: a gRPC local reply, HTTP 429 as UNAVAILABLE (14).
    let g = || grpc("/pkg.Svc/Call", grpc_truncated()).header("x-client", "grpc");
    out.push(pass("gRPC, prefix claims more than sent, #1", g()));
    out.push(pass("gRPC, prefix claims more than sent, #2", g()));
    out.push(grpc_deny(
        "gRPC, prefix claims more than sent, #3 (over the limit)",
        g(),
        14,
    ));
    out
}

// ---------------------------------------------------------------------------
// The servers behind Envoy.

/// An upstream answering 200 with `x-upstream: echo`, `x-body-bytes: N` and
/// the request head it received as its body.
fn echo() -> String {
    serve_requests(|r| Answer {
        headers: vec![
            ("x-upstream", "echo".into()),
            ("x-body-bytes", r.body.len().to_string()),
        ],
        ..answer(200, &r.head)
    })
}

/// ext-authz's service: only a check under /check/ carrying exactly one
/// `authorization: Bearer good` (or `Bearer slow`, answered late) is allowed.
fn authorization_service() -> String {
    serve(|head| {
        let under_check = head
            .split(' ')
            .nth(1)
            .is_some_and(|p| p.starts_with("/check/"));
        let tokens: Vec<&str> = head
            .lines()
            .filter_map(|l| l.strip_prefix("authorization:"))
            .map(str::trim)
            .collect();
        let allow = Answer {
            headers: vec![("x-user", "alice".into())],
            ..answer(200, "")
        };
        match tokens[..] {
            [GOOD_TOKEN] if under_check => allow,
            [SLOW_TOKEN] if under_check => Answer {
                delay: SLOW_CHECK,
                ..allow
            },
            _ => answer(401, AUTH_DENIED),
        }
    })
}

// ---------------------------------------------------------------------------
// Checking answers.

/// Values of `name` in a request head, in order.
fn header_lines<'a>(head: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            l[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| l[colon + 1..].trim_ascii())
        })
        .collect()
}

fn lossy_short(v: &[u8]) -> String {
    let text = String::from_utf8_lossy(&v[..v.len().min(80)]).into_owned();
    if v.len() > 80 {
        format!("{text}… ({} bytes)", v.len())
    } else {
        text
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What is wrong with `got` for `check` (empty: nothing).
fn problems(
    profile: &Profile,
    check: &Check,
    got: &anyhow::Result<Option<HttpResponse>>,
) -> Vec<String> {
    problems_with(profile, check, &check.expect, got)
}

fn problems_with(
    profile: &Profile,
    check: &Check,
    expect: &Expect,
    got: &anyhow::Result<Option<HttpResponse>>,
) -> Vec<String> {
    let response = match got {
        Err(e) => return vec![format!("no answer could be read: {e:#}")],
        Ok(r) => r.as_ref(),
    };
    let from_upstream = |r: &HttpResponse| r.header("x-upstream") == Some(&b"echo"[..]);
    let show = |r: &HttpResponse| {
        format!(
            "status {}, headers {:?}, body {:?}",
            r.status,
            r.headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", lossy_short(v)))
                .collect::<Vec<_>>(),
            lossy_short(&r.body)
        )
    };
    let mut out = Vec::new();
    match (expect, response) {
        (Expect::NoAnswer, None)
        | (Expect::Answered { or_none: true }, None)
        | (Expect::AnswerOrNone(_), None) => {}
        (Expect::AnswerOrNone(answer), Some(_)) => {
            return problems_with(profile, check, answer, got)
        }
        (Expect::NoAnswer, Some(r)) => out.push(format!(
            "expected no answer (the client hung up), got {}",
            show(r)
        )),
        (_, None) => out.push("the connection closed without an answer".into()),
        (Expect::Answered { .. }, Some(r)) => {
            if r.status >= 500 {
                out.push(format!("expected an answer below 500, got {}", show(r)));
            }
        }
        (Expect::Pass, Some(r)) => {
            if r.status != 200 || !from_upstream(r) {
                out.push(format!("expected the upstream's 200, got {}", show(r)));
                return out;
            }
            let seen = &r.body;
            let sent_body = check.request.body.whole().unwrap_or_default();
            let got_bytes = r.header_str("x-body-bytes").unwrap_or_default();
            if got_bytes != sent_body.len().to_string() {
                out.push(format!(
                    "the upstream got {got_bytes} body bytes of {}",
                    sent_body.len()
                ));
            }
            let line = [
                check.request.method.as_bytes(),
                b" ",
                &check.request.path,
                b" HTTP/1.1\r\n",
            ]
            .concat();
            if !seen.starts_with(&line) {
                out.push(format!(
                    "the upstream got another request line: {:?}",
                    lossy_short(&seen[..seen.len().min(line.len())])
                ));
            }
            for (name, value) in &check.request.headers {
                if profile.replaced().contains(&name.as_str()) {
                    continue;
                }
                let wanted = [b"\r\n", name.as_bytes(), b": ", value, b"\r\n"].concat();
                if !contains(seen, &wanted) {
                    out.push(format!(
                        "the upstream did not get `{name}: {}` as sent",
                        lossy_short(value)
                    ));
                    break;
                }
            }
            out.extend(profile.check_pass(r, seen));
        }
        (
            Expect::Reply {
                status,
                body,
                retry_after,
            },
            Some(r),
        ) => {
            if r.status != *status || from_upstream(r) {
                out.push(format!("expected the filter's {status}, got {}", show(r)));
                return out;
            }
            if let Some(body) = body {
                if &r.body != body {
                    out.push(format!(
                        "expected body {:?}, got {}",
                        lossy_short(body),
                        show(r)
                    ));
                }
            }
            if let Some(window) = retry_after {
                let ok = r
                    .header_str("retry-after")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|s| (1..=*window).contains(&s));
                if !ok {
                    out.push(format!(
                        "expected retry-after of 1..={window} s, got {}",
                        show(r)
                    ));
                }
            }
        }
        (Expect::Grpc(code), Some(r)) => {
            let grpc_status = r.header_str("grpc-status");
            if r.status != 200 || from_upstream(r) || grpc_status != Some(code.to_string()) {
                out.push(format!(
                    "expected a gRPC reply (HTTP 200, grpc-status {code}), got {}",
                    show(r)
                ));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The run.

/// Runs every check against one Envoy with `profile`'s filter; returns the problems.
fn run(profile: &Profile) -> (Vec<String>, usize) {
    let name = &profile.filter;
    let envoy = match Envoy::start(&profile.bootstrap()) {
        Ok(e) => e,
        Err(e) => {
            let hint = if profile.kind == Kind::Unknown {
                " (a filter with no profile in tests/tests/hostile.rs runs with its config.example.json; give it one)"
            } else {
                ""
            };
            return (
                vec![format!("filter `{name}`: Envoy did not start{hint}: {e:#}")],
                0,
            );
        }
    };
    let vms_created = |e: &Envoy| e.stat("wasm.envoy.wasm.runtime.v8.created").ok().flatten();
    let created_before = vms_created(&envoy);
    let mut failures = Vec::new();
    let checks = profile.checks();
    let (mut allowed, mut denied) = (0, 0);
    for c in &checks {
        let got = client::send(envoy.port, &c.request);
        for p in problems(profile, c, &got) {
            failures.push(format!("filter `{name}`, case `{}`: {p}", c.case));
        }
        match c.verdict {
            Some(Verdict::Allowed) => allowed += 1,
            Some(Verdict::Denied) => denied += 1,
            None => {}
        }
    }
    for line in vm_failures(&envoy) {
        failures.push(format!(
            "filter `{name}`: Envoy logged a VM failure: {line}"
        ));
    }
    // With FAIL_RELOAD a failed VM is counted and replaced (a new V8 VM).
    for stat in [
        "vm_reload",
        "vm_reload_backoff",
        "vm_reload_success",
        "vm_reload_failure",
    ] {
        let stat = format!("wasm.{name}.{stat}");
        match envoy.stat(&stat) {
            Ok(Some(0)) => {}
            other => failures.push(format!(
                "filter `{name}`: `{stat}` should be 0, is {other:?}"
            )),
        }
    }
    let created_after = vms_created(&envoy);
    if created_before.is_none() || created_after != created_before {
        failures.push(format!(
            "filter `{name}`: wasm.envoy.wasm.runtime.v8.created went from {created_before:?} to {created_after:?} (a VM was replaced)"
        ));
    }
    let (allowed_counter, denied_counter, zero) = profile.counters();
    for (counter, want) in [(allowed_counter, allowed), (denied_counter, denied)]
        .into_iter()
        .filter_map(|(c, n)| Some((c?, n)))
        .chain(zero.iter().map(|c| (*c, 0)))
    {
        let stat = format!("wasmcustom.{counter}");
        match envoy.stat(&stat) {
            Ok(Some(n)) if n == want => {}
            other => failures.push(format!(
                "filter `{name}`: `{stat}` should be {want}, is {other:?}"
            )),
        }
    }
    if !failures.is_empty() {
        if profile.kind == Kind::Unknown {
            failures.push(format!(
                "filter `{name}` has no profile in tests/tests/hostile.rs: it ran with its config.example.json \
                 and only \"an answer below 500\" was checked; give it a profile if it needs more"
            ));
        }
        failures.push(format!(
            "filter `{name}`: Envoy's log ends:\n{}",
            envoy.log_tail(15)
        ));
    }
    (failures, checks.len())
}

#[test]
fn every_filter_answers_hostile_requests_correctly() {
    let filters = xtask::project::filters().expect("the filters under filters/");
    assert!(!filters.is_empty(), "no filters found under filters/");
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for filter in &filters {
        let profile = Profile::new(filter);
        let start = Instant::now();
        let (f, requests) = run(&profile);
        summary.push(format!(
            "{} ({:?}): {requests} requests, {} problems, {:.1} s",
            filter.name,
            profile.kind,
            f.len(),
            start.elapsed().as_secs_f64()
        ));
        failures.extend(f);
    }
    eprintln!("{}", summary.join("\n"));
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
