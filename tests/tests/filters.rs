//! access-control, ext-authz and rate-limit in a real Envoy 1.40: local replies (HTTP and
//! gRPC), per-route rules, metrics in Envoy's stats, an HTTP callout to a real
//! authorization service (allow, deny, timeout), shared data, and hostile header bytes.

use std::time::Duration;

use weir_tests::server::{answer, serve, Answer};
use weir_tests::{bootstrap, vm_failures, wasm_filter};
use xtask::envoy::{Backend, Envoy};

/// 0x80..=0xFF: the bytes that took workers down with raw proxy-wasm.
fn hostile() -> Vec<u8> {
    (0x80..=0xFF).collect()
}

const ACCESS_CONTROL: &str = r#"{
  "allow_sources": ["127.0.0.0/8", "::1"],
  "deny_path_prefixes": ["/admin"],
  "deny_headers": [{"name": "x-debug-bypass"}],
  "_rules_": [
    {"_match_path_prefix_": ["/api/"], "require_headers": [{"name": "x-api-key", "values": ["demo-key"]}]},
    {"_match_path_prefix_": ["/internal/"], "allow_sources": ["10.0.0.0/8"]}
  ]
}"#;

fn access_control() -> Envoy {
    Envoy::start(&bootstrap(vec![wasm_filter(
        "access-control",
        Some(ACCESS_CONTROL),
    )]))
    .unwrap()
}

#[test]
fn access_control_allows_denies_and_counts() {
    let envoy = access_control();
    // `weir::metrics!` + `#[weir::filter]`: defined at configure, shown at zero.
    for stat in ["access_control_allowed", "access_control_denied"] {
        assert_eq!(
            envoy.stat(&format!("wasmcustom.{stat}")).unwrap(),
            Some(0),
            "{stat} before any request"
        );
    }
    assert_eq!(envoy.get("/productpage", &[]).unwrap().status, 200);
    let r = envoy.get("/admin/users", &[]).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.body, b"access denied\n");
    assert_eq!(
        envoy.get("/", &[("x-debug-bypass", b"1")]).unwrap().status,
        403
    );
    assert_eq!(
        envoy.stat("wasmcustom.access_control_allowed").unwrap(),
        Some(1)
    );
    assert_eq!(
        envoy.stat("wasmcustom.access_control_denied").unwrap(),
        Some(2)
    );
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn access_control_rules_apply_per_path_prefix() {
    let envoy = access_control();
    assert_eq!(
        envoy.get("/api/v1", &[]).unwrap().status,
        403,
        "the /api/ rule requires a key"
    );
    assert_eq!(
        envoy
            .get("/api/v1", &[("x-api-key", b"demo-key")])
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        envoy.get("/internal/x", &[]).unwrap().status,
        403,
        "only 10/8 may reach /internal/"
    );
    assert_eq!(envoy.get("/elsewhere", &[]).unwrap().status, 200);
}

#[test]
fn access_control_denies_grpc_calls_with_a_grpc_status() {
    let envoy = access_control();
    let r = envoy
        .get(
            "/admin.Admin/Drop",
            &[("content-type", b"application/grpc")],
        )
        .unwrap();
    assert_eq!(r.status, 200, "gRPC errors travel in grpc-status");
    assert_eq!(r.header_str("grpc-status").as_deref(), Some("7"));
}

#[test]
fn access_control_high_bytes_never_trap() {
    let envoy = access_control();
    let bytes = hostile();
    for _ in 0..3 {
        assert_eq!(envoy.get("/", &[("x-bytes", &bytes)]).unwrap().status, 200);
        assert_eq!(
            envoy
                .get("/api/x", &[("x-api-key", &bytes)])
                .unwrap()
                .status,
            403
        );
    }
    assert_eq!(envoy.get("/after", &[]).unwrap().status, 200);
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

/// An authorization service (one token allowed, one that answers too late) and
/// an upstream that echoes the request head it received.
fn ext_authz() -> Envoy {
    let auth = serve(|head| {
        let auth = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .unwrap_or("")
            .trim()
            .to_owned();
        match auth.as_str() {
            "Bearer good" => Answer {
                headers: vec![("x-user", "alice".into())],
                ..answer(200, "")
            },
            "Bearer slow" => Answer {
                delay: Duration::from_millis(1500),
                ..answer(200, "")
            },
            _ => answer(401, "who are you?"),
        }
    });
    let echo = serve(|head| answer(200, head));
    let config = r#"{"cluster": "ext-authz", "path_prefix": "/check", "timeout_ms": 300,
                     "forward_headers": ["authorization"], "upstream_headers": ["x-user"]}"#;
    let mut b = bootstrap(vec![wasm_filter("ext-authz", Some(config))]);
    b.backend = Backend::Upstream(echo);
    b.clusters.push(("ext-authz".into(), auth));
    Envoy::start(&b).unwrap()
}

#[test]
fn ext_authz_allows_with_the_services_user() {
    let envoy = ext_authz();
    let r = envoy
        .get(
            "/orders",
            &[("authorization", b"Bearer good"), ("x-user", b"mallory")],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", envoy.log_tail(20));
    let seen = String::from_utf8_lossy(&r.body).to_string();
    assert!(seen.contains("x-user: alice"), "the upstream got: {seen}");
    assert!(
        !seen.contains("mallory"),
        "the client's x-user was replaced: {seen}"
    );
    assert_eq!(envoy.stat("wasmcustom.ext_authz_allowed").unwrap(), Some(1));
}

#[test]
fn ext_authz_denies_and_times_out() {
    let envoy = ext_authz();
    let r = envoy
        .get("/orders", &[("authorization", b"Bearer nope")])
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.body, b"who are you?");
    let r = envoy
        .get("/orders", &[("authorization", b"Bearer slow")])
        .unwrap();
    assert_eq!(r.status, 503, "the 300 ms timeout fails closed");
    assert_eq!(envoy.stat("wasmcustom.ext_authz_denied").unwrap(), Some(1));
    assert_eq!(envoy.stat("wasmcustom.ext_authz_failed").unwrap(), Some(1));
    // After a timeout the worker still serves.
    assert_eq!(
        envoy
            .get("/", &[("authorization", b"Bearer good")])
            .unwrap()
            .status,
        200
    );
}

#[test]
fn ext_authz_high_bytes_never_trap() {
    let envoy = ext_authz();
    let bytes = hostile();
    for _ in 0..3 {
        let r = envoy.get("/", &[("authorization", &bytes)]).unwrap();
        assert_eq!(
            r.status, 400,
            "an unsendable credential is refused, not left out"
        );
        let r = envoy
            .get(
                "/",
                &[("authorization", b"Bearer good"), ("x-bytes", &bytes)],
            )
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn rate_limit_counts_in_shared_data_and_answers_429() {
    // Windows are aligned to the clock: a long one keeps the test's requests in
    // one window (with 60 s, a run under load crossed a boundary once).
    let config = r#"{"requests": 3, "window_seconds": 86400, "_rules_": [
        {"_match_path_prefix_": ["/keyed"], "requests": 1, "key_header": "x-api-key"}]}"#;
    let envoy = Envoy::start(&bootstrap(vec![wasm_filter("rate-limit", Some(config))])).unwrap();
    for i in 0..3 {
        assert_eq!(envoy.get("/", &[]).unwrap().status, 200, "request {i}");
    }
    let r = envoy.get("/", &[]).unwrap();
    assert_eq!(r.status, 429);
    let retry: u64 = r
        .header_str("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a retry-after header");
    assert!((1..=86400).contains(&retry), "retry-after {retry}");
    // Per-key counts under the /keyed rule, hostile bytes included.
    let bytes = hostile();
    assert_eq!(
        envoy
            .get("/keyed", &[("x-api-key", &bytes)])
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        envoy
            .get("/keyed", &[("x-api-key", &bytes)])
            .unwrap()
            .status,
        429
    );
    assert_eq!(
        envoy
            .get("/keyed", &[("x-api-key", b"other")])
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        envoy.stat("wasmcustom.rate_limit_allowed").unwrap(),
        Some(5)
    );
    assert_eq!(
        envoy.stat("wasmcustom.rate_limit_limited").unwrap(),
        Some(2)
    );
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}
