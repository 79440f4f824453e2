//! Issue 12, "Requests": every filter and every rule kind in a real Envoy 1.40,
//! against each class of request spelling an upstream treats as one request:
//! path spellings, host spellings, repeated and comma-merged headers, and
//! interleaved routes.
//!
//! Most Envoys here run with `raw_paths` (Envoy's own normalization off), so
//! what is tested is weir's canonical view (`weir::path`), not Envoy's; one
//! test runs the default bootstrap and checks that Envoy normalizes too. Each
//! case asserts the answer the client got and, for a request that must not
//! pass, that the upstream never saw it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_tests::client::{self, RawRequest};
use weir_tests::server::{answer, serve_requests, Answer};
use weir_tests::{bootstrap, vm_failures, wasm_filter};
use xtask::envoy::{Backend, Envoy, HttpResponse};

/// Spellings of `/admin/users` that an upstream (or Envoy with
/// normalization on) serves as `/admin/users`.
const ADMIN_SPELLINGS: &[&str] = &[
    "/admin/users",
    "//admin/users",
    "///admin//users",
    "/admin//users",
    "/./admin/users",
    "/admin/./users",
    "/x/../admin/users",
    "/x/y/../../admin/users",
    "/../admin/users",
    "/../../admin/users",
    "/%61dmin/users",
    "/%61%64%6d%69%6e/users",
    "/%61%64%6D%69%6E/users",
    "/adm%69n/users",
    "/%2e/admin/users",
    "/x/%2e%2e/admin/users",
    "/x/%2E%2E/admin/users",
    "/x/.%2e/admin/users",
    "/admin;jsessionid=1/users",
    "/x/..;/admin/users",
    "/admin/users?q=/public",
    "//admin/users?a=1",
    "/admin",
    "/admin/",
    "/./admin",
    "/x/../admin",
    "/%61dmin",
    "http://localhost/admin/users",
    "http://localhost//admin/users",
    "/%2E%2E/admin/users",
    "/admin/x/%2e%2E/users",
];

/// Spellings whose meaning depends on the upstream: refused with 400.
const AMBIGUOUS_SPELLINGS: &[&str] = &[
    "/admin%2fusers",
    "/admin%2Fusers",
    "/x%2f..%2fadmin/users",
    "/%5cadmin/users",
    "/x%5C..%5Cadmin",
    "/x\\..\\admin/users",
    "/%zzadmin",
    "/admin%4",
    "/admin%",
    "/admin%00/users",
];

/// Paths that are not `/admin…` and must pass.
const OTHER_PATHS: &[&str] = &[
    "/",
    "/adm",
    "/public/admin",
    "/x/admin",
    "/ADMIN",
    "/%41dmin",
    "/a/b/../c",
];

/// Host spellings of `api.example.com`.
const HOST_SPELLINGS: &[&str] = &[
    "api.example.com",
    "API.EXAMPLE.COM",
    "Api.Example.Com",
    "api.example.com.",
    "API.example.com.",
    "api.example.com:10000",
    "api.example.com.:10000",
    "api.example.com:80",
];

/// An upstream answering 200 with the request head, remembering each request line.
struct Upstream {
    addr: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn upstream() -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = serve_requests(move |r| {
        let head = r.head_text();
        log.lock()
            .unwrap()
            .push(head.lines().next().unwrap_or("").to_owned());
        answer(200, head)
    });
    Upstream { addr, seen }
}

impl Upstream {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// One Envoy with `filter` configured, in front of `upstream`, paths left raw unless `normalize`.
fn envoy(filter: &str, config: &str, upstream: &Upstream, normalize: bool) -> Envoy {
    let mut b = bootstrap(vec![wasm_filter(filter, Some(config))]);
    b.backend = Backend::Upstream(upstream.addr.clone());
    b.raw_paths = !normalize;
    Envoy::start(&b).unwrap()
}

fn send(envoy: &Envoy, request: &RawRequest) -> HttpResponse {
    client::send(envoy.port, request)
        .unwrap()
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(&request.path)))
}

/// Sends `request`; asserts the status is one of `want` and whether the upstream saw it.
fn expect(
    envoy: &Envoy,
    upstream: &Upstream,
    request: RawRequest,
    want: &[u16],
    reaches: bool,
) -> u16 {
    let before = upstream.count();
    let r = send(envoy, &request);
    let what = format!(
        "{} {:?} {:?}",
        request.method,
        String::from_utf8_lossy(&request.path),
        request.headers
    );
    assert!(
        want.contains(&r.status),
        "{what}: got {}, want {want:?}\n{}",
        r.status,
        envoy.log_tail(5)
    );
    // Let the upstream's thread record the request.
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        upstream.count() > before,
        reaches,
        "{what}: reached the upstream: {}",
        upstream.count() > before
    );
    r.status
}

fn no_traps(envoy: &Envoy) {
    assert_eq!(vm_failures(envoy), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Item 1: paths.

const ACCESS_CONTROL: &str = r#"{
    "deny_path_prefixes": ["/admin"],
    "_rules_": [{"_match_path_prefix_": ["/api/"], "require_headers": [{"name": "x-api-key", "values": ["good"]}]}]
}"#;

#[test]
fn access_control_judges_every_spelling_of_a_denied_path_as_that_path() {
    let up = upstream();
    let envoy = envoy("access-control", ACCESS_CONTROL, &up, false);
    for path in ADMIN_SPELLINGS {
        expect(&envoy, &up, RawRequest::get(*path), &[403], false);
    }
    for path in AMBIGUOUS_SPELLINGS {
        expect(&envoy, &up, RawRequest::get(*path), &[400], false);
    }
    for path in OTHER_PATHS {
        expect(&envoy, &up, RawRequest::get(*path), &[200], true);
    }
    no_traps(&envoy);
}

#[test]
fn a_path_rule_applies_to_every_spelling_of_its_path() {
    let up = upstream();
    let envoy = envoy("access-control", ACCESS_CONTROL, &up, false);
    for spelling in ADMIN_SPELLINGS.iter().filter(|p| p.contains("admin/users")) {
        let path =
            spelling
                .replacen("admin/users", "api/v1", 1)
                .replacen("%61dmin/users", "%61pi/v1", 1);
        let path = path
            .replace("%61%64%6d%69%6e/users", "%61%70%69/v1")
            .replace("%61%64%6D%69%6E/users", "%61%70%69/v1");
        let path = path
            .replace("adm%69n/users", "ap%69/v1")
            .replace("admin;jsessionid=1/users", "api;jsessionid=1/v1");
        let path = path.replace("admin//users", "api//v1");
        expect(&envoy, &up, RawRequest::get(path.as_str()), &[403], false);
        expect(
            &envoy,
            &up,
            RawRequest::get(path.as_str()).header("x-api-key", "good"),
            &[200],
            true,
        );
    }
    for path in ["/api%2fv1", "/api\\v1", "/%zzapi/v1"] {
        expect(
            &envoy,
            &up,
            RawRequest::get(path).header("x-api-key", "good"),
            &[400],
            false,
        );
    }
    no_traps(&envoy);
}

/// With Envoy's own normalization on (the bootstrap's default), Envoy serves
/// and the filter judges one path; `%2F` is refused by Envoy itself.
#[test]
fn normalized_envoy_and_filter_agree() {
    let up = upstream();
    let envoy = envoy("access-control", ACCESS_CONTROL, &up, true);
    for path in ADMIN_SPELLINGS {
        expect(&envoy, &up, RawRequest::get(*path), &[403, 400], false);
    }
    // Envoy's normalization reads a raw `\` as `/`: then the filter denies the path.
    for path in AMBIGUOUS_SPELLINGS {
        expect(&envoy, &up, RawRequest::get(*path), &[400, 403], false);
    }
    expect(&envoy, &up, RawRequest::get("//api/v1"), &[403], false);
    expect(&envoy, &up, RawRequest::get("/a//b/../c"), &[200], true);
    assert_eq!(
        up.seen.lock().unwrap().last().map(String::as_str),
        Some("GET /a/c HTTP/1.1")
    );
    no_traps(&envoy);
}

#[test]
fn ext_authz_asks_about_the_canonical_path() {
    let up = upstream();
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    let auth = serve_requests(move |r| {
        let line = r.head_text().lines().next().unwrap_or("").to_owned();
        log.lock().unwrap().push(line.clone());
        if line.contains(" /admin") {
            answer(403, "no admin")
        } else {
            answer(200, "")
        }
    });
    let config = r#"{"cluster": "auth", "timeout_ms": 2000}"#;
    let mut b = bootstrap(vec![wasm_filter("ext-authz", Some(config))]);
    b.backend = Backend::Upstream(up.addr.clone());
    b.clusters.push(("auth".into(), auth));
    b.raw_paths = true;
    let envoy = Envoy::start(&b).unwrap();
    for path in ADMIN_SPELLINGS {
        expect(&envoy, &up, RawRequest::get(*path), &[403], false);
    }
    for path in AMBIGUOUS_SPELLINGS {
        expect(&envoy, &up, RawRequest::get(*path), &[400], false);
    }
    expect(
        &envoy,
        &up,
        RawRequest::get("//public/./x?q=/admin"),
        &[200],
        true,
    );
    assert_eq!(
        asked.lock().unwrap().last().map(String::as_str),
        Some("GET /public/x?q=/admin HTTP/1.1")
    );
    no_traps(&envoy);
}

/// Ignored: in Envoy 1.40 a filter that runs only on the response (add-header)
/// cannot read `request.path` or `request.host` there (Envoy drops the request
/// headers from the Wasm context once the request phase continued), so its
/// path and domain rules never match in Envoy, with or without this change
/// (main's module behaves the same). Natively the rules work
/// (`filters/add-header/tests/native.rs`). Un-ignore when the SDK picks the
/// rule on the request headers for such filters.
#[test]
#[ignore = "Envoy hides request.path from response-only filters; see the comment"]
fn add_header_rules_match_the_canonical_path_and_refuse_ambiguous_ones() {
    let up = upstream();
    let config =
        r#"{"_rules_": [{"_match_path_prefix_": ["/admin/"], "name": "x-admin", "value": "yes"}]}"#;
    let envoy = envoy("add-header", config, &up, false);
    for path in ADMIN_SPELLINGS.iter().filter(|p| p.contains("admin/users")) {
        let r = send(&envoy, &RawRequest::get(*path));
        assert_eq!(
            (r.status, r.header_str("x-admin").as_deref()),
            (200, Some("yes")),
            "{path}\n{}",
            envoy.log_tail(10)
        );
    }
    for path in OTHER_PATHS {
        let r = send(&envoy, &RawRequest::get(*path));
        assert_eq!((r.status, r.header("x-admin")), (200, None), "{path}");
    }
    // add-header runs on the response: a path its rules cannot judge gets 400 instead.
    for path in AMBIGUOUS_SPELLINGS {
        let r = send(&envoy, &RawRequest::get(*path));
        assert_eq!((r.status, r.header("x-admin")), (400, None), "{path}");
    }
    no_traps(&envoy);
}

// ---------------------------------------------------------------------------
// Item 2: hosts.

#[test]
fn domain_rules_match_every_spelling_of_the_host() {
    let up = upstream();
    let config = r#"{"_rules_": [{"_match_domain_": ["api.example.com"], "require_headers": [{"name": "x-api-key", "values": ["good"]}]}]}"#;
    let envoy = envoy("access-control", config, &up, false);
    for host in HOST_SPELLINGS {
        expect(
            &envoy,
            &up,
            RawRequest::get("/v1").header("host", *host),
            &[403],
            false,
        );
        expect(
            &envoy,
            &up,
            RawRequest::get("/v1")
                .header("host", *host)
                .header("x-api-key", "good"),
            &[200],
            true,
        );
    }
    for host in [
        "example.com",
        "api.example.com.evil",
        "xapi.example.com",
        "localhost",
    ] {
        expect(
            &envoy,
            &up,
            RawRequest::get("/v1").header("host", host),
            &[200],
            true,
        );
    }
    let wild =
        r#"{"_rules_": [{"_match_domain_": ["*.Example.com."], "deny_path_prefixes": ["/"]}]}"#;
    let envoy = self::envoy("access-control", wild, &up, false);
    for host in HOST_SPELLINGS
        .iter()
        .chain(&["a.b.example.com.", "X.EXAMPLE.COM:1"])
    {
        expect(
            &envoy,
            &up,
            RawRequest::get("/").header("host", *host),
            &[403],
            false,
        );
    }
    expect(
        &envoy,
        &up,
        RawRequest::get("/").header("host", "example.com."),
        &[200],
        true,
    );
    no_traps(&envoy);
}

// ---------------------------------------------------------------------------
// Item 3: rate-limit counters per rule, per window, per path spelling.

#[test]
fn rate_limit_rules_keep_their_own_counts_when_routes_interleave() {
    let up = upstream();
    let config = r#"{"requests": 100, "window_seconds": 1,
                     "_rules_": [{"_match_path_prefix_": ["/login"], "requests": 5, "window_seconds": 60}]}"#;
    let envoy = envoy("rate-limit", config, &up, false);
    // The /login window is a wall-clock minute: start well inside one.
    let second = |()| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60
    };
    while second(()) > 40 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut login_ok = 0;
    for i in 0..40 {
        let login = ["/login", "//login", "/%6cogin", "/x/../login", "/login;a"][i % 5];
        if send(&envoy, &RawRequest::get(login)).status == 200 {
            login_ok += 1;
        }
        assert_eq!(
            send(&envoy, &RawRequest::get("/")).status,
            200,
            "the global limit is 100/s"
        );
    }
    assert_eq!(
        login_ok, 5,
        "the /login rule allows 5 per minute, whatever else the client sends"
    );
    assert_eq!(
        envoy.stat("wasmcustom.rate_limit_limited").unwrap(),
        Some(35)
    );
    no_traps(&envoy);
}

// ---------------------------------------------------------------------------
// Item 4: ext-authz and repeated headers.

/// An authorization service allowing only when every `x-api-key` it is sent is `good`.
fn strict_auth(heads: Arc<Mutex<Vec<String>>>) -> String {
    serve_requests(move |r| {
        let head = r.head_text();
        heads.lock().unwrap().push(head.clone());
        let keys: Vec<&str> = head
            .lines()
            .filter_map(|l| l.strip_prefix("x-api-key: "))
            .map(str::trim)
            .collect();
        if !keys.is_empty() && keys.iter().all(|k| *k == "good") {
            answer(200, "")
        } else {
            Answer {
                ..answer(403, "bad key")
            }
        }
    })
}

fn ext_authz(up: &Upstream, heads: Arc<Mutex<Vec<String>>>, extra: &str) -> Envoy {
    let config = format!(
        r#"{{"cluster": "auth", "timeout_ms": 2000, "forward_headers": ["x-api-key"]{extra}}}"#
    );
    let mut b = bootstrap(vec![wasm_filter("ext-authz", Some(&config))]);
    b.backend = Backend::Upstream(up.addr.clone());
    b.clusters.push(("auth".into(), strict_auth(heads)));
    Envoy::start(&b).unwrap()
}

#[test]
fn ext_authz_forwards_every_copy_of_a_repeated_header() {
    let up = upstream();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let envoy = ext_authz(&up, heads.clone(), "");
    let both = RawRequest::get("/")
        .header("x-api-key", "good")
        .header("x-api-key", "evil");
    expect(&envoy, &up, both, &[403], false);
    let seen = heads.lock().unwrap().last().cloned().unwrap_or_default();
    assert!(
        seen.contains("x-api-key: good") && seen.contains("x-api-key: evil"),
        "the service saw: {seen}"
    );
    let reversed = RawRequest::get("/")
        .header("x-api-key", "evil")
        .header("x-api-key", "good");
    expect(&envoy, &up, reversed, &[403], false);
    expect(
        &envoy,
        &up,
        RawRequest::get("/").header("x-api-key", "good, evil"),
        &[403],
        false,
    );
    expect(
        &envoy,
        &up,
        RawRequest::get("/")
            .header("x-api-key", "good")
            .header("x-api-key", "good"),
        &[200],
        true,
    );
    expect(
        &envoy,
        &up,
        RawRequest::get("/").header("x-api-key", "good"),
        &[200],
        true,
    );
    // Not text: refused, not silently left out of the check.
    expect(
        &envoy,
        &up,
        RawRequest::get("/")
            .header("x-api-key", "good")
            .header("x-api-key", b"\xff".to_vec()),
        &[400],
        false,
    );
    expect(
        &envoy,
        &up,
        RawRequest::get("/").header("x-api-key", b"go\x80od".to_vec()),
        &[400],
        false,
    );
    no_traps(&envoy);
}

#[test]
fn ext_authz_can_deny_repeated_headers_outright() {
    let up = upstream();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let envoy = ext_authz(&up, heads.clone(), r#", "repeated_headers": "deny""#);
    let asked = heads.lock().unwrap().len();
    expect(
        &envoy,
        &up,
        RawRequest::get("/")
            .header("x-api-key", "good")
            .header("x-api-key", "good"),
        &[400],
        false,
    );
    assert_eq!(heads.lock().unwrap().len(), asked, "denied without asking");
    expect(
        &envoy,
        &up,
        RawRequest::get("/").header("x-api-key", "good"),
        &[200],
        true,
    );
    no_traps(&envoy);
}

// ---------------------------------------------------------------------------
// Item 5: access-control's IPv4-mapped networks and merged headers.

#[test]
fn access_control_ipv4_mapped_networks_match_ipv4_sources() {
    let up = upstream();
    let envoy = envoy(
        "access-control",
        r#"{"deny_sources": ["::ffff:127.0.0.0/104"]}"#,
        &up,
        false,
    );
    expect(&envoy, &up, RawRequest::get("/"), &[403], false);
    let envoy = self::envoy(
        "access-control",
        r#"{"allow_sources": ["::ffff:127.0.0.1"]}"#,
        &up,
        false,
    );
    expect(&envoy, &up, RawRequest::get("/"), &[200], true);
    no_traps(&envoy);
}

#[test]
fn access_control_judges_each_element_of_repeated_and_merged_headers() {
    let up = upstream();
    let config = r#"{"deny_headers": [{"name": "x-role", "values": ["admin"]}],
                     "require_headers": [{"name": "x-api-key", "values": ["good"]}]}"#;
    let envoy = envoy("access-control", config, &up, false);
    let key = |r: RawRequest| r.header("x-api-key", "good");
    for roles in [
        &["admin"][..],
        &["user, admin"],
        &["user,admin"],
        &["admin ,user"],
        &["user", "admin"],
        &["admin", "user"],
        &["user", "x, admin"],
    ] {
        let mut r = key(RawRequest::get("/"));
        for role in roles {
            r = r.header("x-role", *role);
        }
        expect(&envoy, &up, r, &[403], false);
    }
    for roles in [
        &["user"][..],
        &["user, guest"],
        &["administrator"],
        &["user", "guest"],
    ] {
        let mut r = key(RawRequest::get("/"));
        for role in roles {
            r = r.header("x-role", *role);
        }
        expect(&envoy, &up, r, &[200], true);
    }
    for keys in [
        &["good, evil"][..],
        &["evil,good"],
        &["good", "evil"],
        &["evil", "good"],
        &["good", ""],
    ] {
        let mut r = RawRequest::get("/");
        for k in keys {
            r = r.header("x-api-key", *k);
        }
        expect(&envoy, &up, r, &[403], false);
    }
    for keys in [&["good"][..], &["good", "good"], &["good, good"]] {
        let mut r = RawRequest::get("/");
        for k in keys {
            r = r.header("x-api-key", *k);
        }
        expect(&envoy, &up, r, &[200], true);
    }
    no_traps(&envoy);
}
