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

/// The shared-data keys the filter wrote.
fn keys(f: &TestFilter<RateLimit>, rule: &str, slots: u32) -> Vec<String> {
    (0..slots)
        .map(|s| format!("rate-limit/{rule}/{s}"))
        .filter(|k| f.shared(k).is_some())
        .collect()
}

#[test]
fn the_count_lives_in_shared_data_seen_by_every_worker() {
    let mut f = TestFilter::<RateLimit>::configure(r#"{"requests": 2, "slots": 4}"#).unwrap();
    f.send(TestRequest::get("/"));
    let key = keys(&f, "g", 4).pop().expect("the count is in shared data");
    let stored = f.shared(&key).unwrap();
    assert_eq!(stored.len(), 20, "one client: fingerprint, window, count");
    assert_eq!(&stored[16..], &1u32.to_le_bytes());
    // Another worker counted one more for this client in the same window.
    let mut other = stored.clone();
    other[16..].copy_from_slice(&2u32.to_le_bytes());
    f.set_shared(&key, &other);
    assert_eq!(f.send(TestRequest::get("/")).status(), 429);
}

#[test]
fn key_header_counts_per_value_and_any_bytes_are_a_key() {
    let mut f = TestFilter::<RateLimit>::configure(r#"{"requests": 1, "key_header": "x-api-key"}"#)
        .unwrap();
    let hostile: Vec<u8> = (0x80..=0xFF).collect();
    for key in [&b"a"[..], &hostile, b"\x80%", b""] {
        assert!(
            f.send(TestRequest::get("/").header("x-api-key", key))
                .forwarded(),
            "{key:?}"
        );
        assert_eq!(
            f.send(TestRequest::get("/").header("x-api-key", key))
                .status(),
            429,
            "{key:?}"
        );
    }
}

#[test]
fn interleaved_routes_keep_separate_counts() {
    let mut f = TestFilter::<RateLimit>::configure(
        r#"{"requests": 100, "window_seconds": 1,
            "_rules_": [{"_match_path_prefix_": ["/login"], "requests": 5, "window_seconds": 60}]}"#,
    )
    .unwrap();
    let mut allowed = 0;
    for i in 0..40 {
        if f.send(TestRequest::get(["/login", "//login", "/%6Cogin"][i % 3]))
            .forwarded()
        {
            allowed += 1;
        }
        assert!(f.send(TestRequest::get("/")).forwarded());
        f.advance(Duration::from_millis(500));
    }
    assert_eq!(
        allowed, 5,
        "5 a minute on /login, whatever the global rule counts"
    );
}

#[test]
fn ipv6_clients_are_grouped_by_prefix() {
    let mut f =
        TestFilter::<RateLimit>::configure(r#"{"requests": 2, "window_seconds": 60}"#).unwrap();
    let from = |ip: &str| TestRequest::get("/").source(&format!("[{ip}]:443"));
    assert!(f.send(from("2001:db8:0:1::1")).forwarded());
    assert!(f.send(from("2001:db8:0:1:ffff:ffff:ffff:2")).forwarded());
    assert_eq!(
        f.send(from("2001:db8:0:1:1234::9")).status(),
        429,
        "same /64, same count"
    );
    assert!(f.send(from("2001:db8:0:2::1")).forwarded(), "another /64");
    let mut f = TestFilter::<RateLimit>::configure(
        r#"{"requests": 1, "window_seconds": 60, "ipv6_prefix": 128}"#,
    )
    .unwrap();
    assert!(f.send(from("2001:db8::1")).forwarded());
    assert!(f.send(from("2001:db8::2")).forwarded());
    // An IPv4-mapped source is its IPv4 client.
    let mut f =
        TestFilter::<RateLimit>::configure(r#"{"requests": 1, "window_seconds": 60}"#).unwrap();
    assert!(f
        .send(TestRequest::get("/").source("10.1.2.3:1"))
        .forwarded());
    assert_eq!(f.send(from("::ffff:10.1.2.3")).status(), 429);
}

#[test]
fn shared_data_stays_bounded_as_clients_come_and_go() {
    let mut f =
        TestFilter::<RateLimit>::configure(r#"{"requests": 1, "window_seconds": 1, "slots": 16}"#)
            .unwrap();
    for round in 0..5u32 {
        for c in 0..200u32 {
            let ip = format!("10.{}.{}.{}:1", round, c / 256, c % 256);
            f.send(TestRequest::get("/").source(&ip));
        }
        f.advance(Duration::from_secs(1));
    }
    let keys = keys(&f, "g", 64);
    assert!(keys.len() <= 16, "{} keys", keys.len());
    for k in &keys {
        // At most 8 clients and one overflow count, all of one window.
        assert!(f.shared(k).unwrap().len() <= 9 * 20, "{k}");
    }
}

#[test]
fn a_full_slot_counts_newcomers_together_never_resetting_anyone() {
    let mut f =
        TestFilter::<RateLimit>::configure(r#"{"requests": 2, "window_seconds": 60, "slots": 1}"#)
            .unwrap();
    let from = |i: u32| TestRequest::get("/").source(&format!("10.0.0.{i}:1"));
    for i in 0..8 {
        assert!(f.send(from(i)).forwarded());
    }
    assert!(f.send(from(100)).forwarded());
    assert!(f.send(from(101)).forwarded());
    assert_eq!(
        f.send(from(102)).status(),
        429,
        "newcomers share the overflow count"
    );
    assert!(
        f.send(from(0)).forwarded(),
        "the first eight keep their own"
    );
    assert_eq!(f.send(from(0)).status(), 429);
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
        (
            r#"{"requests": 1, "ipv6_prefix": 0}"#,
            "field `ipv6_prefix`",
        ),
        (
            r#"{"requests": 1, "ipv6_prefix": 129}"#,
            "field `ipv6_prefix`",
        ),
        (
            r#"{"requests": 1, "ipv4_prefix": 33}"#,
            "field `ipv4_prefix`",
        ),
        (r#"{"requests": 1, "slots": 0}"#, "field `slots`"),
    ];
    for (json, expected) in cases {
        let err = TestFilter::<RateLimit>::configure(json)
            .err()
            .unwrap_or_else(|| panic!("{json} was accepted"));
        assert!(err.to_string().contains(expected), "{json}: got {err}");
    }
}
