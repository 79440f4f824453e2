//! access-control, natively: each condition, per-route rules, metrics, and hostile bytes.

use access_control::{AccessControl, Cidr};
use weir::testing::{TestFilter, TestRequest};

const EXAMPLE: &str = include_str!("../config.example.json");

fn example() -> TestFilter<AccessControl> {
    TestFilter::configure(EXAMPLE).unwrap()
}

#[test]
fn example_allows_a_plain_request_from_loopback() {
    let mut f = example();
    let ex = f.send(TestRequest::get("/productpage"));
    assert!(ex.forwarded());
    assert_eq!(ex.status(), 200);
    assert_eq!(f.metric("access_control_allowed"), Some(1));
    assert_eq!(f.metric("access_control_denied"), Some(0));
}

#[test]
fn denies_sources_outside_the_allow_list() {
    let mut f = example();
    let ex = f.send(TestRequest::get("/").source("192.168.1.9:4000"));
    assert_eq!(ex.status(), 403);
    assert_eq!(ex.reply_body(), Some(&b"access denied\n"[..]));
    assert_eq!(
        ex.reply_details(),
        Some("access_control_source_not_allowed")
    );
    assert!(f
        .send(TestRequest::get("/").source("10.20.30.40:1"))
        .forwarded());
    assert!(f.send(TestRequest::get("/").source("[::1]:1")).forwarded());
    assert_eq!(f.metric("access_control_denied"), Some(1));
}

#[test]
fn denies_path_prefixes_and_headers() {
    let mut f = example();
    assert_eq!(
        f.send(TestRequest::get("/admin/users")).reply_details(),
        Some("access_control_path_denied")
    );
    let ex = f.send(TestRequest::get("/").header("x-debug-bypass", "1"));
    assert_eq!(ex.reply_details(), Some("access_control_header_denied"));
}

#[test]
fn api_rule_requires_the_key_and_keeps_global_fields() {
    let mut f = example();
    let ex = f.send(TestRequest::get("/api/v1"));
    assert_eq!(
        (ex.status(), ex.reply_details()),
        (403, Some("access_control_header_required"))
    );
    assert!(f
        .send(TestRequest::get("/api/v1").header("x-api-key", "demo-key"))
        .forwarded());
    let ex = f.send(
        TestRequest::get("/api/v1")
            .header("x-api-key", "demo-key")
            .source("8.8.8.8:1"),
    );
    assert_eq!(ex.status(), 403, "the rule inherits allow_sources");
}

#[test]
fn deny_sources_and_custom_status() {
    let mut f = TestFilter::<AccessControl>::configure(
        r#"{"deny_sources": ["10.0.0.0/8"], "deny_status": 401, "deny_body": "no"}"#,
    )
    .unwrap();
    let ex = f.send(TestRequest::get("/").source("10.1.1.1:9"));
    assert_eq!((ex.status(), ex.reply_body()), (401, Some(&b"no"[..])));
    assert!(f
        .send(TestRequest::get("/").source("11.1.1.1:9"))
        .forwarded());
}

#[test]
fn route_rule_overrides_by_route_name() {
    let mut f = TestFilter::<AccessControl>::configure(
        r#"{"_rules_": [{"_match_route_": ["admin-route"], "require_headers": [{"name": "x-admin"}]}]}"#,
    )
    .unwrap();
    assert_eq!(
        f.send(TestRequest::get("/").route("admin-route")).status(),
        403
    );
    assert!(f
        .send(
            TestRequest::get("/")
                .route("admin-route")
                .header("x-admin", "y")
        )
        .forwarded());
    assert!(
        f.send(TestRequest::get("/").route("other")).forwarded(),
        "no global config: other routes skip the filter"
    );
}

#[test]
fn high_bytes_in_headers_never_trap() {
    let mut f = example();
    let hostile: Vec<u8> = (0x80..=0xFF).collect();
    let ex = f.send(
        TestRequest::get("/")
            .header("x-bytes", &hostile)
            .header("x-api-key", b"\xff"),
    );
    assert!(ex.forwarded());
    let ex = f.send(TestRequest::get("/api/x").header("x-api-key", &hostile));
    assert_eq!(
        ex.status(),
        403,
        "a non-matching key, whatever its bytes, is denied"
    );
    let ex = f.send(TestRequest::get("/").header(":path", b"/admin\xff"));
    assert_eq!(ex.status(), 403);
}

#[test]
fn bad_configurations_name_the_field() {
    let cases = [
        (
            r#"{"allow_sources": ["10.0.0.0/33"]}"#,
            "field `allow_sources[0]`: `10.0.0.0/33` is not an IP address or CIDR",
        ),
        (
            r#"{"deny_status": 99}"#,
            "field `deny_status`: must be an HTTP status",
        ),
        (
            r#"{"deny_headers": [{"name": "Bad Name"}]}"#,
            "field `deny_headers[0].name`",
        ),
        (r#"{"deny_paths": []}"#, "unknown field `deny_paths`"),
        (
            r#"{"_rules_": [{"_match_route_": ["a"], "deny_status": 700}]}"#,
            "field `_rules_[0].deny_status`: must be",
        ),
    ];
    for (json, expected) in cases {
        let err = TestFilter::<AccessControl>::configure(json)
            .err()
            .unwrap_or_else(|| panic!("{json} was accepted"));
        assert!(err.to_string().contains(expected), "{json}: got {err}");
    }
}

#[test]
fn cidr_matching() {
    let c = |s: &str| Cidr::parse(s).unwrap();
    assert!(c("10.0.0.0/8").contains("10.255.0.1".parse().unwrap()));
    assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
    assert!(c("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
    assert!(c("127.0.0.1").contains("::ffff:127.0.0.1".parse().unwrap()));
    assert!(c("fd00::/8").contains("fd12::1".parse().unwrap()));
    assert!(!c("fd00::/8").contains("10.0.0.1".parse().unwrap()));
    assert!(Cidr::parse("10.0.0.0/").is_none());
    assert!(Cidr::parse("::/129").is_none());
}

#[test]
fn grpc_calls_are_denied_with_permission_denied() {
    let mut f = example();
    let ex = f.send(
        TestRequest::new("POST", "/admin.Admin/Drop")
            .header("content-type", "application/grpc+proto"),
    );
    assert_eq!(ex.reply_grpc_status(), Some(7));
    assert_eq!(ex.status(), 200, "gRPC errors travel in grpc-status");
    let ex = f.send(TestRequest::get("/admin"));
    assert_eq!(ex.status(), 403);
    assert_eq!(ex.reply_grpc_status(), None);
}

#[test]
fn a_repeated_header_is_judged_on_every_copy() {
    let mut f = example();
    // The upstream may read any copy: a required key must be right in all of them.
    let ex = f.send(
        TestRequest::get("/api/v1")
            .header("x-api-key", "demo-key")
            .header("x-api-key", "wrong"),
    );
    assert_eq!(
        (ex.status(), ex.reply_details()),
        (403, Some("access_control_header_required"))
    );
    assert!(f
        .send(
            TestRequest::get("/api/v1")
                .header("x-api-key", "demo-key")
                .header("x-api-key", "demo-key")
        )
        .forwarded());
    // A denied value in any copy denies.
    let mut f = TestFilter::<AccessControl>::configure(
        r#"{"deny_headers": [{"name": "x-mode", "values": ["debug"]}]}"#,
    )
    .unwrap();
    let ex = f.send(
        TestRequest::get("/")
            .header("x-mode", "normal")
            .header("x-mode", "debug"),
    );
    assert_eq!(
        (ex.status(), ex.reply_details()),
        (403, Some("access_control_header_denied"))
    );
    assert!(f
        .send(TestRequest::get("/").header("x-mode", "normal"))
        .forwarded());
}

#[test]
fn ipv4_mapped_networks_are_ipv4_networks() {
    let c = |s: &str| Cidr::parse(s).unwrap();
    for source in ["10.1.2.3", "::ffff:10.1.2.3"] {
        assert!(
            c("::ffff:10.0.0.0/104").contains(source.parse().unwrap()),
            "{source}"
        );
        assert!(
            c("::ffff:10.1.2.3").contains(source.parse().unwrap()),
            "{source}"
        );
    }
    assert!(!c("::ffff:10.0.0.0/104").contains("11.0.0.1".parse().unwrap()));
    assert!(
        Cidr::parse("::ffff:0:0/95").is_none(),
        "wider than the mapped range"
    );
    let mut f =
        TestFilter::<AccessControl>::configure(r#"{"deny_sources": ["::ffff:10.0.0.0/104"]}"#)
            .unwrap();
    assert_eq!(
        f.send(TestRequest::get("/").source("10.9.9.9:1")).status(),
        403
    );
    assert!(f
        .send(TestRequest::get("/").source("11.0.0.1:1"))
        .forwarded());
    let err = TestFilter::<AccessControl>::configure(r#"{"deny_sources": ["::ffff:0:0/90"]}"#)
        .err()
        .unwrap();
    assert!(err.to_string().contains("at least 96"), "{err}");
}

#[test]
fn paths_are_judged_in_their_canonical_form() {
    let mut f = example();
    for path in [
        "/admin",
        "//admin",
        "/./admin/x",
        "/x/../admin",
        "/%61dmin",
        "/%2e%2e/admin",
        "/admin;x",
        "/x/..;/admin",
    ] {
        let ex = f.send(TestRequest::get(path));
        assert_eq!(
            (ex.status(), ex.reply_details()),
            (403, Some("access_control_path_denied")),
            "{path}"
        );
    }
    // The example has path rules: the SDK refuses these before the filter runs.
    let mut plain =
        TestFilter::<AccessControl>::configure(r#"{"deny_path_prefixes": ["/admin"]}"#).unwrap();
    for path in ["/admin%2f", "/%5Cadmin", "/a\\b", "/%zz", "/%4", "/a%00"] {
        let ex = f.send(TestRequest::get(path));
        assert_eq!(ex.status(), 400, "{path}");
        assert!(
            ex.reply_details()
                .is_some_and(|d| d.starts_with("weir_path_")),
            "{path}"
        );
        let ex = plain.send(TestRequest::get(path));
        assert_eq!(
            (ex.status(), ex.reply_details()),
            (400, Some("access_control_path_invalid")),
            "{path}"
        );
    }
    for path in ["//api/v1", "/%61pi/v1", "/x/../api/v1"] {
        assert_eq!(
            f.send(TestRequest::get(path)).status(),
            403,
            "{path}: the /api/ rule needs a key"
        );
        assert!(
            f.send(TestRequest::get(path).header("x-api-key", "demo-key"))
                .forwarded(),
            "{path}"
        );
    }
    assert_eq!(
        f.send(TestRequest::get("/api%2Fv1").header("x-api-key", "demo-key"))
            .status(),
        400,
        "the SDK refuses it"
    );
    for path in ["/", "/adm", "/ADMIN", "/public/admin", "/?next=/admin"] {
        assert!(f.send(TestRequest::get(path)).forwarded(), "{path}");
    }
    let f = TestFilter::<AccessControl>::configure(r#"{"deny_path_prefixes": ["/a%2fb"]}"#);
    assert!(f.err().unwrap().to_string().contains("deny_path_prefixes"));
    let mut f = TestFilter::<AccessControl>::configure(r#"{"deny_path_prefixes": ["//%61dmin/"]}"#)
        .unwrap();
    assert_eq!(
        f.send(TestRequest::get("/admin/x")).status(),
        403,
        "prefixes are canonical too"
    );
}

#[test]
fn hosts_are_judged_in_their_canonical_form() {
    let mut f = TestFilter::<AccessControl>::configure(
        r#"{"_rules_": [{"_match_domain_": ["api.example.com"], "require_headers": [{"name": "x-api-key"}]}]}"#,
    )
    .unwrap();
    for host in [
        "api.example.com",
        "api.example.com.",
        "API.Example.COM.",
        "api.example.com:8080",
        "api.example.com.:1",
    ] {
        assert_eq!(
            f.send(TestRequest::get("/").header(":authority", host))
                .status(),
            403,
            "{host}"
        );
    }
    assert!(f
        .send(TestRequest::get("/").header(":authority", "example.com"))
        .forwarded());
}

#[test]
fn every_element_of_merged_headers_is_judged() {
    let mut f = TestFilter::<AccessControl>::configure(
        r#"{"deny_headers": [{"name": "x-role", "values": ["admin"]}],
            "require_headers": [{"name": "x-api-key", "values": ["good"]}]}"#,
    )
    .unwrap();
    let key = |r: TestRequest| r.header("x-api-key", "good");
    for role in [
        "admin",
        "user, admin",
        "user,admin",
        " admin ,x",
        "a,\tadmin",
    ] {
        assert_eq!(
            f.send(key(TestRequest::get("/")).header("x-role", role))
                .status(),
            403,
            "{role}"
        );
    }
    assert_eq!(
        f.send(
            key(TestRequest::get("/"))
                .header("x-role", "user")
                .header("x-role", "admin")
        )
        .status(),
        403
    );
    for role in ["user", "user, guest", "administrator", "adm,in"] {
        assert!(
            f.send(key(TestRequest::get("/")).header("x-role", role))
                .forwarded(),
            "{role}"
        );
    }
    for k in ["good, evil", "evil,good", "good,"] {
        assert_eq!(
            f.send(TestRequest::get("/").header("x-api-key", k))
                .status(),
            403,
            "{k}"
        );
    }
    assert_eq!(
        f.send(
            TestRequest::get("/")
                .header("x-api-key", "good")
                .header("x-api-key", "evil")
        )
        .status(),
        403
    );
    assert!(f
        .send(TestRequest::get("/").header("x-api-key", "good, good"))
        .forwarded());
    assert!(f
        .send(
            TestRequest::get("/")
                .header("x-api-key", "good")
                .header("x-api-key", "good")
        )
        .forwarded());
}

/// Up to 64 `require_headers` are judged in one walk over the headers, more rule by
/// rule: both give the same verdicts, priorities included (path, then denied, then
/// required).
#[test]
fn many_header_rules_are_judged_like_few() {
    for extra in [0, 63, 64, 70] {
        let mut require = vec![
            r#"{"name": "x-key", "values": ["a", "b"]}"#.to_owned(),
            r#"{"name": "x-tenant"}"#.to_owned(),
        ];
        require.extend((0..extra).map(|i| format!(r#"{{"name": "x-r{i}"}}"#)));
        let config = format!(
            r#"{{"deny_path_prefixes": ["/admin"],
                "deny_headers": [{{"name": "x-bad"}}, {{"name": "x-mode", "values": ["debug"]}}],
                "require_headers": [{}]}}"#,
            require.join(",")
        );
        let mut f = TestFilter::<AccessControl>::configure(&config).unwrap();
        let full = |path: &str| {
            let mut r = TestRequest::get(path)
                .header("x-key", "a")
                .header("x-tenant", "t");
            for i in 0..extra {
                r = r.header(&format!("x-r{i}"), "1");
            }
            r
        };
        let details = |f: &mut TestFilter<AccessControl>, r: TestRequest| {
            let ex = f.send(r);
            if ex.forwarded() {
                None
            } else {
                ex.reply_details().map(str::to_owned)
            }
        };
        let at = format!("{extra} extra rules");
        assert_eq!(details(&mut f, full("/x")), None, "{at}");
        assert_eq!(
            details(&mut f, full("/x").header("x-key", "b")),
            None,
            "{at}"
        );
        assert_eq!(
            details(&mut f, full("/x").header("x-key", "c")).as_deref(),
            Some("access_control_header_required"),
            "{at}"
        );
        assert_eq!(
            details(&mut f, TestRequest::get("/x").header("x-key", "a")).as_deref(),
            Some("access_control_header_required"),
            "{at}"
        );
        assert_eq!(
            details(&mut f, full("/x").header("x-mode", "normal, debug")).as_deref(),
            Some("access_control_header_denied"),
            "{at}"
        );
        assert_eq!(
            details(&mut f, TestRequest::get("/x").header("x-bad", "")).as_deref(),
            Some("access_control_header_denied"),
            "{at}"
        );
        assert_eq!(
            details(&mut f, TestRequest::get("/admin/x").header("x-bad", "1")).as_deref(),
            Some("access_control_path_denied"),
            "{at}"
        );
        if extra > 0 {
            let last = format!("x-r{}", extra - 1);
            let mut r = TestRequest::get("/x")
                .header("x-key", "a")
                .header("x-tenant", "t");
            for i in 0..extra - 1 {
                r = r.header(&format!("x-r{i}"), "1");
            }
            assert_eq!(
                details(&mut f, r).as_deref(),
                Some("access_control_header_required"),
                "{at}: {last} missing"
            );
        }
    }
}

/// Header names are passed over by length before they are compared: names of 63
/// bytes and longer share one length class, and still match only themselves.
#[test]
fn long_header_names_are_judged_by_name() {
    let long = |c: &str, n: usize| format!("x-{}", c.repeat(n - 2));
    let (required, other, denied) = (long("r", 70), long("o", 70), long("d", 63));
    let config = format!(
        r#"{{"require_headers": [{{"name": "{required}", "values": ["yes"]}}],
            "deny_headers": [{{"name": "{denied}"}}]}}"#
    );
    let mut f = TestFilter::<AccessControl>::configure(&config).unwrap();
    let details = |f: &mut TestFilter<AccessControl>, r: TestRequest| {
        let ex = f.send(r);
        (!ex.forwarded()).then(|| ex.reply_details().map(str::to_owned))
    };
    let ok = || TestRequest::get("/").header(&required, "yes");
    assert_eq!(details(&mut f, ok()), None);
    assert_eq!(details(&mut f, ok().header(&other, "1")), None);
    assert_eq!(
        details(&mut f, TestRequest::get("/").header(&other, "yes")),
        Some(Some("access_control_header_required".into()))
    );
    assert_eq!(
        details(&mut f, ok().header(&denied, "")),
        Some(Some("access_control_header_denied".into()))
    );
    assert_eq!(details(&mut f, ok().header(&long("d", 64), "")), None);
}
