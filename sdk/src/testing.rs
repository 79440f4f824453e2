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

/// The body as the next hop reads it: Envoy forwards `content-length` as the filter
/// left it, whatever the body became, so a longer body is cut to it; `true` when the
/// body is shorter than it says (the reader then waits for bytes that never come).
fn framed(headers: &Pairs, mut body: Vec<u8>) -> (Vec<u8>, bool) {
    let length = find(headers, "content-length")
        .and_then(|v| v.to_str().and_then(|s| s.trim().parse::<usize>().ok()));
    match length {
        Some(n) if body.len() > n => {
            body.truncate(n);
            (body, false)
        }
        Some(n) => {
            let short = body.len() < n;
            (body, short)
        }
        None => (body, false),
    }
}

/// What Envoy hands a filter whose callout timed out: its router's local reply.
fn timed_out() -> TestResponse {
    const BODY: &str = "upstream request timeout";
    TestResponse::new(504)
        .header("content-length", BODY.len().to_string())
        .header("content-type", "text/plain")
        .body(BODY)
}

/// A local reply as Envoy sends it: `:status` first and the filter's headers, plus
/// `content-type: text/plain` for a body without a content type. To a gRPC request
/// (`content-type: application/grpc…`) it is a gRPC answer: HTTP 200,
/// `content-type: application/grpc`, `grpc-status` (the reply's, or the HTTP status
/// mapped as Envoy maps it), the body as a percent-encoded `grpc-message`, no body.
fn envoy_local_reply(reply: &SentReply, grpc: bool) -> (Pairs, Vec<u8>) {
    let mut headers: Pairs = Vec::new();
    let set = |headers: &mut Pairs, name: &str, value: Vec<u8>| {
        headers.retain(|(k, _)| k != name.as_bytes());
        headers.push((name.as_bytes().to_vec(), value));
    };
    if grpc {
        headers.push((b":status".to_vec(), b"200".to_vec()));
        headers.extend(reply.headers.iter().cloned());
        let status = reply.grpc_status.unwrap_or(match reply.status {
            400 => 13,
            401 => 16,
            403 => 7,
            404 => 12,
            429 | 502..=504 => 14,
            _ => 2,
        });
        set(&mut headers, "content-type", b"application/grpc".to_vec());
        set(&mut headers, "grpc-status", status.to_string().into_bytes());
        if !reply.body.is_empty() {
            let mut message = Vec::new();
            for &b in &reply.body {
                if (b' '..=b'~').contains(&b) && b != b'%' {
                    message.push(b);
                } else {
                    message.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
            set(&mut headers, "grpc-message", message);
        }
        return (headers, Vec::new());
    }
    headers.push((b":status".to_vec(), reply.status.to_string().into_bytes()));
    headers.extend(reply.headers.iter().cloned());
    if !reply.body.is_empty() && find(&headers, "content-type").is_none() {
        headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
    }
    (headers, reply.body.clone())
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
        Self::configure_on(module::requested(), "", json)
    }

    /// Configures the filter's compiled module at `module` with `json`, whatever
    /// `WEIR_TEST_MODULE` says: for a test that compares the filter with its module
    /// side by side. The module must be this filter's, as with `WEIR_TEST_MODULE`.
    ///
    /// ```no_run
    /// # use weir::testing::{TestFilter, TestRequest};
    /// # #[derive(Default)] struct Hello;
    /// # #[weir::filter] impl weir::HttpFilter for Hello {
    /// #     type Config = (); fn default_config() -> Option<()> { Some(()) }
    /// # }
    /// let mut native = TestFilter::<Hello>::configure("").unwrap();
    /// let mut module = TestFilter::<Hello>::configure_module("target/filters/hello.wasm".as_ref(), "").unwrap();
    /// assert_eq!(native.send(TestRequest::get("/")).status(), module.send(TestRequest::get("/")).status());
    /// ```
    pub fn configure_module(module: &std::path::Path, json: &str) -> Result<Self, ConfigError> {
        Self::configure_on(Some(module.to_owned()), "", json)
    }

    /// [`configure`](Self::configure) in a VM whose `vm_config.configuration` is
    /// `vm_configuration` (what [`crate::vm::configuration`] reads).
    ///
    /// ```
    /// # use weir::testing::{TestFilter, TestRequest};
    /// # #[derive(Default)] struct Region;
    /// # #[weir::filter] impl weir::HttpFilter for Region {
    /// #     type Config = (); fn default_config() -> Option<()> { Some(()) }
    /// #     fn on_response_headers(&mut self, cx: &mut weir::Response<'_, ()>) -> weir::Result {
    /// #         let vm = weir::vm::configuration().map_or(Vec::new(), |v| v.as_bytes().to_vec());
    /// #         cx.headers().set("x-vm", vm)?; Ok(weir::Action::Continue)
    /// #     }
    /// # }
    /// let mut filter = TestFilter::<Region>::configure_in_vm(r#"{"region": "eu"}"#, "").unwrap();
    /// let exchange = filter.send(TestRequest::get("/"));
    /// assert_eq!(exchange.response_header("x-vm").unwrap(), r#"{"region": "eu"}"#);
    /// ```
    pub fn configure_in_vm(vm_configuration: &str, json: &str) -> Result<Self, ConfigError> {
        Self::configure_on(module::requested(), vm_configuration, json)
    }

    fn configure_on(
        module: Option<std::path::PathBuf>,
        vm_configuration: &str,
        json: &str,
    ) -> Result<Self, ConfigError> {
        // The package's name, as the module (and Envoy's log) has it; the type's
        // name only for a filter whose impl `#[weir::filter]` did not write.
        let name = match F::PACKAGE {
            "" => std::any::type_name::<F>()
                .rsplit("::")
                .next()
                .unwrap_or("filter"),
            package => package,
        };
        native::lasting(|l| *l = Default::default());
        native::lasting(|l| l.vm_configuration = vm_configuration.as_bytes().to_vec());
        crate::log::set_filter_name(name);
        native::with(|s| *s = Default::default());
        let engine = match module {
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
    /// upstream's answer (with `x-envoy-upstream-service-time` added, as Envoy's
    /// router adds it), `None` no answer before the callout's timeout. Without it,
    /// every callout times out. As in Envoy, a timed-out callout is answered
    /// 504 with `content-type: text/plain` and the body `upstream request timeout`
    /// (not with no status); a cluster that does not exist is [`refuse_callouts`](Self::refuse_callouts).
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
        // Once the request headers went on, the upstream has them: a local reply
        // after that resets the upstream request, it does not take them back.
        let request_headers_sent = open;
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
        let cut_off = !open && request_headers_sent;
        let upstream = (open || cut_off).then(|| {
            native::with(|s| Forwarded {
                headers: s.maps[Map::RequestHeaders as usize].clone(),
                body: framed(&s.maps[Map::RequestHeaders as usize], sent.concat()).0,
                chunks: sent,
                trailers: if cut_off {
                    Vec::new()
                } else {
                    s.maps[Map::RequestTrailers as usize].clone()
                },
                reset: cut_off,
            })
        });

        let grpc = find(&request.headers, "content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        // A local reply sent on the request's way goes back through the filter's own
        // response hooks, as Envoy encodes it through the filter chain.
        let mut reply_seen = None;
        let mut response_action = None;
        if let Some(reply) = native::with(|s| s.reply.clone()).filter(|_| !open) {
            let (action, seen) = self.reply_through_hooks(&mut stream, &reply, grpc, &mut callouts);
            response_action = action;
            reply_seen = Some(seen);
        }
        let mut reset = false;
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
            // Once the response headers went on to the client, a local reply can no
            // longer be sent: Envoy resets the stream instead.
            let headers_sent = open;
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
            if let Some(reply) = native::with(|s| s.reply.clone()) {
                if headers_sent {
                    reset = true;
                } else {
                    // Sent while encoding: straight to the client, past the filters.
                    reply_seen = Some(envoy_local_reply(&reply, grpc));
                }
            }
        }
        native::with(|s| s.hidden = Default::default()); // the access log sees every map
        stream.log();
        let had_body = !request.response.chunks.is_empty() && request.method() != Some("HEAD");
        let state = native::with(std::mem::take);
        self.queues_ready();
        let (response_body, short) = framed(
            &state.maps[Map::ResponseHeaders as usize],
            received.concat(),
        );
        let reset = reset || (short && had_body && reply_seen.is_none());
        {
            Exchange {
                upstream,
                response: state.maps[Map::ResponseHeaders as usize].clone(),
                response_body,
                response_chunks: received,
                response_trailers: state.maps[Map::ResponseTrailers as usize].clone(),
                reply: state.reply,
                logs: state.logs,
                callouts,
                request_action,
                response_action,
                grpc,
                reply_seen,
                reset,
                written: state.written,
                filter_state: state.filter_state,
            }
        }
    }

    /// Runs `on_queue_ready` once for each item enqueued since the last time, as
    /// Envoy does after the hook that enqueued returns (the items stay queued).
    fn queues_ready(&mut self) {
        native::lasting(|l| l.outside_request = true);
        while let Some(token) =
            native::lasting(|l| (!l.ready.is_empty()).then(|| l.ready.remove(0)))
        {
            match &mut self.engine {
                Engine::Native(plugin) => plugin.queue_ready(token),
                Engine::Module(module) => module.borrow_mut().queue_ready(token),
            }
        }
        native::lasting(|l| l.outside_request = false);
    }

    /// Runs a local reply sent from the request's side through the response hooks,
    /// as Envoy does: the headers hook sees the reply's headers (with what Envoy adds,
    /// see [`envoy_local_reply`]), the body hook its body in one piece. Returns what
    /// the headers hook did and the headers and body the client gets.
    fn reply_through_hooks(
        &mut self,
        stream: &mut Run<F>,
        reply: &SentReply,
        grpc: bool,
        callouts: &mut Vec<Call>,
    ) -> (Option<Action>, (Pairs, Vec<u8>)) {
        let (headers, body) = envoy_local_reply(reply, grpc);
        // The hooks run as for any response; the filter's reply stays recorded.
        native::with(|s| {
            s.reply = None;
            s.maps[Map::ResponseHeaders as usize] = headers;
        });
        let a = stream.response_headers(body.is_empty());
        let mut open = self.settle(stream, a, Direction::Response, callouts);
        let headers = native::with(|s| s.maps[Map::ResponseHeaders as usize].clone());
        hide_once_continued(Map::ResponseHeaders, a);
        let mut passed = Vec::new();
        if open && !body.is_empty() {
            (open, passed) = self.deliver(stream, Direction::Response, &[body], false, callouts);
        }
        let _ = open;
        native::with(|s| s.reply = Some(reply.clone()));
        (Some(a), (headers, passed.concat()))
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
        let answer = match (self.responder.as_mut().and_then(|r| r(&call)), grpc) {
            // As Envoy's router answers for the cluster; a timeout is its own 504.
            (Some(answer), false) => Some(answer.header("x-envoy-upstream-service-time", "0")),
            (None, false) => Some(timed_out()),
            (answer, true) => answer,
        };
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
        native::lasting(|l| l.outside_request = true);
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
        native::lasting(|l| l.outside_request = false);
        self.queues_ready();
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
    /// // Lines carry the package's name, as in Envoy (here, the SDK's own doctest).
    /// assert!(exchange.logged("weir-sdk: request") && !exchange.logged("detail"));
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

    /// The shared data under `key`; `None` when there is none, or it was
    /// removed (an empty value, as [`crate::shared::get`] sees it).
    pub fn shared(&self, key: &str) -> Option<Vec<u8>> {
        native::lasting(|l| l.shared.get(key).map(|(v, _)| v.clone())).filter(|v| !v.is_empty())
    }

    /// Enqueues `bytes` to the shared queue `name` of this VM, as another
    /// worker would; the filter's `on_queue_ready` runs before this returns.
    /// `false` when no queue of that name is registered.
    pub fn enqueue(&mut self, name: &str, bytes: &[u8]) -> bool {
        let Ok(token) = native::queue_resolve(native::VM_ID, name) else {
            return false;
        };
        native::queue_enqueue(token, bytes);
        self.queues_ready();
        true
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
    /// Properties set with [`TestRequest::property`].
    extra: Vec<(String, Vec<u8>)>,
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
            extra: Vec::new(),
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

    fn method(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == b":method")
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Sets the property at `path` (dot-joined, e.g. `destination.port`) to
    /// `bytes` in Envoy's encoding: 8 little-endian bytes for an integer,
    /// a double, a duration or a timestamp (nanoseconds), one byte for a bool.
    ///
    /// ```
    /// # use weir::testing::TestRequest;
    /// let request = TestRequest::get("/")
    ///     .property("destination.port", 8443i64.to_le_bytes())
    ///     .property("connection.mtls", [1]);
    /// # let _ = request;
    /// ```
    pub fn property(mut self, path: &str, bytes: impl AsRef<[u8]>) -> Self {
        self.extra.retain(|(k, _)| k != path);
        self.extra.push((path.to_owned(), bytes.as_ref().to_vec()));
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
        p.push(("plugin_vm_id".into(), native::VM_ID.as_bytes().to_vec()));
        for (key, value) in &self.extra {
            p.retain(|(k, _)| k != key);
            p.push((key.clone(), value.clone()));
        }
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
    /// The filter replied after the headers went on: the upstream request was reset.
    reset: bool,
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
    /// The local reply as the client gets it: its headers (`:status` included)
    /// and body, after Envoy's additions and the filter's response hooks.
    reply_seen: Option<(Pairs, Vec<u8>)>,
    /// The filter replied after the response headers had gone on: the client got
    /// them and the body so far, then a reset stream.
    reset: bool,
    written: Vec<(String, Vec<u8>)>,
    filter_state: Vec<(String, Vec<u8>, u32)>,
}

fn find(pairs: &Pairs, name: &str) -> Option<Value> {
    let name = name.to_ascii_lowercase();
    pairs
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| Value(v.clone()))
}

fn named(pairs: &Pairs) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), Value(v.clone())))
        .collect()
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
    /// local reply to a gRPC request is HTTP 200 with `grpc-status`, and one
    /// sent on the request's way passes the filter's response hooks first.
    pub fn status(&self) -> u16 {
        if let Some((headers, _)) = &self.reply_seen {
            return find(headers, ":status")
                .and_then(|v| v.to_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0);
        }
        if let Some(reply) = self.reply.as_ref().filter(|_| !self.reset) {
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
        match &self.reply_seen {
            Some(_) if name == ":status" => None,
            Some((headers, _)) => find(headers, name),
            None => find(&self.response, name),
        }
    }

    /// Every header of the response the client gets.
    pub fn response_headers(&self) -> Vec<(String, Value)> {
        let (pairs, reply) = match &self.reply_seen {
            Some((headers, _)) => (headers, true),
            None => (&self.response, false),
        };
        pairs
            .iter()
            .filter(|(k, _)| !(reply && k == b":status"))
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), Value(v.clone())))
            .collect()
    }

    /// The body the client gets: the local reply's, or the upstream's as the filter left it.
    /// As in Envoy, a `content-length` the filter left in place frames it: a body the
    /// filter made longer reaches the client cut to that length (remove or fix
    /// `content-length` in the headers hook when you change a body's length).
    pub fn response_body(&self) -> &[u8] {
        self.reply_seen
            .as_ref()
            .map_or(&self.response_body, |r| &r.1)
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
        if self.reply_seen.is_some() {
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

    /// Every header of the request as forwarded upstream, in order (pseudo-headers
    /// included); empty when it was not forwarded.
    pub fn upstream_headers(&self) -> Vec<(String, Value)> {
        self.upstream
            .as_ref()
            .map_or(Vec::new(), |u| named(&u.headers))
    }

    /// Every request trailer as forwarded upstream, in order.
    pub fn upstream_trailers(&self) -> Vec<(String, Value)> {
        self.upstream
            .as_ref()
            .map_or(Vec::new(), |u| named(&u.trailers))
    }

    /// Every response trailer the client gets, in order (none after a local reply).
    pub fn response_trailers(&self) -> Vec<(String, Value)> {
        if self.reply.is_some() {
            return Vec::new();
        }
        named(&self.response_trailers)
    }

    /// The request body as forwarded upstream (empty when not forwarded), framed by
    /// the `content-length` the filter left, as the upstream reads it (see
    /// [`response_body`](Self::response_body)).
    pub fn upstream_body(&self) -> &[u8] {
        self.upstream.as_ref().map_or(&[], |u| &u.body)
    }

    /// A request trailer as forwarded upstream.
    pub fn upstream_trailer(&self, name: &str) -> Option<Value> {
        self.upstream.as_ref().and_then(|u| find(&u.trailers, name))
    }

    /// True when the request went on to the upstream: its headers at least (see
    /// [`upstream_reset`](Self::upstream_reset)).
    pub fn forwarded(&self) -> bool {
        self.upstream.is_some()
    }

    /// True when the upstream got the request's headers (and the body that had
    /// passed) and then a reset: the filter replied from its body or trailers hook,
    /// after the headers hook had let the headers go on, as Envoy's router sends
    /// them at once. To keep a request from the upstream, decide in the headers hook
    /// or hold the headers (`Action::Pause`, or `BodyMode::Buffer`).
    pub fn upstream_reset(&self) -> bool {
        self.upstream.as_ref().is_some_and(|u| u.reset)
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

    /// True when the filter answered the request itself (see also [`reset`](Self::reset)).
    pub fn replied_locally(&self) -> bool {
        self.reply.is_some()
    }

    /// True when the client's stream was reset: the filter sent a local reply after
    /// the response headers had gone on to the client, which Envoy can no longer
    /// deliver. The client got the upstream's status and headers and the body that
    /// had passed ([`status`](Self::status), [`response_body`](Self::response_body)),
    /// then the reset. Reply from the response headers hook, or hold the headers.
    /// Also true when the filter left a `content-length` larger than the body it
    /// let through: the client waits for bytes that never come.
    pub fn reset(&self) -> bool {
        self.reset
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

    /// The property `name` the filter wrote ([`Properties::set`](crate::Properties::set)),
    /// last value; Envoy keeps it as the filter state object `wasm.<name>`.
    pub fn property(&self, name: &str) -> Option<Value> {
        self.written
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Value(v.clone()))
    }

    /// The filter state object `key` the filter set
    /// ([`Properties::set_filter_state`](crate::Properties::set_filter_state)), with
    /// its life span. The native host, like Envoy, takes only well-known keys.
    pub fn filter_state(&self, key: &str) -> Option<(Value, crate::property::LifeSpan)> {
        use crate::property::LifeSpan;
        self.filter_state
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, span)| {
                let span = match span {
                    1 => LifeSpan::DownstreamRequest,
                    2 => LifeSpan::DownstreamConnection,
                    _ => LifeSpan::FilterChain,
                };
                (Value(v.clone()), span)
            })
    }
}
