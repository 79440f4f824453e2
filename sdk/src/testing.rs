//! A native test harness: run a filter's hooks with plain `cargo test`, no Envoy, no wasm.
//!
//! The harness drives the same runtime the wasm module uses, against an
//! in-memory host with Envoy's header semantics. A configuration Envoy would
//! refuse is refused here with the same message.
//!
//! ```
//! use weir::testing::{TestFilter, TestRequest};
//!
//! #[derive(Default)]
//! struct Hello;
//! impl weir::HttpFilter for Hello {
//!     type Config = ();
//!     fn default_config() -> Option<()> { Some(()) }
//!     fn on_response_headers(&mut self, cx: &mut weir::Response<'_, ()>) -> weir::Result {
//!         cx.headers().set("hello", "world")?;
//!         Ok(weir::Action::Continue)
//!     }
//! }
//!
//! let mut filter = TestFilter::<Hello>::configure("").unwrap();
//! let exchange = filter.send(TestRequest::get("/"));
//! assert_eq!(exchange.status(), 200);
//! assert_eq!(exchange.response_header("hello").unwrap(), "world");
//! ```

use crate::filter::{Action, HttpFilter};
use crate::header::Value;
use crate::host::native::{self, SentReply};
use crate::host::Map;
use crate::log::Level;
use crate::runtime::Plugin;
use crate::ConfigError;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A configured filter, ready to take requests.
pub struct TestFilter<F: HttpFilter> {
    plugin: Plugin<F>,
}

impl<F: HttpFilter> TestFilter<F> {
    /// Configures the filter with `json` (empty for "no configuration"), as Envoy would.
    pub fn configure(json: &str) -> Result<Self, ConfigError> {
        let name = std::any::type_name::<F>().rsplit("::").next().unwrap_or("filter");
        let mut plugin = Plugin::new(name);
        plugin.configure(json.as_bytes())?;
        Ok(TestFilter { plugin })
    }

    /// Replaces the configuration, as a configuration update in Envoy would.
    pub fn reconfigure(&mut self, json: &str) -> Result<(), ConfigError> {
        self.plugin.configure(json.as_bytes())
    }

    /// Sends one request through the filter and, unless the filter answered it
    /// itself, the request's canned upstream response back through it.
    pub fn send(&mut self, request: TestRequest) -> Exchange {
        native::with(|s| *s = Default::default());
        native::with(|s| s.maps[Map::RequestHeaders as usize] = request.headers);
        let mut stream = self.plugin.stream();
        let request_action = stream.request_headers(request.body_empty);
        let upstream = native::with(|s| {
            (s.reply.is_none() && request_action == Action::Continue)
                .then(|| s.maps[Map::RequestHeaders as usize].clone())
        });
        let mut response_action = None;
        if upstream.is_some() {
            native::with(|s| s.maps[Map::ResponseHeaders as usize] = request.response.headers);
            response_action = Some(stream.response_headers(request.response.body_empty));
        }
        native::with(|s| {
            let state = std::mem::take(s);
            Exchange {
                upstream,
                response: state.maps[Map::ResponseHeaders as usize].clone(),
                reply: state.reply,
                logs: state.logs,
                request_action,
                response_action,
            }
        })
    }
}

/// A request to send through a [`TestFilter`], with the upstream's answer to it.
#[derive(Clone, Debug)]
pub struct TestRequest {
    headers: Pairs,
    body_empty: bool,
    response: TestResponse,
}

impl TestRequest {
    /// A request with this method and path, `:authority: example.com`, `:scheme: http`.
    pub fn new(method: &str, path: &str) -> Self {
        TestRequest {
            headers: vec![
                (b":authority".to_vec(), b"example.com".to_vec()),
                (b":path".to_vec(), path.as_bytes().to_vec()),
                (b":method".to_vec(), method.as_bytes().to_vec()),
                (b":scheme".to_vec(), b"http".to_vec()),
            ],
            body_empty: true,
            response: TestResponse::new(200),
        }
    }

    /// A `GET` for `path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Adds a header; the value may be any bytes, as on the wire.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let name = name.to_ascii_lowercase().into_bytes();
        let value = value.as_ref().to_vec();
        match name.as_slice() {
            b":authority" | b":path" | b":method" | b":scheme" => {
                self.headers.retain(|(k, _)| *k != name);
            }
            _ => {}
        }
        self.headers.push((name, value));
        self
    }

    /// Marks the request as carrying a body (so headers are not end of stream).
    pub fn with_body(mut self) -> Self {
        self.body_empty = false;
        self
    }

    /// The upstream's response (default: 200 with no headers).
    pub fn respond_with(mut self, response: TestResponse) -> Self {
        self.response = response;
        self
    }
}

/// The upstream's canned response.
#[derive(Clone, Debug)]
pub struct TestResponse {
    headers: Pairs,
    body_empty: bool,
}

impl TestResponse {
    /// A response with this status.
    pub fn new(status: u16) -> Self {
        TestResponse {
            headers: vec![(b":status".to_vec(), status.to_string().into_bytes())],
            body_empty: true,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_ascii_lowercase().into_bytes(), value.as_ref().to_vec()));
        self
    }
}

/// What happened to one request.
#[derive(Debug)]
pub struct Exchange {
    upstream: Option<Pairs>,
    response: Pairs,
    reply: Option<SentReply>,
    logs: Vec<(u32, String)>,
    request_action: Action,
    response_action: Option<Action>,
}

fn find(pairs: &Pairs, name: &str) -> Option<Value> {
    let name = name.to_ascii_lowercase();
    pairs.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| Value(v.clone()))
}

impl Exchange {
    /// The status the client gets: the local reply's, or the upstream's.
    pub fn status(&self) -> u16 {
        if let Some(reply) = &self.reply {
            return reply.status as u16;
        }
        find(&self.response, ":status")
            .and_then(|v| v.to_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    }

    /// A header of the response the client gets (the local reply's, when there is one).
    pub fn response_header(&self, name: &str) -> Option<Value> {
        match &self.reply {
            Some(reply) => find(&reply.headers, name),
            None => find(&self.response, name),
        }
    }

    /// Every header of the response the client gets.
    pub fn response_headers(&self) -> Vec<(String, Value)> {
        let pairs = self.reply.as_ref().map_or(&self.response, |r| &r.headers);
        pairs.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), Value(v.clone()))).collect()
    }

    /// A header of the request as forwarded upstream; `None` when it was not forwarded.
    pub fn upstream_header(&self, name: &str) -> Option<Value> {
        self.upstream.as_ref().and_then(|h| find(h, name))
    }

    /// True when the request went on to the upstream.
    pub fn forwarded(&self) -> bool {
        self.upstream.is_some()
    }

    /// The body of the local reply, when the filter sent one.
    pub fn reply_body(&self) -> Option<&[u8]> {
        self.reply.as_ref().map(|r| &r.body[..])
    }

    /// The gRPC status of the local reply, when it had one.
    pub fn reply_grpc_status(&self) -> Option<u32> {
        self.reply.as_ref().and_then(|r| r.grpc_status)
    }

    /// True when the filter answered the request itself.
    pub fn replied_locally(&self) -> bool {
        self.reply.is_some()
    }

    /// What the request-headers hook returned.
    pub fn request_action(&self) -> Action {
        self.request_action
    }

    /// What the response-headers hook returned, when it ran.
    pub fn response_action(&self) -> Option<Action> {
        self.response_action
    }

    /// Every line the filter logged, with its level.
    pub fn logs(&self) -> Vec<(Level, &str)> {
        const LEVELS: [Level; 6] =
            [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Critical];
        self.logs
            .iter()
            .map(|(l, m)| (LEVELS.get(*l as usize).copied().unwrap_or(Level::Critical), m.as_str()))
            .collect()
    }
}
