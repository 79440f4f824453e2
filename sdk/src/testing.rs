//! A native test harness: run a filter's hooks with plain `cargo test`, no Envoy, no wasm.
//!
//! The harness drives the same runtime the wasm module uses, against an
//! in-memory host with Envoy's header semantics. A configuration Envoy would
//! refuse is refused here with the same message. Each [`TestFilter::send`]
//! runs one request through every hook the filter has (headers, body,
//! trailers, both ways, callouts answered by [`TestFilter::answer_callouts`],
//! then `on_log`) and returns an [`Exchange`] to assert on: the headers it
//! forwarded, the local reply, its logs, its callouts; metrics and shared data
//! outlive the request and are read from the [`TestFilter`].
//!
//! ```
//! use weir::testing::{TestFilter, TestRequest};
//!
//! #[derive(Default)]
//! struct Hello;
//! #[weir::filter]
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
//!
//! Host state lives in thread-locals (each test runs on its own thread):
//! use one `TestFilter` per test.
//!
//! # Against the compiled module
//!
//! With `WEIR_TEST_MODULE=path/to/filter.wasm` in the environment, the same tests run
//! through the compiled module instead: [`TestFilter::configure`] loads it in an
//! interpreter (`weir-wasm-host`) whose host calls land in this same in-memory host,
//! and every hook, callout answer and tick goes through the module's exports, so each
//! [`Exchange`] is built the same way. The module must be the filter under test: its
//! `weir.filter` section (written by [`export!`](crate::export)) is compared with the
//! test's filter type, and another filter's module fails the test at `configure`. A
//! relative path is also looked up from the parents of the package's directory.
//! `cargo xtask test` runs every filter's tests both ways, on both wasm targets.

mod module;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::callout::{CalloutResponse, Sent};
use crate::filter::HttpFilter;
use crate::header::Value;
use crate::host::native::{self, SentCallout, SentReply};
use crate::host::{Buffer, Direction, Map, MetricKind};
use crate::log::Level;
use crate::outcome::Action;
use crate::runtime::{Plugin, Stream};
use crate::ConfigError;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
type Responder = Box<dyn FnMut(&Call) -> Option<TestResponse>>;

/// A configured filter, ready to take requests.
pub struct TestFilter<F: HttpFilter> {
    engine: Engine<F>,
    /// The plugin's name (`plugin_name`).
    name: &'static str,
    responder: Option<Responder>,
    refuse: bool,
    /// Answer the newest callout first.
    newest_first: bool,
    /// The callouts the last tick (and its answers' hooks) made.
    tick_calls: Vec<Call>,
}

/// A callout's answer as the host hands it over.
#[derive(Clone, Copy, Debug)]
enum Delivery {
    /// `proxy_on_http_call_response` with this body size.
    Http(usize),
    /// `proxy_on_grpc_receive` with this message size.
    GrpcMessage(usize),
    /// `proxy_on_grpc_close` with this status.
    GrpcClose(u32),
}

impl Delivery {
    /// Reads the answer from the host, as the wasm side does.
    fn read<F: HttpFilter>(self) -> CalloutResponse {
        match self {
            Delivery::Http(size) => CalloutResponse::read(size, F::BODY_LIMIT),
            Delivery::GrpcMessage(size) => {
                CalloutResponse::grpc_message_received(size, F::BODY_LIMIT)
            }
            Delivery::GrpcClose(status) => CalloutResponse::grpc_closed(status),
        }
    }

    /// Delivers it through the module's export.
    fn to_module(self, module: &mut module::Module, token: u32) {
        match self {
            Delivery::Http(size) => {
                let headers = pairs_in(Map::HttpCallResponseHeaders) as usize;
                module.callout_response(token, headers, size)
            }
            Delivery::GrpcMessage(size) => module.grpc_receive(token, size),
            Delivery::GrpcClose(status) => module.grpc_close(token, status),
        }
    }
}

/// What runs the hooks: the filter in this process, or its compiled module.
enum Engine<F: HttpFilter> {
    Native(Plugin<F>),
    Module(Rc<RefCell<module::Module>>),
}

/// One request under way, in either engine.
enum Run<F: HttpFilter> {
    Native(Stream<F>),
    Module(Rc<RefCell<module::Module>>, i32),
}

fn pairs_in(map: Map) -> i32 {
    native::with(|s| s.maps[map as usize].len() as i32)
}

impl<F: HttpFilter> Run<F> {
    fn hook(
        &mut self,
        name: &str,
        args: &[i32],
        native: impl FnOnce(&mut Stream<F>) -> Action,
    ) -> Action {
        match self {
            Run::Native(stream) => native(stream),
            Run::Module(module, id) => {
                let mut all = vec![*id];
                all.extend_from_slice(args);
                module.borrow_mut().hook(name, &all)
            }
        }
    }

    fn request_headers(&mut self, end: bool) -> Action {
        let n = pairs_in(Map::RequestHeaders);
        self.hook("proxy_on_request_headers", &[n, end.into()], |s| {
            s.request_headers(end)
        })
    }

    fn request_body(&mut self, size: usize, end: bool) -> Action {
        self.hook("proxy_on_request_body", &[size as i32, end.into()], |s| {
            s.request_body(size, end)
        })
    }

    fn request_trailers(&mut self) -> Action {
        let n = pairs_in(Map::RequestTrailers);
        self.hook("proxy_on_request_trailers", &[n], |s| s.request_trailers())
    }

    fn response_headers(&mut self, end: bool) -> Action {
        let n = pairs_in(Map::ResponseHeaders);
        self.hook("proxy_on_response_headers", &[n, end.into()], |s| {
            s.response_headers(end)
        })
    }

    fn response_body(&mut self, size: usize, end: bool) -> Action {
        self.hook("proxy_on_response_body", &[size as i32, end.into()], |s| {
            s.response_body(size, end)
        })
    }

    fn response_trailers(&mut self) -> Action {
        let n = pairs_in(Map::ResponseTrailers);
        self.hook("proxy_on_response_trailers", &[n], |s| {
            s.response_trailers()
        })
    }

    fn callout_response(&mut self, sent: Sent, delivery: Delivery) {
        match self {
            Run::Native(stream) => stream.callout_response(sent, delivery.read::<F>()),
            Run::Module(module, _) => delivery.to_module(&mut module.borrow_mut(), sent.token),
        }
    }

    /// The access log, then the end of the request.
    fn log(self) {
        match self {
            Run::Native(mut stream) => stream.log(),
            Run::Module(module, id) => module.borrow_mut().finish(id),
        }
    }
}

/// As Envoy does, a header map its headers hook let go on (`Continue`) is no
/// longer shown to the later hooks of that direction: its body and trailers
/// hooks read nothing there, and writes fail. (Paused and later resumed, it stays.)
fn hide_once_continued(map: Map, action: Action) {
    if action == Action::Continue {
        native::with(|s| s.hidden[map as usize] = true);
    }
}

/// What the host still holds in `buffer`, taken (none when empty): a held body
/// that goes on with the trailers.
fn held(buffer: Buffer) -> Option<Vec<u8>> {
    let bytes = native::with(|s| std::mem::take(&mut s.buffers[buffer as usize]));
    (!bytes.is_empty()).then_some(bytes)
}

impl<F: HttpFilter> TestFilter<F> {
    /// Configures the filter with `json` (empty for "no configuration"), as Envoy would.
    /// Metrics, shared data and the tick period start empty.
    pub fn configure(json: &str) -> Result<Self, ConfigError> {
        let name = std::any::type_name::<F>()
            .rsplit("::")
            .next()
            .unwrap_or("filter");
        native::lasting(|l| *l = Default::default());
        crate::log::set_filter_name(name);
        native::with(|s| *s = Default::default());
        let engine = match module::requested() {
            Some(path) => {
                let loaded = module::Module::load(&path, std::any::type_name::<F>())
                    .unwrap_or_else(|e| panic!("{e}"));
                Engine::Module(Rc::new(RefCell::new(loaded)))
            }
            None => Engine::Native(Plugin::new(name)),
        };
        let mut filter = TestFilter {
            engine,
            name,
            responder: None,
            refuse: false,
            newest_first: false,
            tick_calls: Vec::new(),
        };
        filter.reconfigure(json)?;
        Ok(filter)
    }

    /// Replaces the configuration, as a configuration update in Envoy would.
    pub fn reconfigure(&mut self, json: &str) -> Result<(), ConfigError> {
        match &mut self.engine {
            Engine::Native(plugin) => plugin.configure(json.as_bytes()),
            Engine::Module(module) => module.borrow_mut().configure(json.as_bytes()),
        }
    }

    /// True when the tests run through a compiled module (`WEIR_TEST_MODULE`), not
    /// the filter compiled into the test: a test that needs the native side (it
    /// reads process state the module cannot see) can skip itself.
    pub fn is_module(&self) -> bool {
        matches!(self.engine, Engine::Module(_))
    }

    fn stream(&mut self) -> Run<F> {
        match &self.engine {
            Engine::Native(plugin) => Run::Native(plugin.stream()),
            Engine::Module(module) => {
                let id = module.borrow_mut().stream();
                Run::Module(module.clone(), id)
            }
        }
    }

    /// Answers every callout with `answer(call)`: `Some(response)` is the
    /// upstream's answer, `None` a failure or timeout. Without it, every
    /// callout fails as if the cluster timed out.
    pub fn answer_callouts(
        &mut self,
        answer: impl FnMut(&Call) -> Option<TestResponse> + 'static,
    ) -> &mut Self {
        self.responder = Some(Box::new(answer));
        self
    }

    /// Answers the callouts in flight newest first (by default the oldest is
    /// answered first), e.g. to see the second of two parallel callouts win a
    /// [`Wait::First`](crate::Wait::First). Every callout is answered, so answers
    /// arriving after the request resumed are delivered too (and must be dropped).
    pub fn answer_newest_first(&mut self) -> &mut Self {
        self.newest_first = true;
        self
    }

    /// Makes the host refuse callouts (as Envoy does for an unknown cluster).
    pub fn refuse_callouts(&mut self) -> &mut Self {
        self.refuse = true;
        self
    }

    /// Sends one request through the filter and, unless the filter answered it
    /// itself or held it, the request's canned upstream response back through it.
    /// Bodies arrive in the chunks they were given ([`TestRequest::chunk`]).
    pub fn send(&mut self, request: TestRequest) -> Exchange {
        native::with(|s| {
            *s = Default::default();
            s.refuse_callouts = self.refuse;
            s.maps[Map::RequestHeaders as usize] = request.headers.clone();
            s.properties = request.properties(match &self.engine {
                Engine::Native(plugin) => plugin.name,
                Engine::Module(_) => self.name,
            });
        });
        let mut stream = self.stream();
        let mut callouts = Vec::new();
        let (has_body, has_trailers) = (!request.chunks.is_empty(), !request.trailers.is_empty());

        let request_action = stream.request_headers(!has_body && !has_trailers);
        let mut open = self.settle(
            &mut stream,
            request_action,
            Direction::Request,
            &mut callouts,
        );
        hide_once_continued(Map::RequestHeaders, request_action);
        let mut sent = Vec::new();
        if open && has_body {
            (open, sent) = self.deliver(
                &mut stream,
                Direction::Request,
                &request.chunks,
                has_trailers,
                &mut callouts,
            );
        }
        if open && has_trailers {
            native::with(|s| s.maps[Map::RequestTrailers as usize] = request.trailers.clone());
            let a = stream.request_trailers();
            open = self.settle(&mut stream, a, Direction::Request, &mut callouts);
            if open {
                sent.extend(held(Buffer::RequestBody));
            }
        }
        let upstream = open.then(|| {
            native::with(|s| Forwarded {
                headers: s.maps[Map::RequestHeaders as usize].clone(),
                body: sent.concat(),
                chunks: sent,
                trailers: s.maps[Map::RequestTrailers as usize].clone(),
            })
        });

        let mut response_action = None;
        let mut received = Vec::new();
        if open {
            let response = &request.response;
            let (has_body, has_trailers) =
                (!response.chunks.is_empty(), !response.trailers.is_empty());
            native::with(|s| {
                s.maps[Map::ResponseHeaders as usize] = response.headers.clone();
                let status = find(&response.headers, ":status").map_or(Vec::new(), |v| v.0);
                s.properties.push(("response.code".into(), status));
            });
            let a = stream.response_headers(!has_body && !has_trailers);
            response_action = Some(a);
            let mut open = self.settle(&mut stream, a, Direction::Response, &mut callouts);
            hide_once_continued(Map::ResponseHeaders, a);
            if open && has_body {
                (open, received) = self.deliver(
                    &mut stream,
                    Direction::Response,
                    &response.chunks,
                    has_trailers,
                    &mut callouts,
                );
            }
            if open && has_trailers {
                native::with(|s| {
                    s.maps[Map::ResponseTrailers as usize] = response.trailers.clone()
                });
                let a = stream.response_trailers();
                if self.settle(&mut stream, a, Direction::Response, &mut callouts) {
                    received.extend(held(Buffer::ResponseBody));
                }
            }
        }
        native::with(|s| s.hidden = Default::default()); // the access log sees every map
        stream.log();
        native::with(|s| {
            let state = std::mem::take(s);
            Exchange {
                upstream,
                response: state.maps[Map::ResponseHeaders as usize].clone(),
                response_body: received.concat(),
                response_chunks: received,
                response_trailers: state.maps[Map::ResponseTrailers as usize].clone(),
                reply: state.reply,
                logs: state.logs,
                callouts,
                request_action,
                response_action,
                grpc: find(&request.headers, "content-type")
                    .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc")),
            }
        })
    }

    /// Delivers `chunks` one at a time, as Envoy does: each is added to what the
    /// host holds for `direction` (a chunk the filter paused stays there), and
    /// whatever the hook lets go on is recorded as passed. Returns whether the
    /// stream is still open and what passed, in order.
    fn deliver(
        &mut self,
        stream: &mut Run<F>,
        direction: Direction,
        chunks: &[Vec<u8>],
        has_trailers: bool,
        callouts: &mut Vec<Call>,
    ) -> (bool, Vec<Vec<u8>>) {
        let buffer = match direction {
            Direction::Request => Buffer::RequestBody,
            Direction::Response => Buffer::ResponseBody,
        };
        let mut passed = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len() && !has_trailers;
            let size = native::with(|s| {
                s.buffers[buffer as usize].extend_from_slice(chunk);
                s.buffers[buffer as usize].len()
            });
            let action = match direction {
                Direction::Request => stream.request_body(size, end),
                Direction::Response => stream.response_body(size, end),
            };
            let goes_on = self.settle(stream, action, direction, callouts);
            if native::with(|s| s.reply.is_some()) {
                return (false, passed);
            }
            if goes_on {
                passed.push(native::with(|s| {
                    std::mem::take(&mut s.buffers[buffer as usize])
                }));
            } else if end {
                return (false, passed); // held at the end of the stream, and nothing resumed it
            }
        }
        (true, passed)
    }

    /// Answers the callouts a hook made, then says whether the stream goes on:
    /// the hook continued, or a callout's hook resumed it, and nobody replied.
    fn settle(
        &mut self,
        stream: &mut Run<F>,
        action: Action,
        direction: Direction,
        log: &mut Vec<Call>,
    ) -> bool {
        while let Some((sent, delivery)) = self.next_answer(log) {
            stream.callout_response(sent, delivery);
        }
        native::with(|s| {
            let resumed = s.resumed.contains(&direction);
            s.resumed.clear();
            s.reply.is_none() && (action == Action::Continue || resumed)
        })
    }

    /// Puts the answer to the oldest (or newest) callout in flight into the host,
    /// recording the call in `log`: what to deliver. `None` when none is in flight
    /// or a local reply ended the request.
    fn next_answer(&mut self, log: &mut Vec<Call>) -> Option<(Sent, Delivery)> {
        let newest = self.newest_first;
        let (token, grpc) = native::with(|s| {
            if s.reply.is_some() || s.pending.is_empty() {
                None
            } else if newest {
                s.pending.pop()
            } else {
                Some(s.pending.remove(0))
            }
        })?;
        let sent = native::with(|s| {
            s.callouts
                .iter()
                .find(|c| c.token == token && c.grpc.is_some() == grpc)
                .cloned()
        })?;
        let call = Call(sent);
        let answer = self.responder.as_mut().and_then(|r| r(&call));
        log.push(call);
        let body = answer.as_ref().map_or(Vec::new(), TestResponse::whole_body);
        let delivery = match (&answer, grpc) {
            (_, false) => Delivery::Http(body.len()),
            (None, true) => Delivery::GrpcClose(GRPC_TIMEOUT.0),
            (Some(a), true) => match &a.grpc_error {
                Some((status, _)) => Delivery::GrpcClose(*status),
                None => Delivery::GrpcMessage(body.len()),
            },
        };
        native::with(|s| {
            s.status_message = match (&answer, grpc) {
                (None, true) => GRPC_TIMEOUT.1.as_bytes().to_vec(),
                (Some(a), _) => a.grpc_error.as_ref().map_or(Vec::new(), |e| e.1.clone()),
                _ => Vec::new(),
            };
            s.maps[Map::HttpCallResponseHeaders as usize] = match (&answer, grpc) {
                (Some(a), false) => a.headers.clone(),
                _ => Vec::new(),
            };
            let buffer = if grpc {
                Buffer::GrpcReceive
            } else {
                Buffer::HttpCallResponseBody
            };
            s.buffers[buffer as usize] = body;
        });
        Some((Sent { token, grpc }, delivery))
    }

    /// Runs the tick hook once, as Envoy does every [`tick_period`](Self::tick_period),
    /// then answers the callouts it made (with [`answer_callouts`](Self::answer_callouts))
    /// through [`on_tick_callout_response`](HttpFilter::on_tick_callout_response),
    /// and any those answers' hooks made in turn; returns what it all logged.
    /// [`tick_callouts`](Self::tick_callouts) shows the callouts.
    pub fn tick(&mut self) -> Vec<(Level, String)> {
        native::with(|s| {
            s.logs.clear();
            s.pending.clear();
            s.callouts.clear();
            s.refuse_callouts = self.refuse;
        });
        match &mut self.engine {
            Engine::Native(plugin) => plugin.tick(),
            Engine::Module(module) => module.borrow_mut().tick(),
        }
        let mut calls = Vec::new();
        while let Some((sent, delivery)) = self.next_answer(&mut calls) {
            match &mut self.engine {
                Engine::Native(plugin) => plugin.callout_response(sent, delivery.read::<F>()),
                Engine::Module(module) => delivery.to_module(&mut module.borrow_mut(), sent.token),
            }
        }
        self.tick_calls = calls;
        native::with(|s| std::mem::take(&mut s.logs))
            .into_iter()
            .map(|(l, m)| (level(l), m))
            .collect()
    }

    /// Sets the lowest level the host writes, as Envoy's `--log-level` or
    /// `/logging?wasm=...` would (trace, everything, by default): lines below it
    /// are dropped, and the logging macros do not even format them.
    ///
    /// ```
    /// # use weir::testing::{TestFilter, TestRequest};
    /// # #[derive(Default)] struct Chatty;
    /// # #[weir::filter] impl weir::HttpFilter for Chatty {
    /// #     type Config = (); fn default_config() -> Option<()> { Some(()) }
    /// #     fn on_request_headers(&mut self, _: &mut weir::Request<'_, ()>) -> weir::Result {
    /// #         weir::debug!("detail"); weir::info!("request"); Ok(weir::Action::Continue)
    /// #     }
    /// # }
    /// let mut filter = TestFilter::<Chatty>::configure("").unwrap();
    /// filter.set_log_level(weir::log::Level::Info);
    /// let exchange = filter.send(TestRequest::get("/"));
    /// assert!(exchange.logged("Chatty: request") && !exchange.logged("detail"));
    /// ```
    pub fn set_log_level(&mut self, level: Level) -> &mut Self {
        native::lasting(|l| l.log_level = level as u32);
        self
    }

    /// The callouts the last [`tick`](Self::tick) made (and its answers' hooks), in order.
    pub fn tick_callouts(&self) -> &[Call] {
        &self.tick_calls
    }

    /// The tick period the filter asked for at configure, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        native::lasting(|l| l.tick_period)
    }

    /// A counter's or gauge's value, `None` when this filter never defined nor recorded it.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let (kind, id) = native::metric_id(name)?;
        if !native::lasting(|l| l.defined.contains(&id)) {
            return None;
        }
        (kind != MetricKind::Histogram)
            .then(|| native::lasting(|l| l.counters.get(&id).copied().unwrap_or(0) as u64))
    }

    /// Every value a histogram recorded, in order; empty when it recorded none.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        let Some((_, id)) = native::metric_id(name) else {
            return Vec::new();
        };
        native::lasting(|l| l.histograms.get(&id).cloned().unwrap_or_default())
    }

    /// Moves the proxy's clock ([`crate::clock::now`]) forward.
    pub fn advance(&mut self, by: Duration) {
        native::lasting(|l| {
            let now = if l.clock == 0 {
                native::CLOCK_START
            } else {
                l.clock
            };
            l.clock = now.saturating_add(by.as_nanos().min(u64::MAX.into()) as u64);
        });
    }

    /// The shared data under `key`.
    pub fn shared(&self, key: &str) -> Option<Vec<u8>> {
        native::lasting(|l| l.shared.get(key).map(|(v, _)| v.clone()))
    }

    /// Stores shared data under `key`, as another worker would.
    pub fn set_shared(&mut self, key: &str, value: &[u8]) {
        native::shared_set(key, value, 0);
    }
}

/// A request to send through a [`TestFilter`], with the upstream's answer to it.
#[derive(Clone, Debug)]
pub struct TestRequest {
    headers: Pairs,
    chunks: Vec<Vec<u8>>,
    trailers: Pairs,
    source: String,
    route: Option<String>,
    response: TestResponse,
}

impl TestRequest {
    /// A request with this method and path, `:authority: example.com`,
    /// `:scheme: http`, from `127.0.0.1:40000`.
    pub fn new(method: &str, path: &str) -> Self {
        TestRequest {
            headers: vec![
                (b":authority".to_vec(), b"example.com".to_vec()),
                (b":path".to_vec(), path.as_bytes().to_vec()),
                (b":method".to_vec(), method.as_bytes().to_vec()),
                (b":scheme".to_vec(), b"http".to_vec()),
            ],
            chunks: Vec::new(),
            trailers: Vec::new(),
            source: "127.0.0.1:40000".into(),
            route: None,
            response: TestResponse::new(200),
        }
    }

    /// A `GET` for `path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Adds a header (a pseudo-header such as `:authority` replaces the one
    /// there); the value may be any bytes, as on the wire.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let name = name.to_ascii_lowercase().into_bytes();
        if name.starts_with(b":") {
            self.headers.retain(|(k, _)| *k != name);
        }
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }

    /// Gives the request a body, delivered in one chunk (an empty one: no body).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.chunks = if body.is_empty() {
            Vec::new()
        } else {
            vec![body]
        };
        self
    }

    /// Adds a chunk to the request body: the filter's body hook sees the chunks
    /// one at a time, as Envoy delivers them (the last with `end_of_stream`,
    /// unless trailers follow). An empty chunk is delivered too, as the empty
    /// last frame of a chunked HTTP/1.1 body is.
    /// [`Exchange::upstream_chunks`] shows what each became.
    ///
    /// ```
    /// # use weir::testing::TestRequest;
    /// let upload = TestRequest::new("POST", "/upload").chunk("first part, ").chunk("second part");
    /// # let _ = upload;
    /// ```
    pub fn chunk(mut self, chunk: impl Into<Vec<u8>>) -> Self {
        self.chunks.push(chunk.into());
        self
    }

    /// Adds a request trailer.
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.trailers.push((
            name.to_ascii_lowercase().into_bytes(),
            value.as_ref().to_vec(),
        ));
        self
    }

    /// The downstream address (`source.address`), e.g. `"10.1.2.3:5000"`.
    pub fn source(mut self, address: &str) -> Self {
        self.source = address.into();
        self
    }

    /// The name of the route the request matches (`xds.route_name`).
    pub fn route(mut self, name: &str) -> Self {
        self.route = Some(name.into());
        self
    }

    /// The upstream's response (default: 200 with no headers).
    pub fn respond_with(mut self, response: TestResponse) -> Self {
        self.response = response;
        self
    }

    fn properties(&self, plugin: &str) -> Vec<(String, Vec<u8>)> {
        let mut p = Vec::new();
        for (key, header) in [
            ("path", ":path"),
            ("method", ":method"),
            ("host", ":authority"),
            ("scheme", ":scheme"),
        ] {
            if let Some(v) = find(&self.headers, header) {
                p.push((format!("request.{key}"), v.0));
            }
        }
        p.push(("source.address".into(), self.source.clone().into_bytes()));
        if let Some(route) = &self.route {
            p.push(("xds.route_name".into(), route.clone().into_bytes()));
        }
        p.push(("plugin_name".into(), plugin.as_bytes().to_vec()));
        p.push(("plugin_root_id".into(), plugin.as_bytes().to_vec()));
        p
    }
}

/// The upstream's canned response (also a callout's answer).
#[derive(Clone, Debug)]
pub struct TestResponse {
    headers: Pairs,
    chunks: Vec<Vec<u8>>,
    trailers: Pairs,
    /// A gRPC callout's failure: status and message.
    grpc_error: Option<(u32, Vec<u8>)>,
}

/// What Envoy (1.36–1.40) hands a gRPC callout that got no answer in time: status 14
/// (`UNAVAILABLE`, not `DEADLINE_EXCEEDED`) and this message (Envoy appends the
/// response-code details, `{response_timeout}`), as measured in `tests/tests/callouts.rs`.
pub const GRPC_TIMEOUT: (u32, &str) = (14, "upstream request timeout{response_timeout}");

impl TestResponse {
    /// A response with this status.
    pub fn new(status: u16) -> Self {
        TestResponse {
            headers: vec![(b":status".to_vec(), status.to_string().into_bytes())],
            chunks: Vec::new(),
            trailers: Vec::new(),
            grpc_error: None,
        }
    }

    /// A gRPC callout's reply: status 0 (`OK`) with this message (serialized protobuf).
    ///
    /// ```
    /// # use weir::testing::TestResponse;
    /// let serving = TestResponse::grpc(weir::proto::Writer::new().uint(1, 1).into_bytes());
    /// # let _ = serving;
    /// ```
    pub fn grpc(message: impl Into<Vec<u8>>) -> Self {
        TestResponse::new(200).body(message)
    }

    /// A gRPC callout's failure with this status (e.g. 14, `UNAVAILABLE`) and message.
    /// (A callout answered with `None` fails as a timeout: [`GRPC_TIMEOUT`].)
    pub fn grpc_error(status: u32, message: &str) -> Self {
        TestResponse {
            grpc_error: Some((status, message.as_bytes().to_vec())),
            ..TestResponse::new(200)
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((
            name.to_ascii_lowercase().into_bytes(),
            value.as_ref().to_vec(),
        ));
        self
    }

    /// Gives the response a body, delivered in one chunk (an empty one: no body).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.chunks = if body.is_empty() {
            Vec::new()
        } else {
            vec![body]
        };
        self
    }

    /// Adds a chunk to the response body, delivered on its own as Envoy would
    /// (e.g. one Server-Sent Event per chunk); [`Exchange::response_chunks`]
    /// shows what each became.
    ///
    /// ```
    /// # use weir::testing::TestResponse;
    /// let events = TestResponse::new(200)
    ///     .header("content-type", "text/event-stream")
    ///     .chunk("data: one\n\n")
    ///     .chunk("data: two\n\n");
    /// # let _ = events;
    /// ```
    pub fn chunk(mut self, chunk: impl Into<Vec<u8>>) -> Self {
        self.chunks.push(chunk.into());
        self
    }

    /// The body as one piece (a callout's answer).
    fn whole_body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    /// Adds a response trailer (e.g. `grpc-status`).
    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.trailers.push((
            name.to_ascii_lowercase().into_bytes(),
            value.as_ref().to_vec(),
        ));
        self
    }
}

/// An HTTP callout the filter made.
#[derive(Clone, Debug)]
pub struct Call(SentCallout);

impl Call {
    /// The cluster it went to.
    pub fn upstream(&self) -> &str {
        &self.0.upstream
    }

    /// A header it carried (`:method`, `:path` and `:authority` included).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every copy of a header it carried, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.0
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Its `:path`.
    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or("")
    }

    /// Its body.
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// The timeout it was sent with.
    pub fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// For a gRPC callout, its service and method (e.g. `("grpc.health.v1.Health", "Check")`);
    /// its [`body`](Self::body) is the request message and [`header`](Self::header)
    /// reads its initial metadata.
    pub fn grpc(&self) -> Option<(&str, &str)> {
        self.0.grpc.as_ref().map(|(s, m)| (s.as_str(), m.as_str()))
    }
}

#[derive(Debug)]
struct Forwarded {
    headers: Pairs,
    body: Vec<u8>,
    /// What went on each time the filter let body bytes pass.
    chunks: Vec<Vec<u8>>,
    trailers: Pairs,
}

/// What happened to one request.
#[derive(Debug)]
pub struct Exchange {
    upstream: Option<Forwarded>,
    response: Pairs,
    response_body: Vec<u8>,
    response_chunks: Vec<Vec<u8>>,
    response_trailers: Pairs,
    reply: Option<SentReply>,
    logs: Vec<(u32, String)>,
    callouts: Vec<Call>,
    request_action: Action,
    response_action: Option<Action>,
    /// The request said `content-type: application/grpc…`.
    grpc: bool,
}

fn find(pairs: &Pairs, name: &str) -> Option<Value> {
    let name = name.to_ascii_lowercase();
    pairs
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| Value(v.clone()))
}

fn level(l: u32) -> Level {
    const LEVELS: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Critical,
    ];
    LEVELS.get(l as usize).copied().unwrap_or(Level::Critical)
}

impl Exchange {
    /// The status the client gets: the local reply's, or the upstream's
    /// (0 when the request was held and nobody answered). As in Envoy, a
    /// local reply with a gRPC status to a gRPC request is HTTP 200.
    pub fn status(&self) -> u16 {
        if let Some(reply) = &self.reply {
            if self.grpc && reply.grpc_status.is_some() {
                return 200;
            }
            return reply.status as u16;
        }
        if self.upstream.is_none() {
            return 0;
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
        pairs
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), Value(v.clone())))
            .collect()
    }

    /// The body the client gets: the local reply's, or the upstream's as the filter left it.
    pub fn response_body(&self) -> &[u8] {
        self.reply.as_ref().map_or(&self.response_body, |r| &r.body)
    }

    /// The response body as it reached the client, one entry each time the
    /// filter let bytes pass: streamed, one per chunk the upstream sent (what
    /// that chunk became, maybe empty); buffered, one with the whole body.
    /// Empty when the filter replied itself.
    ///
    /// ```
    /// # use weir::testing::{TestFilter, TestRequest, TestResponse};
    /// # #[derive(Default)] struct Pass;
    /// # #[weir::filter] impl weir::HttpFilter for Pass {
    /// #     type Config = (); fn default_config() -> Option<()> { Some(()) }
    /// #     fn on_response_body(&mut self, _: &mut weir::Response<'_, ()>) -> weir::Result {
    /// #         Ok(weir::Action::Continue)
    /// #     }
    /// # }
    /// let mut filter = TestFilter::<Pass>::configure("").unwrap();
    /// let exchange = filter.send(TestRequest::get("/").respond_with(TestResponse::new(200).chunk("a").chunk("b")));
    /// // Streamed: each chunk passed on its own.
    /// assert_eq!(exchange.response_chunks(), [b"a".to_vec(), b"b".to_vec()]);
    /// ```
    pub fn response_chunks(&self) -> &[Vec<u8>] {
        if self.reply.is_some() {
            return &[];
        }
        &self.response_chunks
    }

    /// The request body as forwarded upstream, one entry each time the filter
    /// let bytes pass (see [`response_chunks`](Self::response_chunks)); empty
    /// when not forwarded.
    ///
    /// ```
    /// # use weir::testing::{TestFilter, TestRequest};
    /// # #[derive(Default)] struct Pass;
    /// # #[weir::filter] impl weir::HttpFilter for Pass {
    /// #     type Config = (); fn default_config() -> Option<()> { Some(()) }
    /// #     const BODY_MODE: weir::BodyMode = weir::BodyMode::Buffer;
    /// #     fn on_request_body(&mut self, _: &mut weir::Request<'_, ()>) -> weir::Result {
    /// #         Ok(weir::Action::Continue)
    /// #     }
    /// # }
    /// let mut filter = TestFilter::<Pass>::configure("").unwrap();
    /// let exchange = filter.send(TestRequest::new("POST", "/").chunk("a").chunk("b"));
    /// assert_eq!(exchange.upstream_chunks(), [b"ab".to_vec()], "buffered: held, then passed whole");
    /// ```
    pub fn upstream_chunks(&self) -> &[Vec<u8>] {
        self.upstream.as_ref().map_or(&[], |u| &u.chunks)
    }

    /// A response trailer as the filter left it.
    pub fn response_trailer(&self, name: &str) -> Option<Value> {
        find(&self.response_trailers, name)
    }

    /// A header of the request as forwarded upstream; `None` when it was not forwarded.
    pub fn upstream_header(&self, name: &str) -> Option<Value> {
        self.upstream.as_ref().and_then(|u| find(&u.headers, name))
    }

    /// The request body as forwarded upstream (empty when not forwarded).
    pub fn upstream_body(&self) -> &[u8] {
        self.upstream.as_ref().map_or(&[], |u| &u.body)
    }

    /// A request trailer as forwarded upstream.
    pub fn upstream_trailer(&self, name: &str) -> Option<Value> {
        self.upstream.as_ref().and_then(|u| find(&u.trailers, name))
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

    /// The response-code details of the local reply, when the filter sent one.
    pub fn reply_details(&self) -> Option<&str> {
        self.reply.as_ref().map(|r| r.details.as_str())
    }

    /// True when the filter answered the request itself.
    pub fn replied_locally(&self) -> bool {
        self.reply.is_some()
    }

    /// The callouts the filter made, in order.
    pub fn callouts(&self) -> &[Call] {
        &self.callouts
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
        self.logs
            .iter()
            .map(|(l, m)| (level(*l), m.as_str()))
            .collect()
    }

    /// True when some logged line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.iter().any(|(_, m)| m.contains(text))
    }
}
