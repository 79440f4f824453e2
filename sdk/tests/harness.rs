//! Every SDK capability through the native harness, with a filter that uses them all.

use std::time::Duration;

use weir::metrics::{Counter, Gauge, Histogram};
use weir::testing::{TestFilter, TestRequest, TestResponse};
use weir::{
    Action, Callback, Callout, CalloutResponse, HttpFilter, LocalReply, Log, Request, Response,
    Tick,
};

static REQUESTS: Counter = Counter::new("harness_requests");
static IN_FLIGHT: Gauge = Gauge::new("harness_in_flight");
static BODY_BYTES: Histogram = Histogram::new("harness_body_bytes");

#[derive(serde::Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    tick_ms: u64,
}

/// What the test filter does is chosen by `mode` (and by request headers).
#[derive(Default)]
struct Everything {
    started: bool,
}

#[weir::filter]
impl HttpFilter for Everything {
    type Config = Config;
    const METRICS: &'static [&'static weir::metrics::Metric] =
        &[REQUESTS.metric(), IN_FLIGHT.metric()];
    const BODY_LIMIT: usize = 16;
    // Whole bodies (the tests below check buffering, its limit, and bodies ending at trailers).
    const BODY_MODE: weir::BodyMode = weir::BodyMode::Buffer;

    fn tick_period(config: &Config) -> Option<Duration> {
        (config.tick_ms > 0).then(|| Duration::from_millis(config.tick_ms))
    }

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        REQUESTS.inc();
        IN_FLIGHT.add(1);
        self.started = true;
        let p = cx.properties();
        let facts = format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            p.raw_path().and_then(|v| v.to_str().map(str::to_owned)),
            p.method().and_then(|v| v.to_str().map(str::to_owned)),
            p.raw_authority()
                .and_then(|v| v.to_str().map(str::to_owned)),
            p.scheme().and_then(|v| v.to_str().map(str::to_owned)),
            p.source_address(),
            p.route_name().and_then(|v| v.to_str().map(str::to_owned)),
            p.plugin_name().is_some(),
            p.root_id().is_some(),
        );
        weir::log::log(weir::log::Level::Info, &facts);
        match cx.config().mode.as_str() {
            "grpc-deny" => cx.reply(
                LocalReply::new(200)
                    .grpc_status(7)
                    .body("no")
                    .details("denied by test"),
            ),
            "callout" => {
                let token = cx
                    .headers()
                    .get("x-token")
                    .map(|v| v.into_bytes())
                    .unwrap_or_default();
                let token = String::from_utf8(token).map_err(|_| "x-token is not UTF-8")?;
                cx.callout(
                    Callout::get("auth", "/check")
                        .header("x-token", token)
                        .timeout(Duration::from_millis(50)),
                )
            }
            "shared" => {
                let n = weir::shared::get("hits").map_or(0, |e| e.value.len());
                weir::shared::set("hits", &vec![b'x'; n + 1], None)?;
                Ok(Action::Continue)
            }
            "fail" => Err(weir::Error::from("configured to fail")),
            _ => Ok(Action::Continue),
        }
    }

    fn on_request_body(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        let body = cx.body().read();
        BODY_BYTES.record(body.len() as u64);
        let upper = body.to_ascii_uppercase();
        cx.body().replace(&upper)?;
        Ok(Action::Continue)
    }

    fn on_request_trailers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        cx.trailers().set("x-trailer-seen", "yes")?;
        Ok(Action::Continue)
    }

    fn on_response_headers(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
        let config = cx.config();
        cx.headers().set("x-mode", config.mode.as_str())?;
        Ok(Action::Continue)
    }

    fn on_response_body(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
        let mut body = cx.body().read();
        body.extend_from_slice(b"!");
        cx.body().replace(&body)?;
        Ok(Action::Continue)
    }

    fn on_response_trailers(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
        let status = cx
            .trailers()
            .get("grpc-status")
            .map(|v| v.into_bytes())
            .unwrap_or_default();
        cx.trailers().set("x-grpc-status-was", status)?;
        Ok(Action::Continue)
    }

    fn on_callout_response(
        &mut self,
        cx: &mut Callback<'_, Config>,
        response: CalloutResponse,
    ) -> weir::Result {
        match response.status() {
            Some(200) => {
                let user = response
                    .header("x-user")
                    .map(|v| v.into_bytes())
                    .unwrap_or_default();
                cx.request_headers().set("x-user", user)?;
                Ok(Action::Continue)
            }
            // Envoy answers a callout that timed out with 504 itself.
            Some(504) | None => cx.reply(LocalReply::new(503).body("auth timed out")),
            Some(_) => cx.reply(LocalReply::new(403).body(response.body().to_vec())),
        }
    }

    fn on_log(&mut self, cx: &mut Log<'_, Config>) {
        if self.started {
            IN_FLIGHT.add(-1);
        }
        let code = cx
            .properties()
            .get(&["response", "code"])
            .map(|v| v.into_bytes())
            .unwrap_or_default();
        weir::log::log(
            weir::log::Level::Debug,
            &format!("done {}", String::from_utf8_lossy(&code)),
        );
    }

    fn on_tick(cx: &mut Tick<'_, Config>) {
        weir::log::log(
            weir::log::Level::Info,
            &format!("tick in mode {}", cx.config().mode),
        );
    }
}

fn filter(mode: &str) -> TestFilter<Everything> {
    TestFilter::configure(&format!(r#"{{"mode": "{mode}"}}"#)).unwrap()
}

#[test]
fn hooks_bitmask_lists_what_the_impl_defines() {
    use weir::hooks::*;
    assert_eq!(
        Everything::HOOKS,
        REQUEST_HEADERS
            | REQUEST_BODY
            | REQUEST_TRAILERS
            | RESPONSE_HEADERS
            | RESPONSE_BODY
            | RESPONSE_TRAILERS
            | LOG
            | HTTP_CALL_RESPONSE
            | TICK
    );
}

#[test]
fn properties_come_from_the_request() {
    let mut f = filter("plain");
    let ex = f.send(
        TestRequest::get("/p?q=1")
            .header(":authority", "svc.local:8080")
            .source("10.1.2.3:5555")
            .route("r1"),
    );
    assert!(
        ex.logged(r#"Some("/p?q=1") Some("GET") Some("svc.local:8080") Some("http") Some(10.1.2.3:5555) Some("r1") true true"#),
        "{:?}",
        ex.logs()
    );
    assert!(
        ex.logged("done 200"),
        "on_log ran with response.code: {:?}",
        ex.logs()
    );
}

#[test]
fn grpc_local_reply_carries_status_and_details() {
    let ex = filter("grpc-deny")
        .send(TestRequest::new("POST", "/pkg.Svc/Call").header("content-type", "application/grpc"));
    assert!(!ex.forwarded());
    assert_eq!(ex.reply_grpc_status(), Some(7));
    assert_eq!(ex.reply_body(), Some(&b"no"[..]));
    assert_eq!(ex.reply_details(), Some("denied_by_test"));
    assert_eq!(ex.request_action(), Action::Pause);
}

#[test]
fn hook_errors_are_logged_with_the_filter_name_and_fail_open() {
    let ex = filter("fail").send(TestRequest::get("/"));
    assert!(ex.forwarded());
    assert!(
        ex.logs().iter().any(|(l, m)| *l == weir::log::Level::Warn
            && *m == "weir-sdk: on_request_headers: configured to fail"),
        "{:?}",
        ex.logs()
    );
}

#[test]
fn bodies_are_buffered_read_and_replaced() {
    let mut f = filter("plain");
    let ex = f.send(
        TestRequest::new("POST", "/")
            .body("hello")
            .respond_with(TestResponse::new(200).body("world")),
    );
    assert_eq!(ex.upstream_body(), b"HELLO");
    assert_eq!(ex.response_body(), b"world!");
    assert_eq!(f.histogram("harness_body_bytes"), vec![5]);
}

#[test]
fn request_body_over_the_limit_is_answered_413() {
    let ex = filter("plain").send(TestRequest::new("POST", "/").body(vec![b'a'; 17]));
    assert_eq!(ex.status(), 413);
    assert_eq!(ex.reply_details(), Some("weir_body_limit"));
}

#[test]
fn response_body_over_the_limit_passes_unread() {
    let ex = filter("plain")
        .send(TestRequest::get("/").respond_with(TestResponse::new(200).body(vec![b'a'; 17])));
    assert_eq!(ex.response_body(), &[b'a'; 17][..]);
    assert!(ex.logged("body over 16 bytes passes unread"));
}

#[test]
fn trailers_are_read_and_written_and_end_a_buffered_body() {
    let ex = filter("plain").send(
        TestRequest::new("POST", "/")
            .body("abc")
            .trailer("x-req", "1")
            .respond_with(TestResponse::new(200).body("r").trailer("grpc-status", "0")),
    );
    assert_eq!(
        ex.upstream_body(),
        b"ABC",
        "the body hook ran at the trailers"
    );
    assert_eq!(ex.upstream_trailer("x-trailer-seen").unwrap(), "yes");
    assert_eq!(ex.response_body(), b"r!");
    assert_eq!(ex.response_trailer("x-grpc-status-was").unwrap(), "0");
}

#[test]
fn callout_answered_200_resumes_with_its_header() {
    let mut f = filter("callout");
    f.answer_callouts(|call| {
        assert_eq!(call.upstream(), "auth");
        assert_eq!(call.path(), "/check");
        assert_eq!(call.timeout(), Duration::from_millis(50));
        (call.header("x-token") == Some("good"))
            .then(|| TestResponse::new(200).header("x-user", "alice"))
    });
    let ex = f.send(TestRequest::get("/").header("x-token", "good"));
    assert_eq!(ex.request_action(), Action::Pause);
    assert_eq!(ex.callouts().len(), 1);
    assert!(ex.forwarded());
    assert_eq!(ex.upstream_header("x-user").unwrap(), "alice");
    assert_eq!(ex.status(), 200);
}

#[test]
fn callout_answered_403_rejects_and_timeout_answers_503() {
    let mut f = filter("callout");
    f.answer_callouts(|call| match call.header("x-token") {
        Some("slow") => None,
        _ => Some(TestResponse::new(403).body("bad token")),
    });
    let ex = f.send(TestRequest::get("/").header("x-token", "bad"));
    assert_eq!(
        (ex.status(), ex.reply_body()),
        (403, Some(&b"bad token"[..]))
    );
    assert!(!ex.forwarded());
    let ex = f.send(TestRequest::get("/").header("x-token", "slow"));
    assert_eq!(
        (ex.status(), ex.reply_body()),
        (503, Some(&b"auth timed out"[..]))
    );
}

#[test]
fn refused_callout_and_non_utf8_token_fail_open_with_a_log() {
    let mut f = filter("callout");
    f.refuse_callouts();
    let ex = f.send(TestRequest::get("/").header("x-token", "t"));
    assert!(ex.forwarded());
    assert!(
        ex.logged("the proxy refused a callout to cluster `auth`"),
        "{:?}",
        ex.logs()
    );
    let ex = f.send(TestRequest::get("/").header("x-token", b"\xff"));
    assert!(ex.forwarded());
    assert!(ex.logged("x-token is not UTF-8"));
}

#[test]
fn metrics_are_defined_at_configure_and_recorded_by_handle() {
    let mut f = filter("plain");
    assert_eq!(
        f.metric("harness_requests"),
        Some(0),
        "defined before any request"
    );
    f.send(TestRequest::get("/"));
    f.send(TestRequest::get("/"));
    assert_eq!(f.metric("harness_requests"), Some(2));
    assert_eq!(
        f.metric("harness_in_flight"),
        Some(0),
        "on_log brought the gauge back down"
    );
    assert_eq!(f.metric("never_defined"), None);
}

#[test]
fn shared_data_outlives_requests() {
    let mut f = filter("shared");
    f.send(TestRequest::get("/"));
    f.send(TestRequest::get("/"));
    assert_eq!(f.shared("hits").as_deref(), Some(&b"xx"[..]));
    f.set_shared("hits", b"");
    f.send(TestRequest::get("/"));
    assert_eq!(f.shared("hits").as_deref(), Some(&b"x"[..]));
}

#[test]
fn shared_data_versions_refuse_stale_writes() {
    let _f = filter("plain");
    weir::shared::set("k", b"1", None).unwrap();
    let e = weir::shared::get("k").unwrap();
    weir::shared::set("k", b"2", Some(e.version)).unwrap();
    assert_eq!(
        weir::shared::set("k", b"3", Some(e.version)),
        Err(weir::shared::SharedError::Conflict)
    );
    assert_eq!(weir::shared::get("k").unwrap().value, b"2");
}

#[test]
fn ticks_run_at_the_configured_period() {
    let mut f = TestFilter::<Everything>::configure(r#"{"mode": "t", "tick_ms": 250}"#).unwrap();
    assert_eq!(f.tick_period(), Some(Duration::from_millis(250)));
    let logs = f.tick();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].1, "tick in mode t");
    assert_eq!(filter("plain").tick_period(), None);
}

#[test]
fn rules_pick_a_configuration_per_route_host_and_path() {
    let mut f = TestFilter::<Everything>::configure(
        r#"{"mode": "global", "_rules_": [
            {"_match_route_": ["admin"], "mode": "route"},
            {"_match_domain_": ["*.corp.test"], "mode": "domain"},
            {"_match_path_prefix_": ["/api/"], "mode": "path"}
        ]}"#,
    )
    .unwrap();
    let mode = |ex: weir::testing::Exchange| {
        ex.response_header("x-mode")
            .map(|v| v.to_str().unwrap_or("").to_owned())
    };
    assert_eq!(
        mode(f.send(TestRequest::get("/").route("admin"))).as_deref(),
        Some("route")
    );
    assert_eq!(
        mode(f.send(TestRequest::get("/").header(":authority", "a.corp.test:80"))).as_deref(),
        Some("domain")
    );
    assert_eq!(
        mode(f.send(TestRequest::get("/api/v1"))).as_deref(),
        Some("path")
    );
    assert_eq!(
        mode(f.send(TestRequest::get("/other"))).as_deref(),
        Some("global")
    );
}

#[test]
fn rules_only_configuration_skips_unmatched_requests() {
    let mut f = TestFilter::<Everything>::configure(
        r#"{"_rules_": [{"_match_path_prefix_": ["/x"], "mode": "x"}]}"#,
    )
    .unwrap();
    let ex = f.send(TestRequest::get("/y"));
    assert!(ex.forwarded());
    assert_eq!(ex.response_header("x-mode"), None);
    assert_eq!(f.metric("harness_requests"), Some(0));
    assert_eq!(
        f.send(TestRequest::get("/x"))
            .response_header("x-mode")
            .unwrap(),
        "x"
    );
}

#[test]
fn reconfigure_replaces_the_configuration() {
    let mut f = filter("one");
    assert_eq!(
        f.send(TestRequest::get("/"))
            .response_header("x-mode")
            .unwrap(),
        "one"
    );
    f.reconfigure(r#"{"mode": "two"}"#).unwrap();
    assert_eq!(
        f.send(TestRequest::get("/"))
            .response_header("x-mode")
            .unwrap(),
        "two"
    );
    assert!(f.reconfigure(r#"{"mode": 2}"#).is_err());
    assert_eq!(
        f.send(TestRequest::get("/"))
            .response_header("x-mode")
            .unwrap(),
        "two",
        "a refused update keeps the old one"
    );
}

/// A filter whose only hook is on the response: a callout from it is refused,
/// since without `on_callout_response` its answer would be stripped away.
#[derive(Default)]
struct NoCallback;

#[weir::filter]
#[allow(clippy::needless_lifetimes)] // another attribute after ours still works
impl HttpFilter for NoCallback {
    type Config = ();
    fn default_config() -> Option<()> {
        Some(())
    }
    fn on_response_headers(&mut self, cx: &mut Response<'_, ()>) -> weir::Result {
        cx.callout(Callout::get("auth", "/"))
    }
}

#[test]
fn callout_without_a_callback_hook_is_an_error_not_a_hang() {
    assert_eq!(NoCallback::HOOKS, weir::hooks::RESPONSE_HEADERS);
    let ex = TestFilter::<NoCallback>::configure("")
        .unwrap()
        .send(TestRequest::get("/"));
    assert_eq!(ex.status(), 200);
    assert!(ex.callouts().is_empty());
    assert!(ex.logged("a callout needs an `on_callout_response` hook"));
}

#[test]
fn the_clock_is_the_hosts_and_tests_move_it() {
    let mut f = filter("plain");
    let t0 = weir::clock::now();
    assert!(t0 > std::time::SystemTime::UNIX_EPOCH);
    f.advance(Duration::from_secs(90));
    assert_eq!(
        weir::clock::now().duration_since(t0).unwrap(),
        Duration::from_secs(90)
    );
}
