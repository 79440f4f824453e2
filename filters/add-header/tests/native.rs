//! add-header, natively: configuration handling and the header it sets.

use add_header::AddHeader;
use weir::testing::{TestFilter, TestRequest, TestResponse};

const EXAMPLE: &str = include_str!("../config.example.json");

#[test]
fn example_config_sets_its_header() {
    let mut filter = TestFilter::<AddHeader>::configure(EXAMPLE).unwrap();
    let exchange = filter.send(TestRequest::get("/details/123"));
    assert_eq!(exchange.status(), 200);
    assert_eq!(exchange.response_header("hello").unwrap(), "hello details");
}

#[test]
fn no_config_sets_the_seed_header() {
    let mut filter = TestFilter::<AddHeader>::configure("").unwrap();
    let exchange = filter.send(TestRequest::get("/"));
    assert_eq!(
        exchange.response_header("resp-header-demo").unwrap(),
        "added by our filter"
    );
}

#[test]
fn replaces_an_upstream_value() {
    let mut filter = TestFilter::<AddHeader>::configure(EXAMPLE).unwrap();
    let response = TestResponse::new(200)
        .header("hello", "old")
        .header("hello", "older");
    let exchange = filter.send(TestRequest::get("/").respond_with(response));
    let values: Vec<_> = exchange
        .response_headers()
        .into_iter()
        .filter(|(k, _)| k == "hello")
        .collect();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].1, "hello details");
}

#[test]
fn refuses_bad_configurations_naming_the_field() {
    let cases = [
        (
            r#"{"name": 5, "value": "x"}"#,
            "field `name`: invalid type: integer `5`",
        ),
        (r#"{"value": "x"}"#, "missing field `name`"),
        (
            r#"{"name": "", "value": "x"}"#,
            "field `name`: header name is empty",
        ),
        (
            r#"{"name": "a b", "value": "x"}"#,
            "field `name`: header name has byte 0x20",
        ),
        (
            r#"{"name": "ok", "value": "a\r\nb"}"#,
            "field `value`: header value has byte 0x0d",
        ),
        (
            r#"{"name": "ok", "value": "x", "extra": 1}"#,
            "unknown field `extra`",
        ),
        ("not json", "expected ident"),
    ];
    for (json, expected) in cases {
        let err = TestFilter::<AddHeader>::configure(json)
            .err()
            .unwrap_or_else(|| panic!("{json} was accepted"));
        assert!(err.to_string().contains(expected), "{json}: got {err}");
    }
}

#[test]
fn non_utf8_request_headers_pass_untouched() {
    let mut filter = TestFilter::<AddHeader>::configure(EXAMPLE).unwrap();
    let exchange = filter.send(TestRequest::get("/").header("x-bin", b"\x80\xfe\xff"));
    assert!(exchange.forwarded());
    assert_eq!(
        exchange.upstream_header("x-bin").unwrap().as_bytes(),
        b"\x80\xfe\xff"
    );
    assert_eq!(exchange.response_header("hello").unwrap(), "hello details");
}

#[test]
fn path_rules_match_the_canonical_path_and_refuse_ambiguous_ones() {
    let config =
        r#"{"_rules_": [{"_match_path_prefix_": ["/admin/"], "name": "x-admin", "value": "yes"}]}"#;
    let mut filter = TestFilter::<AddHeader>::configure(config).unwrap();
    for path in [
        "/admin/users",
        "//admin/users",
        "/x/../%61dmin/users",
        "/admin;x/users",
    ] {
        let exchange = filter.send(TestRequest::get(path));
        assert_eq!(
            exchange.response_header("x-admin").unwrap(),
            "yes",
            "{path}"
        );
    }
    assert!(filter
        .send(TestRequest::get("/public"))
        .response_header("x-admin")
        .is_none());
    let exchange = filter.send(TestRequest::get("/admin%2Fusers"));
    assert_eq!(exchange.status(), 400);
    assert_eq!(exchange.reply_details(), Some("weir_path_encoded_slash"));
    assert!(exchange.response_header("x-admin").is_none());
}
