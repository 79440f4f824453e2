//! A raw HTTP/1.1 client for hostile requests: any method, path and header
//! bytes, repeated headers, large or chunked bodies, and bodies cut off midway.
//! The body is written from its own thread while the answer is read, so an
//! answer Envoy sends before the body is in (a denial) is still seen.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xtask::envoy::HttpResponse;

/// How the request's body is sent.
#[derive(Clone, Debug)]
pub enum Body {
    /// No body.
    None,
    /// With `content-length`.
    Sized(Vec<u8>),
    /// `transfer-encoding: chunked`, in chunks of at most this many bytes.
    Chunked(Vec<u8>, usize),
    /// `content-length: declared`, but only `sent` is written before the client
    /// closes its side of the connection.
    CutOff { declared: usize, sent: Vec<u8> },
}

impl Body {
    /// The bytes the body carries when it arrives whole (`None` for a cut-off body).
    pub fn whole(&self) -> Option<&[u8]> {
        match self {
            Body::None => Some(b""),
            Body::Sized(b) | Body::Chunked(b, _) => Some(b),
            Body::CutOff { .. } => None,
        }
    }
}

/// One request, sent exactly as given (after `host: localhost`, unless it has
/// its own `host`, and `connection: close`).
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    /// The request target; any bytes.
    pub path: Vec<u8>,
    /// In order, repeated names allowed, values any bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Body,
}

impl RawRequest {
    /// A GET of `path` without headers.
    pub fn get(path: impl Into<Vec<u8>>) -> Self {
        RawRequest {
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
            body: Body::None,
        }
    }

    /// A POST of `path` with this body.
    pub fn post(path: impl Into<Vec<u8>>, body: Body) -> Self {
        RawRequest {
            method: "POST".into(),
            path: path.into(),
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header (after the ones already there).
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The bytes on the wire before the body.
    pub fn head(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.path);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // A request that sets its own `host` sends that one only.
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            out.extend_from_slice(b"host: localhost\r\n");
        }
        out.extend_from_slice(b"connection: close\r\n");
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        match &self.body {
            Body::None => {}
            Body::Sized(b) => {
                out.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes())
            }
            Body::Chunked(..) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Body::CutOff { declared, .. } => {
                out.extend_from_slice(format!("content-length: {declared}\r\n").as_bytes())
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Sized(b) => b.clone(),
            Body::Chunked(b, size) => {
                let size = (*size).max(1);
                let mut out = Vec::with_capacity(b.len() + b.len() / size * 8 + 8);
                for chunk in b.chunks(size) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
            Body::CutOff { sent, .. } => sent.clone(),
        }
    }
}

/// Sends `request` to 127.0.0.1:`port` on a fresh connection and reads the
/// answer. `Ok(None)`: the connection ended without a byte of answer.
pub fn send(port: u16, request: &RawRequest) -> Result<Option<HttpResponse>> {
    let stream = TcpStream::connect(("127.0.0.1", port)).context("connect to envoy")?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    let mut writer = stream.try_clone()?;
    let mut wire = request.head();
    wire.extend_from_slice(&request.body_bytes());
    let cut = matches!(request.body, Body::CutOff { .. });
    // Errors writing are expected when Envoy answers early and closes.
    let write = std::thread::spawn(move || {
        let _ = writer.write_all(&wire);
        if cut {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let result = read_response(&stream);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = write.join();
    result
}

/// Reads one response: to the end of its `content-length` body, or to the end
/// of the connection. A reset after a complete answer is not an error.
fn read_response(mut stream: &TcpStream) -> Result<Option<HttpResponse>> {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(done) = complete(&raw)? {
            return Ok(Some(done));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if raw.is_empty() && e.kind() == ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "reading the answer ({} bytes so far: {:?})",
                        raw.len(),
                        String::from_utf8_lossy(&raw[..raw.len().min(300)])
                    )
                })
            }
        }
    }
    if raw.is_empty() {
        return Ok(None);
    }
    // The connection ended: a response without a length ends here.
    match parse(&raw, true)? {
        Some(r) => Ok(Some(r)),
        None => bail!(
            "the connection ended inside an answer: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        ),
    }
}

fn complete(raw: &[u8]) -> Result<Option<HttpResponse>> {
    parse(raw, false)
}

/// Parses `raw` when it holds a whole response (`at_end`: the connection is over).
fn parse(raw: &[u8], at_end: bool) -> Result<Option<HttpResponse>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let mut lines = raw[..end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
            Some((name, l[colon + 1..].trim_ascii().to_vec()))
        })
        .collect();
    let rest = &raw[end + 4..];
    let field = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
    };
    let body = if let Some(length) = field("content-length") {
        let length: usize = length
            .parse()
            .with_context(|| format!("bad content-length `{length}`"))?;
        if rest.len() < length {
            return Ok(None);
        }
        rest[..length].to_vec()
    } else if field("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        match dechunk(rest) {
            Some(body) => body,
            None if at_end => bail!("the connection ended inside a chunked answer"),
            None => return Ok(None),
        }
    } else if at_end {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(HttpResponse {
        status,
        headers,
        body,
    }))
}

/// A whole chunked body, or `None` while its last chunk is missing.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
