//! ext-authz in gRPC mode, natively (and through its module with `WEIR_TEST_MODULE`):
//! the `CheckRequest` it sends, field by field as Envoy's protos number them, and what
//! it does with a `CheckResponse`, a gRPC failure and a timeout.

use std::collections::HashMap;

use ext_authz::ExtAuthz;
use weir::proto::{fields, Writer};
use weir::testing::{Call, TestFilter, TestRequest, TestResponse};

const CONFIG: &str = r#"{"cluster": "authz-grpc", "grpc": true, "timeout_ms": 300,
    "forward_headers": ["authorization", "cookie"], "upstream_headers": ["x-user"]}"#;

/// What the service reads from a `CheckRequest`: attributes(1).request(4).http(2).
#[derive(Debug, Default)]
struct Seen {
    method: String,
    path: String,
    host: String,
    headers: HashMap<String, String>,
}

fn text(f: &weir::proto::Field<'_>) -> String {
    f.as_str().expect("UTF-8 string field").to_owned()
}

fn seen(call: &Call) -> Seen {
    let one = |bytes: &[u8], n: u32| {
        fields(bytes)
            .map(|f| f.expect("well-formed"))
            .find(|f| f.number == n)
            .and_then(|f| f.as_bytes())
            .unwrap_or_else(|| panic!("field {n} missing"))
            .to_vec()
    };
    let http = one(&one(&one(call.body(), 1), 4), 2);
    let mut seen = Seen::default();
    for f in fields(&http).map(|f| f.expect("well-formed")) {
        match f.number {
            2 => seen.method = text(&f),
            3 => {
                let entry: Vec<_> = f.as_message().unwrap().map(|f| f.unwrap()).collect();
                seen.headers.insert(text(&entry[0]), text(&entry[1]));
            }
            4 => seen.path = text(&f),
            5 => seen.host = text(&f),
            _ => {}
        }
    }
    seen
}

/// `CheckResponse { status { code }, denied_response | ok_response }`.
fn allow(user: &str) -> TestResponse {
    TestResponse::grpc(
        Writer::new()
            .message(1, |s| s.uint(1, 0))
            .message(3, |ok| {
                ok.message(2, |o| {
                    o.message(1, |h| h.string(1, "x-user").string(2, user))
                })
            })
            .into_bytes(),
    )
}

fn deny(status: Option<u64>, body: &str) -> TestResponse {
    TestResponse::grpc(
        Writer::new()
            .message(1, |s| s.uint(1, 7).string(2, "no"))
            .message(2, |d| {
                let d = match status {
                    Some(code) => d.message(1, |s| s.uint(1, code)),
                    None => d,
                };
                d.string(3, body)
            })
            .into_bytes(),
    )
}

fn service() -> TestFilter<ExtAuthz> {
    let mut f = TestFilter::<ExtAuthz>::configure(CONFIG).unwrap();
    f.answer_callouts(|call| {
        assert_eq!(
            call.grpc(),
            Some(("envoy.service.auth.v3.Authorization", "Check"))
        );
        match seen(call).headers.get("authorization").map(String::as_str) {
            Some("Bearer good") => Some(allow("alice")),
            Some("Bearer slow") => None,
            Some("Bearer broken") => Some(TestResponse::grpc_error(14, "authz is down")),
            Some("Bearer garbled") => Some(TestResponse::grpc(b"\x0a\x09short".to_vec())),
            Some("Bearer quiet") => Some(deny(None, "")),
            _ => Some(deny(Some(401), "who are you?")),
        }
    });
    f
}

#[test]
fn the_check_request_carries_method_path_host_and_headers() {
    let mut f = service();
    let ex = f.send(
        TestRequest::new("POST", "//orders/./1?id=2")
            .header(":authority", "shop.example")
            .header("authorization", "Bearer good")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-user", "mallory"),
    );
    assert_eq!(ex.status(), 200);
    let call = &ex.callouts()[0];
    assert_eq!(call.upstream(), "authz-grpc");
    assert_eq!(call.timeout().as_millis(), 300);
    let seen = seen(call);
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path, "/orders/1?id=2",
        "the canonical path, the query as sent"
    );
    assert_eq!(seen.host, "shop.example");
    assert_eq!(seen.headers["authorization"], "Bearer good");
    assert_eq!(
        seen.headers["cookie"], "a=1,b=2",
        "copies joined, as Envoy does"
    );
    assert_eq!(seen.headers[":method"], "POST");
    assert_eq!(seen.headers[":path"], "/orders/1?id=2");
    assert_eq!(
        ex.upstream_header("x-user").unwrap(),
        "alice",
        "the service's, not the client's"
    );
    assert_eq!(f.metric("ext_authz_allowed"), Some(1));
}

#[test]
fn a_denial_answers_with_the_services_status_and_body() {
    let mut f = service();
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer bad"));
    assert_eq!(ex.status(), 401);
    assert_eq!(ex.reply_body(), Some(&b"who are you?"[..]));
    assert_eq!(ex.reply_details(), Some("ext_authz_denied"));
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer quiet"));
    assert_eq!(ex.status(), 403, "no denied status: deny_status");
    assert_eq!(f.metric("ext_authz_denied"), Some(2));
}

#[test]
fn a_grpc_failure_a_timeout_or_a_garbled_answer_fail_closed() {
    let mut f = service();
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer broken"));
    assert_eq!(ex.status(), 503);
    assert!(
        ex.logged("gRPC status 14 (authz is down)"),
        "{:?}",
        ex.logs()
    );
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer slow"));
    assert_eq!(ex.status(), 503);
    assert!(
        ex.logged("gRPC status 14 (upstream request timeout"),
        "{:?}",
        ex.logs()
    );
    let ex = f.send(TestRequest::get("/").header("authorization", "Bearer garbled"));
    assert_eq!(ex.status(), 503);
    assert!(ex.logged("CheckResponse is malformed"), "{:?}", ex.logs());
    assert_eq!(f.metric("ext_authz_failed"), Some(3));
}

#[test]
fn fail_open_lets_the_request_through_without_the_clients_user() {
    let config = CONFIG.replace("\"grpc\": true", "\"grpc\": true, \"fail_open\": true");
    let mut f = TestFilter::<ExtAuthz>::configure(&config).unwrap();
    f.answer_callouts(|_| Some(TestResponse::grpc_error(14, "down")));
    let ex = f.send(TestRequest::get("/").header("x-user", "mallory"));
    assert!(ex.forwarded());
    assert_eq!(ex.upstream_header("x-user"), None);
}

#[test]
fn a_path_prefix_makes_no_sense_over_grpc() {
    let config = CONFIG.replace(
        "\"grpc\": true",
        "\"grpc\": true, \"path_prefix\": \"/check\"",
    );
    let err = TestFilter::<ExtAuthz>::configure(&config).err().unwrap();
    assert!(err.to_string().contains("path_prefix"), "{err}");
}
