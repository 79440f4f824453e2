//! Streaming bodies through the native harness: each chunk passes as it comes unless the
//! filter asks to buffer, streams are never held by a filter-wide `Buffer`, and `Skip` reads nothing.

use weir::testing::{Exchange, TestFilter, TestRequest, TestResponse};
use weir::{Action, BodyMode, HttpFilter, Request, Response};

/// `{"request": MODE, "response": MODE}`: the mode each headers hook chooses
/// (absent: none chosen, the filter-wide default applies).
#[derive(serde::Deserialize, Default)]
struct Config {
    request: Option<String>,
    response: Option<String>,
    /// The body hook calls `set_body_mode` with this on the first chunk.
    #[serde(default)]
    late: Option<String>,
}

fn mode(name: &str) -> BodyMode {
    match name {
        "buffer" => BodyMode::Buffer,
        "skip" => BodyMode::Skip,
        _ => BodyMode::Stream,
    }
}

/// Logs every body call as `<dir> <bytes> end=<bool> mode=<mode>` and uppercases what it sees.
fn seen(dir: &str, bytes: &[u8], end: bool, mode: BodyMode) {
    weir::info!(
        "{dir} {:?} end={end} mode={mode:?}",
        String::from_utf8_lossy(bytes)
    );
}

macro_rules! body_filter {
    ($name:ident, $mode:expr) => {
        #[derive(Default)]
        struct $name {
            calls: usize,
        }

        #[weir::filter]
        impl HttpFilter for $name {
            type Config = Config;
            const BODY_MODE: BodyMode = $mode;
            const BODY_LIMIT: usize = 64;

            fn default_config() -> Option<Config> {
                Some(Config::default())
            }

            fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
                if let Some(m) = &cx.config().request {
                    cx.set_body_mode(mode(m))?;
                }
                Ok(Action::Continue)
            }

            fn on_request_body(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
                let bytes = cx.body().read();
                seen("request", &bytes, cx.end_of_stream(), cx.body_mode());
                cx.body().replace(&bytes.to_ascii_uppercase())?;
                Ok(Action::Continue)
            }

            fn on_response_headers(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
                if let Some(m) = &cx.config().response {
                    cx.set_body_mode(mode(m))?;
                }
                Ok(Action::Continue)
            }

            fn on_response_body(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
                self.calls += 1;
                let bytes = cx.body().read();
                seen("response", &bytes, cx.end_of_stream(), cx.body_mode());
                if self.calls == 1 {
                    if let Some(m) = &cx.config().late {
                        cx.set_body_mode(mode(m))?;
                    }
                }
                cx.body().replace(&bytes.to_ascii_uppercase())?;
                Ok(Action::Continue)
            }
        }
    };
}

body_filter!(Streamed, BodyMode::Stream);
body_filter!(Whole, BodyMode::Buffer);

fn sse() -> TestResponse {
    TestResponse::new(200)
        .header("content-type", "text/event-stream")
        .chunk("data: one\n\n")
        .chunk("data: two\n\n")
        .chunk("data: three\n\n")
}

fn calls(ex: &Exchange, dir: &str) -> Vec<String> {
    // Lines are `<filter>: <message>`.
    ex.logs()
        .into_iter()
        .filter_map(|(_, m)| m.split_once(": ").map(|(_, m)| m))
        .filter(|m| m.starts_with(dir))
        .map(str::to_owned)
        .collect()
}

fn chunks(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|c| c.as_bytes().to_vec()).collect()
}

#[test]
fn a_body_hook_sees_and_rewrites_each_chunk_as_it_passes_by_default() {
    let mut f = TestFilter::<Streamed>::configure("").unwrap();
    let ex = f.send(TestRequest::get("/events").respond_with(sse()));
    assert_eq!(
        ex.response_chunks(),
        chunks(&["DATA: ONE\n\n", "DATA: TWO\n\n", "DATA: THREE\n\n"]),
        "each chunk went on by itself, rewritten"
    );
    assert_eq!(
        calls(&ex, "response"),
        [
            r#"response "data: one\n\n" end=false mode=Stream"#,
            r#"response "data: two\n\n" end=false mode=Stream"#,
            r#"response "data: three\n\n" end=true mode=Stream"#,
        ]
    );
}

#[test]
fn request_chunks_stream_upstream_one_by_one() {
    let mut f = TestFilter::<Streamed>::configure("").unwrap();
    let ex = f.send(
        TestRequest::new("POST", "/upload")
            .chunk("ab")
            .chunk("cd")
            .chunk(""),
    );
    assert_eq!(ex.upstream_chunks(), chunks(&["AB", "CD", ""]));
    assert_eq!(ex.upstream_body(), b"ABCD");
    assert_eq!(
        calls(&ex, "request").last().unwrap(),
        r#"request "" end=true mode=Stream"#
    );
}

#[test]
fn a_streamed_body_has_no_size_limit() {
    let mut f = TestFilter::<Streamed>::configure("").unwrap();
    let big = vec![b'a'; 100]; // over BODY_LIMIT (64)
    let ex = f.send(
        TestRequest::new("POST", "/")
            .chunk(big.clone())
            .chunk(big.clone()),
    );
    assert!(ex.forwarded(), "no 413 for a streamed body");
    assert_eq!(ex.upstream_chunks(), [vec![b'A'; 100], vec![b'A'; 100]]);
}

#[test]
fn buffer_chosen_in_the_headers_hook_holds_the_body_and_hands_it_over_once() {
    let mut f = TestFilter::<Streamed>::configure(r#"{"request": "buffer", "response": "buffer"}"#)
        .unwrap();
    let ex = f.send(
        TestRequest::new("POST", "/")
            .chunk("ab")
            .chunk("cd")
            .respond_with(TestResponse::new(200).chunk("x").chunk("y")),
    );
    assert_eq!(
        ex.upstream_chunks(),
        chunks(&["ABCD"]),
        "held, then passed whole"
    );
    assert_eq!(ex.response_chunks(), chunks(&["XY"]));
    assert_eq!(
        calls(&ex, "request"),
        [r#"request "abcd" end=true mode=Buffer"#]
    );
    assert_eq!(
        calls(&ex, "response"),
        [r#"response "xy" end=true mode=Buffer"#]
    );
}

#[test]
fn a_filter_wide_buffer_holds_ordinary_bodies() {
    let mut f = TestFilter::<Whole>::configure("").unwrap();
    let ex =
        f.send(TestRequest::get("/").respond_with(TestResponse::new(200).chunk("x").chunk("y")));
    assert_eq!(ex.response_chunks(), chunks(&["XY"]));
}

#[test]
fn a_filter_wide_buffer_never_holds_server_sent_events() {
    let mut f = TestFilter::<Whole>::configure("").unwrap();
    let ex = f.send(TestRequest::get("/events").respond_with(sse()));
    assert_eq!(ex.response_chunks().len(), 3, "{:?}", ex.response_chunks());
    assert_eq!(
        calls(&ex, "response")[0],
        r#"response "data: one\n\n" end=false mode=Stream"#,
        "the hook is told it sees a chunk"
    );
}

#[test]
fn a_filter_wide_buffer_never_holds_grpc_either_way() {
    let mut f = TestFilter::<Whole>::configure("").unwrap();
    let ex = f.send(
        TestRequest::new("POST", "/pkg.Svc/Watch")
            .header("content-type", "application/grpc+proto")
            .chunk("\0\0\0\0\x01a")
            .chunk("\0\0\0\0\x01b")
            .respond_with(
                TestResponse::new(200)
                    .header("content-type", "application/grpc")
                    .chunk("\0\0\0\0\x01c")
                    .chunk("\0\0\0\0\x01d")
                    .trailer("grpc-status", "0"),
            ),
    );
    assert_eq!(ex.upstream_chunks().len(), 2, "request stream not held");
    assert_eq!(ex.response_chunks().len(), 2, "response stream not held");
    assert_eq!(ex.response_trailer("grpc-status").unwrap(), "0");
}

#[test]
fn a_filter_wide_buffer_never_holds_upgraded_connections() {
    for request in [
        TestRequest::get("/ws")
            .header("connection", "upgrade")
            .header("upgrade", "websocket"),
        TestRequest::new("CONNECT", "/").header(":authority", "db.internal:5432"),
    ] {
        let mut f = TestFilter::<Whole>::configure("").unwrap();
        let ex = f.send(
            request
                .chunk("ping")
                .chunk("pong")
                .respond_with(TestResponse::new(200).chunk("a").chunk("b")),
        );
        assert_eq!(ex.upstream_chunks(), chunks(&["PING", "PONG"]));
        assert_eq!(ex.response_chunks(), chunks(&["A", "B"]));
    }
    let mut f = TestFilter::<Whole>::configure("").unwrap();
    let ex =
        f.send(TestRequest::get("/").respond_with(TestResponse::new(101).chunk("a").chunk("b")));
    assert_eq!(
        ex.response_chunks(),
        chunks(&["A", "B"]),
        "a 101 answer streams"
    );
}

#[test]
fn buffer_chosen_for_one_stream_holds_even_server_sent_events() {
    let mut f = TestFilter::<Whole>::configure(r#"{"response": "buffer"}"#).unwrap();
    let ex = f.send(TestRequest::get("/events").respond_with(sse()));
    assert_eq!(
        ex.response_chunks(),
        chunks(&["DATA: ONE\n\nDATA: TWO\n\nDATA: THREE\n\n"])
    );
}

#[test]
fn skip_lets_the_body_through_unread() {
    let mut f =
        TestFilter::<Whole>::configure(r#"{"request": "skip", "response": "skip"}"#).unwrap();
    let ex = f.send(
        TestRequest::new("POST", "/")
            .chunk("ab")
            .chunk("cd")
            .respond_with(TestResponse::new(200).chunk("x").chunk("y")),
    );
    assert_eq!(
        ex.upstream_chunks(),
        chunks(&["ab", "cd"]),
        "untouched, not held"
    );
    assert_eq!(ex.response_chunks(), chunks(&["x", "y"]));
    assert!(
        calls(&ex, "request").is_empty() && calls(&ex, "response").is_empty(),
        "{:?}",
        ex.logs()
    );
}

#[test]
fn once_the_body_started_only_skip_is_taken() {
    let mut f = TestFilter::<Streamed>::configure(r#"{"late": "skip"}"#).unwrap();
    let ex = f.send(TestRequest::get("/").respond_with(sse()));
    assert_eq!(
        ex.response_chunks(),
        chunks(&["DATA: ONE\n\n", "data: two\n\n", "data: three\n\n"]),
        "after Skip the hook sees no more chunks"
    );

    let mut f = TestFilter::<Streamed>::configure(r#"{"late": "buffer"}"#).unwrap();
    let ex = f.send(TestRequest::get("/").respond_with(sse()));
    assert!(ex.logged(
        "on_response_body: the body mode can change to Buffer only before the body starts"
    ));
    assert_eq!(ex.response_chunks().len(), 3, "still streamed");
}

#[test]
fn a_streamed_body_ending_at_the_trailers_gets_a_last_empty_call() {
    let mut f = TestFilter::<Streamed>::configure("").unwrap();
    let ex = f.send(
        TestRequest::get("/").respond_with(
            TestResponse::new(200)
                .chunk("a")
                .chunk("b")
                .trailer("grpc-status", "0"),
        ),
    );
    assert_eq!(ex.response_chunks(), chunks(&["A", "B"]));
    assert_eq!(
        calls(&ex, "response"),
        [
            r#"response "a" end=false mode=Stream"#,
            r#"response "b" end=false mode=Stream"#,
            r#"response "" end=true mode=Stream"#,
        ]
    );
    assert!(
        ex.logged("on_response_body: the body ended at the trailers"),
        "a write in that call fails: {:?}",
        ex.logs()
    );
}

#[test]
fn a_buffered_request_body_over_the_limit_is_answered_413_and_a_response_passes_unread() {
    let mut f = TestFilter::<Whole>::configure("").unwrap();
    let ex = f.send(
        TestRequest::new("POST", "/")
            .chunk(vec![b'a'; 40])
            .chunk(vec![b'a'; 40]),
    );
    assert_eq!(ex.status(), 413);
    // As in Envoy: the headers went on when their hook continued, so the upstream
    // has them, and the reply resets the upstream request.
    assert!(ex.upstream_reset());
    assert_eq!(ex.upstream_body(), b"");

    let ex = f.send(
        TestRequest::get("/").respond_with(
            TestResponse::new(200)
                .chunk(vec![b'a'; 40])
                .chunk(vec![b'a'; 40])
                .chunk("tail"),
        ),
    );
    assert_eq!(
        ex.response_chunks(),
        [vec![b'a'; 80], b"tail".to_vec()],
        "the held part goes on once over the limit, the rest unread"
    );
    assert!(ex.logged("on_response_body: body over 64 bytes passes unread"));
}

/// A filter-wide `Buffer` with no headers hook of its own: weir still sees the headers.
#[derive(Default)]
struct BodyOnly;

#[weir::filter]
impl HttpFilter for BodyOnly {
    type Config = ();
    const BODY_MODE: BodyMode = BodyMode::Buffer;

    fn default_config() -> Option<()> {
        Some(())
    }

    fn on_response_body(&mut self, cx: &mut Response<'_, ()>) -> weir::Result {
        let mut seen = format!("[{:?}]", cx.body_mode()).into_bytes();
        seen.extend_from_slice(&cx.body().read());
        cx.body().replace(&seen)?;
        Ok(Action::Continue)
    }
}

#[test]
fn a_filter_wide_buffer_without_headers_hooks_still_streams_events_and_keeps_those_hooks() {
    use weir::hooks::{REQUEST_HEADERS, RESPONSE_BODY, RESPONSE_HEADERS, RESPONSE_TRAILERS};
    assert_eq!(BodyOnly::HOOKS, RESPONSE_BODY);
    let mut f = TestFilter::<BodyOnly>::configure("").unwrap();
    let ex = f.send(TestRequest::get("/events").respond_with(sse()));
    assert_eq!(
        ex.response_chunks(),
        chunks(&[
            "[Stream]data: one\n\n",
            "[Stream]data: two\n\n",
            "[Stream]data: three\n\n"
        ])
    );
    let ex =
        f.send(TestRequest::get("/").respond_with(TestResponse::new(200).chunk("a").chunk("b")));
    assert_eq!(ex.response_chunks(), chunks(&["[Buffer]ab"]));
    // The module keeps the headers hooks, where Envoy shows which bodies are streams;
    // a streaming filter's module keeps only its own.
    assert_eq!(
        weir::__private::exported_hooks::<BodyOnly>(),
        REQUEST_HEADERS | RESPONSE_HEADERS | RESPONSE_BODY | RESPONSE_TRAILERS
    );
    assert_eq!(
        weir::__private::exported_hooks::<Streamed>(),
        weir::hooks::exported(Streamed::HOOKS)
    );
}

/// Reads its direction's headers from the body hook, as a filter must not rely on.
#[derive(Default)]
struct LateReader;

#[weir::filter]
impl HttpFilter for LateReader {
    type Config = ();

    fn default_config() -> Option<()> {
        Some(())
    }

    fn on_response_body(&mut self, cx: &mut Response<'_, ()>) -> weir::Result {
        weir::info!(
            "content-type seen: {}",
            cx.headers().get("content-type").is_some()
        );
        cx.headers().set("x-late", "1")?;
        Ok(Action::Continue)
    }
}

#[test]
fn as_in_envoy_a_body_hook_sees_no_headers_once_they_went_on() {
    let mut f = TestFilter::<LateReader>::configure("").unwrap();
    let ex = f.send(TestRequest::get("/").respond_with(sse()));
    assert!(ex.logged("content-type seen: false"), "{:?}", ex.logs());
    assert!(
        ex.response_header("x-late").is_none(),
        "a late header write reached the client"
    );
}
