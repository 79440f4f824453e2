//! Nothing a request or a configuration holds makes the SDK panic: arbitrary
//! bytes through header reads and writes, configuration parsing and rule matching.

use proptest::prelude::*;
use weir::testing::{TestFilter, TestRequest, TestResponse};
use weir::{Action, HttpFilter, Request, Response};

#[derive(serde::Deserialize)]
struct Config {
    name: weir::HeaderName,
    #[serde(default)]
    copy: Vec<String>,
}

/// Reads, iterates and writes headers using whatever the request sent.
#[derive(Default)]
struct Echo;

#[weir::filter]
impl HttpFilter for Echo {
    type Config = Config;

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        let pairs: Vec<_> = cx.headers().iter().collect();
        for (name, value) in &pairs {
            let _ = value.to_str();
            let _ = cx.headers().get(name);
            // Any name/value from the wire: legal ones are set, illegal ones are Err.
            let _ = cx.headers().set(format!("x-echo-{name}"), value.as_bytes());
            let _ = cx.headers().add(name.as_str(), value.as_bytes());
        }
        let config = cx.config();
        for name in &config.copy {
            if let Some(v) = cx.headers().get(name) {
                let _ = cx.headers().set(&config.name, v.as_bytes());
            }
        }
        let _ = cx.properties().source_address();
        let _ = cx.properties().path().map(|p| p.to_str().map(str::len));
        Ok(Action::Continue)
    }

    fn on_response_headers(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
        let status = cx.headers().get(":status");
        cx.headers().set(
            "x-status",
            status.map(|s| s.into_bytes()).unwrap_or_default(),
        )?;
        Ok(Action::Continue)
    }
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,12}",
        proptest::collection::vec(any::<u8>(), 0..12)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// 256 cases per property in `cargo xtask test`; a long run sets `PROPTEST_CASES`
/// (`PROPTEST_CASES=100000 cargo test --release -p weir --test never_traps`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_header_bytes_pass_through(
        headers in proptest::collection::vec((header_name(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
        path in proptest::collection::vec(any::<u8>(), 0..30),
        source in proptest::collection::vec(any::<u8>(), 0..30),
    ) {
        let mut filter = TestFilter::<Echo>::configure(r#"{"name": "x-copied", "copy": ["x-a", "x-b"]}"#).unwrap();
        let mut request = TestRequest::get("/").header(":path", &path).source(&String::from_utf8_lossy(&source));
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let ex = filter.send(request.respond_with(TestResponse::new(200).header("x-bin", b"\xff\x80")));
        prop_assert!(ex.forwarded());
        prop_assert_eq!(ex.status(), 200);
    }

    #[test]
    fn any_configuration_text_is_accepted_or_refused(json in "\\PC{0,80}") {
        let _ = TestFilter::<Echo>::configure(&json);
    }

    #[test]
    fn configuration_shaped_text_with_rules_is_accepted_or_refused(
        parts in proptest::collection::vec(prop_oneof![
            Just("{".to_owned()), Just("}".to_owned()), Just("[".to_owned()), Just("]".to_owned()),
            Just(",".to_owned()), Just(":".to_owned()), Just("\"_rules_\"".to_owned()),
            Just("\"_match_route_\"".to_owned()), Just("\"_match_domain_\"".to_owned()),
            Just("\"_match_path_prefix_\"".to_owned()), Just("\"name\"".to_owned()),
            Just("\"x-a\"".to_owned()), Just("\"copy\"".to_owned()), Just("1".to_owned()),
            Just("null".to_owned()), "\"\\PC{0,6}\"",
        ], 0..24),
    ) {
        let json = parts.concat();
        let _ = TestFilter::<Echo>::configure(&json);
    }

    #[test]
    fn rule_matching_takes_any_request(
        route in proptest::collection::vec(any::<u8>(), 0..12),
        host in proptest::collection::vec(any::<u8>(), 0..24),
        path in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let mut filter = TestFilter::<Echo>::configure(r#"{"name": "x-g", "_rules_": [
            {"_match_route_": ["r"], "name": "x-r"},
            {"_match_domain_": ["*.a.test", "b.test", "*"], "_match_path_prefix_": ["/p"], "name": "x-d"}
        ]}"#).unwrap();
        let ex = filter.send(
            TestRequest::get("/")
                .route(&String::from_utf8_lossy(&route))
                .header(":authority", &host)
                .header(":path", &path),
        );
        // A path the rules cannot judge is refused with 400, never guessed.
        if weir::path::canonicalize(&path).is_ok() {
            prop_assert!(ex.forwarded());
        } else {
            prop_assert_eq!(ex.status(), 400);
            prop_assert!(!ex.forwarded());
        }
    }
}
