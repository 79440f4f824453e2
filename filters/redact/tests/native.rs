//! redact, natively: secrets masked in streamed bodies, across chunk boundaries, with
//! nothing held that cannot be a secret's start; bodies it must not read pass untouched.

use redact::{mask_matches, unfinished_tail, Redact};
use weir::testing::{TestFilter, TestRequest, TestResponse};

const EXAMPLE: &str = include_str!("../config.example.json");

fn filter() -> TestFilter<Redact> {
    TestFilter::<Redact>::configure(EXAMPLE).unwrap()
}

fn events(chunks: &[&str]) -> TestResponse {
    chunks.iter().fold(
        TestResponse::new(200).header("content-type", "text/event-stream"),
        |r, c| r.chunk(*c),
    )
}

fn texts(chunks: &[Vec<u8>]) -> Vec<String> {
    chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

#[test]
fn masks_a_secret_inside_one_event_and_passes_each_event_at_once() {
    let mut f = filter();
    let ex = f.send(TestRequest::get("/events").respond_with(events(&[
        "data: {\"key\": \"sk_live_51HxQz\"}\n\n",
        "data: nothing here\n\n",
    ])));
    assert_eq!(
        texts(ex.response_chunks()),
        [
            "data: {\"key\": \"##############\"}\n\n",
            "data: nothing here\n\n"
        ],
        "one chunk out per chunk in, none held"
    );
    assert_eq!(f.metric("redact_matches"), Some(1));
}

#[test]
fn masks_a_secret_cut_by_a_chunk_boundary() {
    let mut f = filter();
    let ex = f.send(TestRequest::get("/events").respond_with(events(&[
        "data: pass=hun",
        "ter2\n\n",
        "",
    ])));
    assert_eq!(
        texts(ex.response_chunks()),
        ["data: pass=", "#######\n\n", ""],
        "`hun` waited for the next chunk, then went out masked"
    );
    assert_eq!(ex.response_body(), b"data: pass=#######\n\n");
    assert_eq!(f.metric("redact_matches"), Some(1));
}

#[test]
fn a_held_tail_that_is_no_secret_goes_out_with_the_next_chunk_or_at_the_end() {
    let mut f = filter();
    let ex = f.send(TestRequest::get("/").respond_with(events(&["a hun", "gry cat", " sk_live"])));
    assert_eq!(
        texts(ex.response_chunks()),
        ["a ", "hungry cat", " sk_live"]
    );
    assert_eq!(f.metric("redact_matches"), Some(0));
}

#[test]
fn the_body_keeps_its_length() {
    let body = "user=admin&password=hunter2&token=sk_live_51HxQz";
    let mut f = filter();
    let ex = f.send(
        TestRequest::get("/").respond_with(
            TestResponse::new(200)
                .header("content-type", "text/plain")
                .chunk(body),
        ),
    );
    assert_eq!(ex.response_body().len(), body.len());
    assert_eq!(
        ex.response_body(),
        b"user=admin&password=#######&token=##############"
    );
    assert_eq!(f.metric("redact_matches"), Some(2));
}

#[test]
fn bodies_of_other_types_and_compressed_bodies_pass_untouched() {
    for response in [
        TestResponse::new(200)
            .header("content-type", "image/png")
            .chunk("hunter2"),
        TestResponse::new(200).chunk("hunter2"),
        TestResponse::new(200)
            .header("content-type", "text/plain")
            .header("content-encoding", "gzip")
            .chunk("hunter2"),
    ] {
        let mut f = filter();
        let ex = f.send(TestRequest::get("/").respond_with(response));
        assert_eq!(ex.response_body(), b"hunter2");
        assert_eq!(f.metric("redact_matches"), Some(0));
    }
}

#[test]
fn request_bodies_are_not_touched() {
    let mut f = filter();
    let ex = f.send(
        TestRequest::new("POST", "/login")
            .header("content-type", "text/plain")
            .chunk("hunter2"),
    );
    assert_eq!(ex.upstream_body(), b"hunter2");
}

#[test]
fn high_bytes_in_headers_and_bodies_never_trap() {
    let mut f = filter();
    let high: Vec<u8> = (0x80..=0xFF).collect();
    let ex = f.send(
        TestRequest::get("/").header("x-bytes", &high).respond_with(
            TestResponse::new(200)
                .header("content-type", &high)
                .chunk(high.clone()),
        ),
    );
    assert_eq!(ex.status(), 200);
    assert_eq!(ex.response_body(), &high[..]);
    let ex = f.send(TestRequest::get("/").respond_with(events(&["\u{ff}hun", "\u{80}ter2"])));
    assert_eq!(ex.response_body(), "\u{ff}hun\u{80}ter2".as_bytes());
}

#[test]
fn refuses_bad_configurations_naming_the_field() {
    let cases = [
        (r#"{"patterns": []}"#, "give at least one pattern"),
        (r#"{"patterns": [""]}"#, "a pattern is empty"),
        (r#"{"patterns": ["a*b"]}"#, "contains the mask `*`"),
        (
            r#"{"patterns": ["x"], "mask": "é"}"#,
            "must be one ASCII character",
        ),
        (r#"{"patterns": ["x"], "mask": "ab"}"#, "field `mask`"),
        (
            r#"{"patterns": ["x"], "extra": 1}"#,
            "unknown field `extra`",
        ),
        ("", "no configuration given"),
    ];
    for (json, expected) in cases {
        let err = TestFilter::<Redact>::configure(json)
            .err()
            .unwrap_or_else(|| panic!("{json} was accepted"));
        assert!(err.to_string().contains(expected), "{json}: got {err}");
    }
}

#[test]
fn masking_and_holding_back_by_themselves() {
    let patterns = vec!["abc".to_owned(), "bcd".to_owned()];
    let mut data = b"xabcdabc".to_vec();
    assert_eq!(mask_matches(&mut data, &patterns, b'*'), 2);
    assert_eq!(data, b"x***d***");
    assert_eq!(unfinished_tail(b"xxab", &patterns), 2);
    assert_eq!(unfinished_tail(b"xxb", &patterns), 1, "`b` may start `bcd`");
    assert_eq!(unfinished_tail(b"xxx", &patterns), 0);
    assert_eq!(unfinished_tail(b"", &patterns), 0);
}

#[test]
fn a_tail_waiting_when_the_body_ends_at_trailers_is_reported() {
    let mut f = filter();
    let response = TestResponse::new(200)
        .header("content-type", "text/plain")
        .chunk("pass=hun")
        .trailer("x-done", "1");
    let ex = f.send(TestRequest::get("/").respond_with(response));
    assert_eq!(
        ex.response_body(),
        b"pass=",
        "`hun` was held for a next chunk that never came"
    );
    assert!(
        ex.logged("on_response_body: the body ended at the trailers"),
        "{:?}",
        ex.logs()
    );
}

#[test]
fn a_body_cut_anywhere_comes_out_as_if_masked_whole() {
    // Random bodies cut into random chunks (empty ones too), through the filter,
    // against the whole body masked at once; patterns inside others, sharing
    // starts and ends, a long one, and the example's.
    let configs = [
        r##"{"patterns": ["abcz", "bc"], "mask": "#"}"##,
        r##"{"patterns": ["abc", "cd"], "mask": "#"}"##,
        r##"{"patterns": ["aab", "ab", "baa"], "mask": "#"}"##,
        r##"{"patterns": ["abcab", "cab", "c"], "mask": "#"}"##,
        EXAMPLE,
    ];
    let mut seed: u64 = 0x853c_49e6_748f_ea9b;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut masked = 0;
    for round in 0..1000 {
        let json = configs[round % configs.len()];
        let patterns: Vec<String> = match json {
            EXAMPLE => vec!["sk_live_51HxQz".into(), "hunter2".into()],
            _ => json
                .split('"')
                .skip(3)
                .step_by(2)
                .take_while(|p| *p != "mask")
                .map(str::to_owned)
                .collect(),
        };
        // Mostly short bodies in tiny chunks, sometimes long ones (the scan's stretches).
        let len = if round % 10 == 0 {
            4000 + next(4000)
        } else {
            next(60)
        };
        let mut body = Vec::new();
        while body.len() < len {
            if next(4) == 0 {
                let p = patterns[next(patterns.len())].as_bytes();
                body.extend_from_slice(&p[..1 + next(p.len())]);
            } else {
                body.push(b"abcdz _"[next(7)]);
            }
        }
        let mut chunks = Vec::new();
        let mut rest = &body[..];
        while !rest.is_empty() {
            let n = next(rest.len().min(if len > 1000 { 3000 } else { 20 }) + 1);
            chunks.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        let response = chunks.iter().fold(
            TestResponse::new(200).header("content-type", "text/plain"),
            |r, c| r.chunk(c.clone()),
        );
        let mut f = TestFilter::<Redact>::configure(json).unwrap();
        let ex = f.send(TestRequest::get("/").respond_with(response));
        let mut whole = body.clone();
        let n = mask_matches(&mut whole, &patterns, b'#');
        assert_eq!(
            String::from_utf8_lossy(ex.response_body()),
            String::from_utf8_lossy(&whole),
            "{json}, round {round}, in {} chunks",
            chunks.len()
        );
        assert_eq!(f.metric("redact_matches"), Some(n), "{json}");
        masked += n;
    }
    assert!(masked > 1000, "only {masked} matches");
}

#[test]
fn content_types_match_by_prefix_whatever_their_case() {
    let config = r##"{"patterns": ["hunter2"], "mask": "#", "content_types": ["Text/", "application/JSON"]}"##;
    for (content_type, masked) in [
        ("text/plain", true),
        ("TEXT/HTML; charset=utf-8", true),
        ("Application/Json", true),
        ("application/jso", false),
        ("tex", false),
        ("image/png", false),
    ] {
        let mut f = TestFilter::<Redact>::configure(config).unwrap();
        let ex = f.send(
            TestRequest::get("/").respond_with(
                TestResponse::new(200)
                    .header("content-type", content_type)
                    .chunk("pw=hunter2"),
            ),
        );
        let want: &[u8] = if masked { b"pw=#######" } else { b"pw=hunter2" };
        assert_eq!(ex.response_body(), want, "{content_type}");
    }
}
