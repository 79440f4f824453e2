//! Streaming bodies in a real Envoy 1.40: an upstream sends Server-Sent Events with
//! pauses between them, through `redact` (a filter with a response body hook), and
//! each event must reach the client as it is sent, not when the stream ends; the
//! secrets in them, one cut in two by a pause, arrive masked, and a held byte that
//! begins no secret goes out in front of the next chunk. Then through
//! `tests/fixtures/buffered` (`BODY_MODE = Buffer`): an ordinary body is held whole,
//! an event stream is not, unless the request chose `Buffer` for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_tests::{bootstrap, vm_failures, wasm_filter};
use xtask::build::{self, Options};
use xtask::envoy::{Backend, Code, Envoy, WasmFilter};
use xtask::project::{self, Filter};

const EVENTS: usize = 10;
const GAP: Duration = Duration::from_millis(300);
const REDACT: &str = r##"{"patterns": ["sk_live_51HxQz", "hunter2"], "mask": "#"}"##;

/// When each event was written by the upstream.
type Sent = Arc<Mutex<Vec<Instant>>>;

/// The second part of the next-to-last event, after `note=s`.
const LONG_REST: &[u8] = b"ome text long enough to be scanned apart key=sk_live_51HxQz\n\n";

/// An upstream answering every request with `EVENTS` events, one every `GAP`, as a
/// chunked body of `content_type`; the last event's secret is written in two parts
/// 100 ms apart, so Envoy hands the filter two chunks, and so is the event before it,
/// cut after a byte that may begin a secret. Returns its address.
fn slow_upstream(content_type: &'static str, sent: Sent) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().expect("its address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let _ = serve_events(stream, content_type, &sent);
            });
        }
    });
    addr
}

fn serve_events(stream: TcpStream, content_type: &str, sent: &Sent) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    writer.write_all(head.as_bytes())?;
    let chunk = |w: &mut TcpStream, data: &[u8]| -> std::io::Result<()> {
        w.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
        w.write_all(data)?;
        w.write_all(b"\r\n")?;
        w.flush()
    };
    for i in 0..EVENTS {
        std::thread::sleep(GAP);
        if i + 2 == EVENTS {
            // Cut after an `s` that may begin `sk_live_...` but does not: held, then
            // sent in front of a chunk long enough to be scanned apart from it.
            chunk(
                &mut writer,
                format!("id: {i}\ndata: event {i} note=s").as_bytes(),
            )?;
            sent.lock().unwrap().push(Instant::now());
            std::thread::sleep(Duration::from_millis(100));
            chunk(&mut writer, LONG_REST)?;
        } else if i + 1 == EVENTS {
            chunk(
                &mut writer,
                format!("id: {i}\ndata: event {i} password=hun").as_bytes(),
            )?;
            sent.lock().unwrap().push(Instant::now());
            std::thread::sleep(Duration::from_millis(100));
            chunk(&mut writer, b"ter2\n\n")?;
        } else {
            chunk(
                &mut writer,
                format!("id: {i}\ndata: event {i} key=sk_live_51HxQz\n\n").as_bytes(),
            )?;
            sent.lock().unwrap().push(Instant::now());
        }
    }
    writer.write_all(b"0\r\n\r\n")
}

/// The body of a chunked HTTP/1.1 response (everything after the head).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let start = eol + 2;
        body.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    body
}

/// The body of a raw `200` answer.
fn body_of(raw: &[u8]) -> String {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    String::from_utf8_lossy(&dechunk(&raw[head_end..])).into_owned()
}

/// Sends `GET /events` (with `extra` header lines) and reads the answer as it comes:
/// the raw bytes, and when `id: <i>` of each event was first seen.
fn watch_events(port: u16, extra: &str) -> (Vec<u8>, Vec<Option<Instant>>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to envoy");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!(
        "GET /events HTTP/1.1\r\nhost: example.com\r\naccept: text/event-stream\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut seen = vec![None; EVENTS];
    let mut buf = [0u8; 4096];
    while !raw.ends_with(b"0\r\n\r\n") {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        raw.extend_from_slice(&buf[..n]);
        let now = Instant::now();
        for (i, at) in seen.iter_mut().enumerate() {
            let marker = format!("id: {i}\n");
            if at.is_none() && raw.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                *at = Some(now);
            }
        }
    }
    (raw, seen)
}

#[test]
fn server_sent_events_pass_a_body_filter_as_they_are_sent() {
    let sent: Sent = Arc::default();
    let mut b = bootstrap(vec![wasm_filter("redact", Some(REDACT))]);
    b.backend = Backend::Upstream(slow_upstream("text/event-stream", sent.clone()));
    let envoy = Envoy::start(&b).unwrap();

    let (raw, seen) = watch_events(envoy.port, "");
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), EVENTS, "the upstream sent every event");
    let latencies: Vec<Duration> = seen
        .iter()
        .zip(&sent)
        .map(|(got, sent)| {
            got.expect("every event arrived")
                .saturating_duration_since(*sent)
        })
        .collect();
    eprintln!("event latencies through envoy + redact: {latencies:?}");
    // Held until the end, the first event would arrive ~2.7 s after it was sent.
    assert!(
        latencies[0] < Duration::from_millis(250),
        "first event after {:?}",
        latencies[0]
    );
    for (i, latency) in latencies.iter().enumerate() {
        assert!(
            *latency < GAP,
            "event {i} arrived {latency:?} after it was sent: held"
        );
    }

    let body = body_of(&raw);
    assert!(
        !body.contains("sk_live") && !body.contains("hunter2"),
        "a secret got through: {body}"
    );
    assert_eq!(
        body.matches("key=##############\n\n").count(),
        EVENTS - 1,
        "{body}"
    );
    assert!(
        body.ends_with("data: event 9 password=#######\n\n"),
        "the cut secret was masked: {body}"
    );
    assert!(
        body.contains(
            "data: event 8 note=some text long enough to be scanned apart key=##############\n\n"
        ),
        "the held `s` went out in front of the next chunk: {body}"
    );
    assert_eq!(
        envoy.stat("wasmcustom.redact_matches").unwrap(),
        Some(EVENTS as u64)
    );
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

/// Envoy with `tests/fixtures/buffered` in front of a slow upstream sending `content_type`.
fn buffered_envoy(content_type: &'static str, sent: Sent) -> Envoy {
    let fixture = Filter {
        name: "buffered".into(),
        dir: project::root().join("tests/fixtures/buffered"),
    };
    let module = match build::build(&fixture, &Options::default()) {
        Ok(built) => built.path,
        Err(e) => panic!("cannot build the buffered fixture: {e:#}"),
    };
    let filter = WasmFilter {
        name: "buffered".into(),
        root_id: "buffered".into(),
        code: Code::Local(module),
        configuration: None,
        failure_policy: None,
    };
    let mut b = bootstrap(vec![filter]);
    b.backend = Backend::Upstream(slow_upstream(content_type, sent));
    Envoy::start(&b).unwrap()
}

/// When the first event arrived, measured from when the last was sent (negative: before).
fn first_after_last(seen: &[Option<Instant>], sent: &[Instant]) -> Option<(bool, Duration)> {
    let (first, last) = (seen.first().copied().flatten()?, *sent.last()?);
    Some(match first.checked_duration_since(last) {
        Some(after) => (true, after),
        None => (false, last - first),
    })
}

#[test]
fn a_filter_wide_buffer_holds_an_ordinary_body_whole() {
    let sent: Sent = Arc::default();
    let envoy = buffered_envoy("text/plain", sent.clone());
    let (raw, seen) = watch_events(envoy.port, "");
    let body = body_of(&raw);
    assert!(body.starts_with("[Buffer]id: 0\n"), "{body}");
    assert_eq!(
        body.matches('[').count(),
        1,
        "one call with the whole body: {body}"
    );
    let (after, by) = first_after_last(&seen, &sent.lock().unwrap()).expect("events sent and seen");
    assert!(
        after,
        "the first event arrived {by:?} before the last was sent: not held"
    );
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn a_filter_wide_buffer_streams_server_sent_events() {
    let sent: Sent = Arc::default();
    let envoy = buffered_envoy("text/event-stream", sent.clone());
    let (raw, seen) = watch_events(envoy.port, "");
    let body = body_of(&raw);
    assert!(!body.contains("[Buffer]"), "{body}");
    assert!(
        body.matches("[Stream]id: ").count() == EVENTS,
        "one call per event: {body}"
    );
    let sent = sent.lock().unwrap();
    for (i, (got, sent)) in seen.iter().zip(sent.iter()).enumerate() {
        let latency = got
            .expect("every event arrived")
            .saturating_duration_since(*sent);
        assert!(
            latency < GAP,
            "event {i} arrived {latency:?} after it was sent: held"
        );
    }
}

#[test]
fn buffer_chosen_for_one_request_holds_even_server_sent_events() {
    let sent: Sent = Arc::default();
    let envoy = buffered_envoy("text/event-stream", sent.clone());
    let (raw, seen) = watch_events(envoy.port, "x-buffer: 1\r\n");
    let body = body_of(&raw);
    assert!(
        body.starts_with("[Buffer]id: 0\n") && body.matches('[').count() == 1,
        "{body}"
    );
    let (after, by) = first_after_last(&seen, &sent.lock().unwrap()).expect("events sent and seen");
    assert!(
        after,
        "the first event arrived {by:?} before the last was sent: not held"
    );
}
