//! A tiny HTTP/1.1 server for the end-to-end tests: an upstream or an
//! authorization service behind Envoy, one request per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// What a test server answers: status, headers, body, and a delay before answering.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

/// An answer with this status and body, no extra headers, at once.
pub fn answer(status: u16, body: impl AsRef<[u8]>) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.as_ref().to_vec(),
        delay: Duration::ZERO,
    }
}

/// One request as the server read it off the wire.
pub struct Received {
    /// The request line and headers, up to and including the blank line, as sent
    /// (Envoy sends lowercase header names).
    pub head: Vec<u8>,
    /// The body: `content-length` bytes, or the chunks of a chunked body joined.
    pub body: Vec<u8>,
}

impl Received {
    /// The head as text (lossy).
    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }
}

/// A server on a free port whose `answer` gets the request head (as text);
/// returns its `host:port`.
pub fn serve(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> String {
    serve_requests(move |r| answer(&r.head_text()))
}

/// A server on a free port whose `answer` gets the whole request; returns its `host:port`.
pub fn serve_requests(answer: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test server");
    let addr = listener.local_addr().expect("its address").to_string();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = handle(stream, &*answer);
            });
        }
    });
    addr
}

fn handle(stream: TcpStream, answer: &dyn Fn(&Received) -> Answer) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    let a = answer(&request);
    std::thread::sleep(a.delay);
    let mut out = format!(
        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        a.status,
        a.body.len()
    );
    for (k, v) in &a.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    writer.write_all(out.as_bytes())?;
    writer.write_all(&a.body)
}

/// Reads one request (head and body); `None` when the peer closed before a head.
fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Received>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read_until(b'\n', &mut head)? == 0 {
            return Ok(None);
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')
                .map(|v| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line)?;
            let size = String::from_utf8_lossy(&line);
            let size = size.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if size == 0 {
                // Trailers (if any) up to the blank line.
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line)? == 0 || line == b"\r\n" {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = field("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Received { head, body }))
}
