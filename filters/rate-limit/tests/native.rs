//! rate-limit, natively: counts per client and window, in shared data, with hostile bytes.

use std::time::Duration;

use rate_limit::RateLimit;
use weir::testing::{TestFilter, TestRequest};

const EXAMPLE: &str = include_str!("../config.example.json");

#[test]
fn allows_the_limit_then_answers_429_until_the_window_ends() {
    let mut f = TestFilter::<RateLimit>::configure(EXAMPLE).unwrap();
    for i in 0..5 {
        assert!(f.send(TestRequest::get("/")).forwarded(), "request {i}");
    }
    let ex = f.send(TestRequest::get("/"));
    assert_eq!(ex.status(), 429);
    assert_eq!(ex.reply_body(), Some(&b"rate limited\n"[..]));
    let retry: u64 = ex
        .response_header("retry-after")
        .and_then(|v| v.to_str()?.parse().ok())
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert!(
        f.send(TestRequest::get("/").source("10.0.0.2:1"))
            .forwarded(),
        "another client has its own count"
    );
    f.advance(Duration::from_secs(retry));
    assert!(f.send(TestRequest::get("/")).forwarded(), "a new window");
    assert_eq!(f.metric("rate_limit_allowed"), Some(7));
    assert_eq!(f.metric("rate_limit_limited"), Some(1));
}

#[test]
fn the_count_lives_in_shared_data_seen_by_every_worker() {
    let mut f = TestFilter::<RateLimit>::configure(r#"{"requests": 2}"#).unwrap();
    f.send(TestRequest::get("/"));
    let stored = f
        .shared("rate-limit/127.0.0.1")
        .expect("the count is in shared data");
    assert_eq!(&stored[8..], &1u32.to_le_bytes());
    // Another worker counted one more for this client in the same window.
    let mut other = stored.clone();
    other[8..].copy_from_slice(&2u32.to_le_bytes());
    f.set_shared("rate-limit/127.0.0.1", &other);
    assert_eq!(f.send(TestRequest::get("/")).status(), 429);
}

#[test]
fn key_header_counts_per_value_and_any_bytes_are_a_key() {
    let mut f = TestFilter::<RateLimit>::configure(r#"{"requests": 1, "key_header": "x-api-key"}"#)
        .unwrap();
    let hostile: Vec<u8> = (0x80..=0xFF).collect();
    assert!(f
        .send(TestRequest::get("/").header("x-api-key", "a"))
        .forwarded());
    assert_eq!(
        f.send(TestRequest::get("/").header("x-api-key", "a"))
            .status(),
        429
    );
    assert!(f
        .send(TestRequest::get("/").header("x-api-key", &hostile))
        .forwarded());
    assert_eq!(
        f.send(TestRequest::get("/").header("x-api-key", &hostile))
            .status(),
        429
    );
    assert!(
        f.send(TestRequest::get("/").header("x-api-key", b"\x80%"))
            .forwarded(),
        "distinct bytes, distinct key"
    );
    assert!(f.shared("rate-limit/%80%81%82%83%84%85%86%87%88%89%8A%8B%8C%8D%8E%8F%90%91%92%93%94%95%96%97%98%99%9A%9B%9C%9D%9E%9F%A0%A1%A2%A3%A4%A5%A6%A7%A8%A9%AA%AB%AC%AD%AE%AF%B0%B1%B2%B3%B4%B5%B6%B7%B8%B9%BA%BB%BC%BD%BE%BF%C0%C1%C2%C3%C4%C5%C6%C7%C8%C9%CA%CB%CC%CD%CE%CF%D0%D1%D2%D3%D4%D5%D6%D7%D8%D9%DA%DB%DC%DD%DE%DF%E0%E1%E2%E3%E4%E5%E6%E7%E8%E9%EA%EB%EC%ED%EE%EF%F0%F1%F2%F3%F4%F5%F6%F7%F8%F9%FA%FB%FC%FD%FE%FF").is_some());
}

#[test]
fn per_route_rules_set_their_own_limit() {
    let mut f = TestFilter::<RateLimit>::configure(
        r#"{"requests": 100, "_rules_": [{"_match_path_prefix_": ["/login"], "requests": 1}]}"#,
    )
    .unwrap();
    assert!(f.send(TestRequest::get("/login")).forwarded());
    assert_eq!(f.send(TestRequest::get("/login")).status(), 429);
    assert!(f.send(TestRequest::get("/home")).forwarded());
}

#[test]
fn bad_configurations_name_the_field() {
    let cases = [
        (r#"{}"#, "missing field `requests`"),
        (r#"{"requests": -1}"#, "field `requests`: invalid value"),
        (
            r#"{"requests": 1, "window_seconds": 0}"#,
            "field `window_seconds`: must be at least 1",
        ),
        (r#"{"requests": 1, "status": 200}"#, "field `status`"),
    ];
    for (json, expected) in cases {
        let err = TestFilter::<RateLimit>::configure(json)
            .err()
            .unwrap_or_else(|| panic!("{json} was accepted"));
        assert!(err.to_string().contains(expected), "{json}: got {err}");
    }
}
