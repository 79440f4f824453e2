//! A filter bug in a real Envoy: the panic is logged with the filter's name, and
//! each `failure_policy` does what docs/filter-guide.md says it does.
//!
//! The module is `tests/fixtures/panicky`, which panics when a request carries
//! `x-panic` and otherwise adds `panicky: alive` to every response.

use std::time::{Duration, Instant};

use xtask::build::{self, Options};
use xtask::envoy::{Code, Envoy, FailurePolicy, HttpResponse, WasmFilter};
use xtask::project::{self, Filter};

fn panicky_module() -> std::path::PathBuf {
    let filter = Filter {
        name: "panicky".into(),
        dir: project::root().join("tests/fixtures/panicky"),
    };
    match build::build(&filter, &Options::default()) {
        Ok(built) => built.path,
        Err(e) => panic!("cannot build the panicky fixture: {e:#}"),
    }
}

fn envoy(policy: Option<FailurePolicy>) -> Envoy {
    let filter = WasmFilter {
        name: "panicky".into(),
        root_id: "panicky".into(),
        code: Code::Local(panicky_module()),
        configuration: None,
        failure_policy: policy,
    };
    Envoy::start(&weir_tests::bootstrap(vec![filter]))
        .expect("envoy starts with the panicky filter")
}

fn alive(r: &HttpResponse) -> bool {
    r.status == 200 && r.header_str("panicky").as_deref() == Some("alive")
}

/// Sends the request that triggers the bug; returns what came back, and checks
/// the panic reached Envoy's log under the filter's name.
fn trigger(envoy: &Envoy) -> Option<HttpResponse> {
    let before = envoy.get("/", &[]).expect("a request before the bug");
    assert!(
        alive(&before),
        "the filter did not run before the bug: {} {:?}",
        before.status,
        before.headers
    );
    let answer = envoy.get("/", &[("x-panic", b"1")]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = "panicky: filter panicked: panicked at";
    while !envoy.log_text().contains(line) {
        assert!(
            Instant::now() < deadline,
            "no `{line}` in Envoy's log:\n{}",
            envoy.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        envoy.log_text().contains("the bug this fixture exists for"),
        "the panic message is not in Envoy's log:\n{}",
        envoy.log_tail(30)
    );
    answer
}

#[test]
fn fail_closed_answers_503_after_a_panic_and_logs_it_with_the_filter_name() {
    let envoy = envoy(Some(FailurePolicy::FailClosed));
    if let Some(r) = trigger(&envoy) {
        assert_ne!(
            r.status, 200,
            "the request that panicked the VM was answered 200"
        );
    }
    for _ in 0..3 {
        let r = envoy.get("/", &[]).expect("a request after the bug");
        assert_eq!(
            r.status, 503,
            "FAIL_CLOSED let a request through a failed VM: {:?}",
            r.headers
        );
    }
}

#[test]
fn fail_open_bypasses_the_failed_filter() {
    let envoy = envoy(Some(FailurePolicy::FailOpen));
    trigger(&envoy);
    for _ in 0..3 {
        let r = envoy.get("/", &[]).expect("a request after the bug");
        assert_eq!(r.status, 200, "FAIL_OPEN did not let the request through");
        assert_eq!(r.header("panicky"), None, "the failed filter still ran");
    }
}

#[test]
fn fail_reload_brings_the_filter_back() {
    let envoy = envoy(Some(FailurePolicy::FailReload));
    trigger(&envoy);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let mut answers = Vec::new();
    loop {
        let r = envoy.get("/", &[]).expect("a request after the bug");
        if alive(&r) {
            break;
        }
        answers.push(r.status);
        assert!(
            Instant::now() < deadline,
            "the VM never came back; answers meanwhile: {answers:?}\n{}",
            envoy.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "FAIL_RELOAD: filter back after {:?}; answers meanwhile: {answers:?}",
        started.elapsed()
    );
    let reloads = envoy
        .stat("wasm.panicky.vm_reload_success")
        .expect("admin stats");
    assert!(
        reloads.unwrap_or(0) >= 1,
        "Envoy counted no VM reload: {reloads:?}"
    );
}
