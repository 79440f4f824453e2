//! ext-authz, natively: allow, deny, timeout, refused callouts, fail-open, metrics, hostile bytes.

use std::time::Duration;

use ext_authz::ExtAuthz;
use weir::testing::{TestFilter, TestRequest, TestResponse};

const EXAMPLE: &str = include_str!("../config.example.json");

/// The example configuration in front of a service that knows one token.
fn example() -> TestFilter<ExtAuthz> {
    let mut f = TestFilter::<ExtAuthz>::configure(EXAMPLE).unwrap();
    f.answer_callouts(|call| match call.header("authorization") {
        Some("Bearer good") => Some(TestResponse::new(200).header("x-user", "alice")),
        Some("Bearer slow") => None,
        Some("Bearer broken") => Some(TestResponse::new(500).body("oops")),
        _ => Some(TestResponse::new(401).body("who are you?")),
    });
    f
}

#[test]
fn allowed_requests_go_upstream_with_the_user() {
    let mut f = example();
    let ex = f.send(
        TestRequest::get("/orders?id=1")
            .header("authorization", "Bearer good")
            .header("x-user", "mallory"),
    );
    assert_eq!(ex.status(), 200);
    assert!(ex.forwarded());
    assert_eq!(
        ex.upstream_header("x-user").unwrap(),
        "alice",
        "the service's x-user replaces the client's"
    );
    let call = &ex.callouts()[0];
    assert_eq!(call.upstream(), "ext-authz");
    assert_eq!(call.path(), "/check/orders?id=1");
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.header("x-forwarded-host"), Some("example.com"));
    assert_eq!(call.timeout(), Duration::from_millis(200));
    assert_eq!(f.metric("ext_authz_allowed"), Some(1));
}

#[test]
fn denied_requests_get_403_with_the_service_body() {
    let mut f = example();
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer bad"));
    assert_eq!(ex.status(), 403);
    assert_eq!(ex.reply_body(), Some(&b"who are you?"[..]));
    assert_eq!(ex.reply_details(), Some("ext_authz_denied"));
    assert!(!ex.forwarded());
    assert!(
        f.send(TestRequest::get("/")).replied_locally(),
        "no credentials: the service says 401"
    );
    assert_eq!(f.metric("ext_authz_denied"), Some(2));
}

#[test]
fn timeouts_fail_closed_with_503() {
    let mut f = example();
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer slow"));
    assert_eq!(ex.status(), 503);
    assert_eq!(ex.reply_details(), Some("ext_authz_error"));
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer broken"));
    assert_eq!(
        ex.status(),
        503,
        "a 5xx from the service is a failure, not a denial"
    );
    assert_eq!(f.metric("ext_authz_failed"), Some(2));
    assert_eq!(f.metric("ext_authz_denied"), Some(0));
}

#[test]
fn fail_open_lets_requests_through_without_client_set_identity() {
    let mut f = TestFilter::<ExtAuthz>::configure(
        r#"{"cluster": "ext-authz", "fail_open": true, "upstream_headers": ["x-user"]}"#,
    )
    .unwrap();
    f.answer_callouts(|_| None);
    let ex = f.send(TestRequest::get("/").header("x-user", "mallory"));
    assert!(ex.forwarded());
    assert_eq!(ex.upstream_header("x-user"), None);
}

#[test]
fn a_refused_callout_is_a_failure_not_a_pass() {
    let mut f = TestFilter::<ExtAuthz>::configure(r#"{"cluster": "missing"}"#).unwrap();
    f.refuse_callouts();
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer good"));
    assert_eq!(ex.status(), 503);
    assert!(
        ex.logged("ext-authz: the proxy refused a callout to cluster `missing`"),
        "{:?}",
        ex.logs()
    );
}

#[test]
fn custom_statuses_and_post_method() {
    let mut f = TestFilter::<ExtAuthz>::configure(
        r#"{"cluster": "a", "deny_status": 401, "failure_status": 500, "forward_headers": ["x-key"]}"#,
    )
    .unwrap();
    f.answer_callouts(|call| match call.header("x-key") {
        Some("k") => Some(TestResponse::new(204)),
        Some(_) => Some(TestResponse::new(403)),
        None => None,
    });
    let ex = f.send(
        TestRequest::new("POST", "/p")
            .header("x-key", "k")
            .body("data"),
    );
    assert!(ex.forwarded());
    assert_eq!(ex.upstream_body(), b"data");
    assert_eq!(ex.callouts()[0].header(":method"), Some("POST"));
    assert_eq!(
        f.send(TestRequest::get("/").header("x-key", "no")).status(),
        401
    );
    assert_eq!(f.send(TestRequest::get("/")).status(), 500);
}

#[test]
fn high_bytes_are_refused_not_dropped_and_never_trap() {
    let mut f = example();
    let hostile: Vec<u8> = (0x80..=0xFF).collect();
    let ex = f.send(
        TestRequest::get("/")
            .header("authorization", &hostile)
            .header("x-other", &hostile),
    );
    assert_eq!(
        ex.status(),
        400,
        "a credential that cannot be sent is refused"
    );
    assert_eq!(ex.reply_details(), Some("ext_authz_header_not_text"));
    assert!(ex.callouts().is_empty());
    let ex = f.send(
        TestRequest::get("/")
            .header("authorization", "Bearer good")
            .header("authorization", b"\xff"),
    );
    assert_eq!(ex.status(), 400, "a second copy counts too");
    let ex = f.send(
        TestRequest::get("/")
            .header("authorization", "Bearer good")
            .header("x-other", b"\xff"),
    );
    assert_eq!(ex.status(), 200, "headers not forwarded are not judged");
    let ex = f.send(
        TestRequest::get("/")
            .header(":path", b"/a\xff?q=\xfe")
            .header("authorization", "Bearer good"),
    );
    assert_eq!(
        ex.callouts()[0].path(),
        "/check/a%FF?q=%FE",
        "the service sees the path's every byte"
    );
    assert!(ex.forwarded());
}

#[test]
fn every_copy_of_a_forwarded_header_is_sent() {
    let mut f = TestFilter::<ExtAuthz>::configure(
        r#"{"cluster": "auth", "forward_headers": ["x-api-key"]}"#,
    )
    .unwrap();
    f.answer_callouts(|call| {
        let keys = call.header_all("x-api-key");
        Some(TestResponse::new(
            if !keys.is_empty() && keys.iter().all(|k| *k == "good") {
                200
            } else {
                403
            },
        ))
    });
    let ex = f.send(
        TestRequest::get("/")
            .header("x-api-key", "good")
            .header("x-api-key", "evil"),
    );
    assert_eq!(ex.callouts()[0].header_all("x-api-key"), ["good", "evil"]);
    assert_eq!(ex.status(), 403);
    assert!(f
        .send(
            TestRequest::get("/")
                .header("x-api-key", "good")
                .header("x-api-key", "good")
        )
        .forwarded());
    let mut f = TestFilter::<ExtAuthz>::configure(
        r#"{"cluster": "auth", "forward_headers": ["x-api-key"], "repeated_headers": "deny"}"#,
    )
    .unwrap();
    f.answer_callouts(|_| Some(TestResponse::new(200)));
    let ex = f.send(
        TestRequest::get("/")
            .header("x-api-key", "good")
            .header("x-api-key", "good"),
    );
    assert_eq!(
        (ex.status(), ex.reply_details()),
        (400, Some("ext_authz_header_repeated"))
    );
    assert!(ex.callouts().is_empty());
    assert!(f
        .send(TestRequest::get("/").header("x-api-key", "good"))
        .forwarded());
}

#[test]
fn the_service_is_asked_about_the_canonical_path() {
    let mut f = example();
    for (path, asked) in [
        ("//orders/./1", "/check/orders/1"),
        ("/x/../%61dmin?a=/../b", "/check/admin?a=/../b"),
        ("/orders;jsessionid=1", "/check/orders"),
    ] {
        let ex = f.send(TestRequest::get(path).header("authorization", "Bearer good"));
        assert_eq!(ex.callouts()[0].path(), asked, "{path}");
    }
    for path in ["/a%2fb", "/a\\b", "/%zz"] {
        let ex = f.send(TestRequest::get(path).header("authorization", "Bearer good"));
        assert_eq!(ex.status(), 400, "{path}");
        assert!(ex.callouts().is_empty(), "{path}");
    }
}

#[test]
fn bad_configurations_name_the_field() {
    let cases = [
        (r#"{}"#, "missing field `cluster`"),
        (
            r#"{"cluster": ""}"#,
            "field `cluster`: name the authorization service",
        ),
        (r#"{"cluster": "a", "timeout_ms": 0}"#, "field `timeout_ms`"),
        (
            r#"{"cluster": "a", "failure_status": 1000}"#,
            "field `failure_status`",
        ),
        (
            r#"{"cluster": "a", "forward_headers": ["Authorization"]}"#,
            "field `forward_headers[0]`: header name has uppercase",
        ),
    ];
    for (json, expected) in cases {
        let err = TestFilter::<ExtAuthz>::configure(json)
            .err()
            .unwrap_or_else(|| panic!("{json} was accepted"));
        assert!(err.to_string().contains(expected), "{json}: got {err}");
    }
}
