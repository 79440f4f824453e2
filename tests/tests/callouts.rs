//! Callouts in a real Envoy 1.40: two HTTP callouts in parallel for one request, waited
//! for all or for the first (`tests/fixtures/fanout`), HTTP and gRPC callouts from
//! `on_tick` into shared data, and `ext-authz` speaking Envoy's ext_authz gRPC protocol
//! to a real grpcio server (`tests/fixtures/grpc/server.py`): allow, deny, a failure
//! status and a timeout. The fixture's own tests also run through its compiled module.

use std::time::{Duration, Instant};

use weir_tests::grpc::GrpcServer;
use weir_tests::server::{answer, serve, Answer};
use weir_tests::{bootstrap, vm_failures, wasm_filter};
use xtask::build::{self, Options};
use xtask::envoy::{Backend, Code, Envoy, HttpResponse, WasmFilter};
use xtask::project::{self, Filter};
use xtask::toolchain::Target;

fn fixture() -> Filter {
    Filter {
        name: "fanout".into(),
        dir: project::root().join("tests/fixtures/fanout"),
    }
}

fn fanout_module(target: Target) -> std::path::PathBuf {
    let options = Options {
        target,
        ..Options::default()
    };
    match build::build(&fixture(), &options) {
        Ok(built) => built.path,
        Err(e) => panic!("cannot build the fanout fixture: {e:#}"),
    }
}

/// Envoy with the fanout fixture configured with `config`, the given HTTP and gRPC
/// clusters, and an upstream answering 200.
fn fanout_envoy(config: &str, http: Vec<(&str, String)>, grpc: Vec<(&str, String)>) -> Envoy {
    let filter = WasmFilter {
        name: "fanout".into(),
        root_id: "fanout".into(),
        code: Code::Local(fanout_module(Target::Wasip1)),
        configuration: Some(config.to_owned()),
        failure_policy: None,
    };
    let mut b = bootstrap(vec![filter]);
    b.backend = Backend::Upstream(serve(|_| answer(200, "upstream\n")));
    b.clusters = http.into_iter().map(|(n, a)| (n.to_owned(), a)).collect();
    b.grpc_clusters = grpc.into_iter().map(|(n, a)| (n.to_owned(), a)).collect();
    Envoy::start(&b).unwrap()
}

/// A callout service answering `status` after `delay`.
fn slow(status: u16, delay: Duration) -> String {
    serve(move |_| Answer {
        delay,
        ..answer(status, "")
    })
}

fn timed_get(envoy: &Envoy, path: &str) -> (HttpResponse, Duration) {
    let start = Instant::now();
    let response = envoy.get(path, &[]).unwrap();
    (response, start.elapsed())
}

#[test]
fn the_fixtures_tests_pass_through_its_module() {
    for target in [Target::Wasip1, Target::Unknown] {
        let module = fanout_module(target);
        xtask::test::tests_against(&fixture(), &module, &target.to_string())
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

#[test]
fn two_callouts_run_in_parallel_and_all_waits_for_both() {
    let (a, b) = (
        slow(200, Duration::from_millis(300)),
        slow(201, Duration::from_millis(300)),
    );
    let config = r#"{"clusters": ["a", "b"], "wait": "all"}"#;
    let envoy = fanout_envoy(config, vec![("a", a), ("b", b)], vec![]);
    let _ = timed_get(&envoy, "/warm-up");
    let (response, took) = timed_get(&envoy, "/");
    eprintln!("two 300 ms callouts, wait all: {took:?}");
    assert_eq!(response.status, 200);
    let answers = response.header_str("x-answers").unwrap();
    let mut sorted: Vec<&str> = answers.split(',').collect();
    sorted.sort();
    assert_eq!(sorted, ["0:200", "1:201"], "{answers}");
    assert!(
        took >= Duration::from_millis(300),
        "{took:?}: answered before the callouts"
    );
    assert!(
        took < Duration::from_millis(550),
        "{took:?}: the callouts ran one after the other"
    );
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn first_resumes_at_the_first_answer_and_a_late_one_is_dropped() {
    let (a, b) = (
        slow(200, Duration::from_millis(100)),
        slow(201, Duration::from_millis(600)),
    );
    let config = r#"{"clusters": ["a", "b"], "wait": "first"}"#;
    let envoy = fanout_envoy(config, vec![("a", a), ("b", b)], vec![]);
    let _ = timed_get(&envoy, "/warm-up");
    std::thread::sleep(Duration::from_millis(700));
    let (response, took) = timed_get(&envoy, "/");
    eprintln!("a 100 ms and a 600 ms callout, wait first: {took:?}");
    assert_eq!(response.status, 200);
    assert_eq!(response.header_str("x-answers").unwrap(), "0:200");
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(
        took < Duration::from_millis(450),
        "{took:?}: waited for the slow one"
    );
    // The slow answer lands after the request ended: dropped, nothing traps.
    std::thread::sleep(Duration::from_millis(700));
    let (again, _) = timed_get(&envoy, "/");
    assert_eq!(again.header_str("x-answers").unwrap(), "0:200");
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn ticks_refresh_shared_data_over_http_and_grpc() {
    let grpc = GrpcServer::start();
    let policy = serve(|head| {
        assert!(head.starts_with("GET /policy "), "{head}");
        answer(200, "allow all\n")
    });
    let config = r#"{"tick_ms": 100, "policy_cluster": "policy", "health_cluster": "health"}"#;
    let envoy = fanout_envoy(
        config,
        vec![("policy", policy)],
        vec![("health", grpc.addr.clone())],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let response = loop {
        let response = envoy.get("/", &[]).unwrap();
        if response.header("x-policy").is_some() && response.header("x-health").is_some() {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "no tick answers in 5 s:\n{}",
            envoy.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(response.header_str("x-policy").unwrap(), "allow all");
    assert_eq!(
        response.header_str("x-health").unwrap(),
        "serving status 1",
        "grpc.health.v1.Health/Check answered SERVING"
    );
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn a_tick_grpc_callout_to_a_dead_server_has_a_failure_status() {
    let nobody = format!("127.0.0.1:{}", weir_tests::registry::free_port());
    let config = r#"{"tick_ms": 100, "health_cluster": "health", "timeout_ms": 500}"#;
    let envoy = fanout_envoy(config, vec![], vec![("health", nobody)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let health = loop {
        if let Some(h) = envoy.get("/", &[]).unwrap().header_str("x-health") {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "no tick answer in 5 s:\n{}",
            envoy.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("gRPC callout to a dead server: {health}");
    assert_eq!(health, "error 14", "UNAVAILABLE");
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

/// ext-authz in gRPC mode in front of an upstream echoing the request head.
fn ext_authz_grpc(grpc: &GrpcServer) -> Envoy {
    let config = r#"{"cluster": "authz", "grpc": true, "timeout_ms": 400,
                     "forward_headers": ["authorization"], "upstream_headers": ["x-user", "x-seen"]}"#;
    let mut b = bootstrap(vec![wasm_filter("ext-authz", Some(config))]);
    b.backend = Backend::Upstream(serve(|head| answer(200, head)));
    b.grpc_clusters.push(("authz".into(), grpc.addr.clone()));
    Envoy::start(&b).unwrap()
}

#[test]
fn ext_authz_over_grpc_allows_and_denies_as_the_service_says() {
    let grpc = GrpcServer::start();
    let envoy = ext_authz_grpc(&grpc);
    let allowed = envoy
        .get(
            "/orders?id=1",
            &[("authorization", b"Bearer good"), ("x-user", b"mallory")],
        )
        .unwrap();
    assert_eq!(allowed.status, 200, "{}", envoy.log_tail(20));
    let upstream = String::from_utf8_lossy(&allowed.body).into_owned();
    assert!(upstream.contains("x-user: alice\r\n"), "{upstream}");
    assert!(!upstream.contains("mallory"), "{upstream}");
    let seen = upstream
        .lines()
        .find_map(|l| l.strip_prefix("x-seen: "))
        .unwrap_or_else(|| panic!("{upstream}"));
    assert_eq!(
        seen, "GET /orders?id=1 localhost Bearer good",
        "what the service read"
    );

    let denied = envoy
        .get("/orders", &[("authorization", b"Bearer bad")])
        .unwrap();
    assert_eq!(denied.status, 401);
    assert_eq!(denied.body, b"who are you?");
    assert_eq!(envoy.stat("wasmcustom.ext_authz_allowed").unwrap(), Some(1));
    assert_eq!(envoy.stat("wasmcustom.ext_authz_denied").unwrap(), Some(1));
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn ext_authz_over_grpc_fails_closed_on_a_failure_status_and_a_timeout() {
    let grpc = GrpcServer::start();
    let envoy = ext_authz_grpc(&grpc);
    let good: &[(&str, &[u8])] = &[("authorization", b"Bearer good")];
    let down = envoy.get("/unavailable", good).unwrap();
    assert_eq!(down.status, 503);
    let start = Instant::now();
    let slow = envoy.get("/slow", good).unwrap();
    let took = start.elapsed();
    assert_eq!(slow.status, 503);
    assert!(
        took < Duration::from_millis(1200),
        "{took:?}: the 400 ms timeout did not hold"
    );
    std::thread::sleep(Duration::from_millis(300));
    let log = envoy.log_text();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authorization service failed"))
        .collect();
    eprintln!("{}", said.join("\n"));
    // Envoy appends the response-code details to the status message.
    assert!(
        said.iter()
            .any(|l| l.contains("gRPC status 14 (authz is down")),
        "the service's own status and message: {said:?}"
    );
    // Two clocks race for the slow call: Envoy's timer (Envoy 1.40 reports its own
    // timeout as UNAVAILABLE) and the server's, which sees the deadline in
    // `grpc-timeout` and may answer DEADLINE_EXCEEDED first. Either is a timeout.
    assert!(
        said.iter()
            .any(|l| l.contains("gRPC status 14 (upstream request timeout")
                || l.contains("gRPC status 4 (Deadline Exceeded")),
        "the timeout, as Envoy or the server reports it: {said:?}"
    );
    assert_eq!(envoy.stat("wasmcustom.ext_authz_failed").unwrap(), Some(2));
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}
