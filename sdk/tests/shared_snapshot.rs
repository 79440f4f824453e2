//! `HttpFilter::SNAPSHOTS_REQUEST_HEADERS`: a path rule's pick and the hook share one
//! read of the request headers, and the hook still sees its own writes, and only its
//! own request.

use weir::testing::{TestFilter, TestRequest};
use weir::{Action, HttpFilter, Request};

#[derive(serde::Deserialize)]
struct Config {
    tag: String,
    /// Write `x-pre` before the first snapshot.
    #[serde(default)]
    write_first: bool,
}

#[derive(Default)]
struct Echo;

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[weir::filter]
impl HttpFilter for Echo {
    type Config = Config;
    const SNAPSHOTS_REQUEST_HEADERS: bool = true;

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        let (tag, write_first) = (cx.config().tag.clone(), cx.config().write_first);
        let headers = cx.headers();
        if write_first {
            headers.set("x-pre", "1")?;
        }
        let first = headers.snapshot();
        let seen = first.get("x-in").unwrap_or(b"").to_vec();
        let path = first.get(":path").unwrap_or(b"").to_vec();
        headers.set("x-saw-pre", yes(first.get("x-pre").is_some()))?;
        headers.set("x-seen", seen.as_slice())?;
        headers.set("x-path", path.as_slice())?;
        headers.set("x-tag", tag.as_str())?;
        let second = headers.snapshot();
        headers.set("x-second-saw-write", yes(second.get("x-tag").is_some()))?;
        Ok(Action::Continue)
    }
}

fn header(ex: &weir::testing::Exchange, name: &str) -> String {
    ex.upstream_header(name)
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn a_path_rule_picks_and_the_hook_sees_its_own_request() {
    let mut f = TestFilter::<Echo>::configure(
        r#"{"tag": "global", "_rules_": [{"_match_path_prefix_": ["/api/"], "tag": "api"}]}"#,
    )
    .unwrap();
    for (path, x_in, tag) in [
        ("/api/a", "one", "api"),
        ("/other", "two", "global"),
        ("/%61pi/b", "three", "api"),
        ("/api/c", "four", "api"),
    ] {
        let ex = f.send(TestRequest::get(path).header("x-in", x_in));
        assert!(ex.forwarded(), "{path}");
        assert_eq!(header(&ex, "x-tag"), tag, "{path}");
        assert_eq!(header(&ex, "x-seen"), x_in, "{path}");
        assert_eq!(header(&ex, "x-path"), path, "{path}");
        // A snapshot taken after a write shows the write.
        assert_eq!(header(&ex, "x-second-saw-write"), "yes", "{path}");
        assert_eq!(header(&ex, "x-saw-pre"), "no", "{path}");
    }
}

#[test]
fn a_write_before_the_first_snapshot_shows_in_it() {
    let mut f = TestFilter::<Echo>::configure(
        r#"{"tag": "g", "write_first": true, "_rules_": [{"_match_path_prefix_": ["/api/"], "tag": "api", "write_first": true}]}"#,
    )
    .unwrap();
    for path in ["/api/a", "/other"] {
        let ex = f.send(TestRequest::get(path).header("x-in", "v"));
        assert_eq!(header(&ex, "x-saw-pre"), "yes", "{path}");
        assert_eq!(header(&ex, "x-seen"), "v", "{path}");
    }
}

#[test]
fn a_path_with_no_canonical_form_is_refused_before_the_hook() {
    let mut f = TestFilter::<Echo>::configure(
        r#"{"tag": "g", "_rules_": [{"_match_path_prefix_": ["/api/"], "tag": "api"}]}"#,
    )
    .unwrap();
    let ex = f.send(TestRequest::get("/api%2Fx").header("x-in", "v"));
    assert_eq!(ex.status(), 400);
    // The next request is judged on its own headers.
    let ex = f.send(TestRequest::get("/api/ok").header("x-in", "w"));
    assert_eq!(header(&ex, "x-seen"), "w");
    assert_eq!(header(&ex, "x-tag"), "api");
}
