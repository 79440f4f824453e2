//! The filter runtime: configuration and per-request dispatch, shared by the
//! wasm glue (proxy-wasm's contexts) and the native test harness.

use std::rc::Rc;

use crate::body::{Body, BodyMode};
use crate::callout::{CalloutResponse, Sent, Wait};
use crate::config::ConfigError;
use crate::context::{BodyFlow, Callback, Flow, Log, Request, Response, Tick, Waiting};
use crate::filter::HttpFilter;
use crate::hooks;
use crate::host::{self, Buffer, Direction, Map};
use crate::outcome::Action;
use crate::reply::LocalReply;
use crate::rules::{Pick, RuleSet};

/// One configured plugin: the filter's name and its current configuration.
pub(crate) struct Plugin<F: HttpFilter> {
    /// The filter's name (its log lines carry it through [`crate::log`]).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) name: &'static str,
    config: Option<Rc<RuleSet<F::Config>>>,
    /// The callouts its ticks sent, waiting for their answers.
    calls: Waiting,
}

impl<F: HttpFilter> Plugin<F> {
    pub(crate) fn new(name: &'static str) -> Self {
        Plugin {
            name,
            config: None,
            calls: Waiting::default(),
        }
    }

    /// Parses and checks `bytes`; on success replaces the configuration (requests
    /// already under way keep the one they started with), defines the metrics
    /// and sets the tick period.
    pub(crate) fn configure(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let blank = bytes.iter().all(u8::is_ascii_whitespace);
        let rules = match F::default_config() {
            Some(default) if blank => {
                F::validate(&default)?;
                RuleSet::global(default)
            }
            None if blank => {
                return Err(ConfigError::new(
                    "no configuration given, and this filter has no default: pass its JSON configuration",
                ))
            }
            _ => RuleSet::parse(bytes, F::RULES, F::validate)?,
        };
        for metric in F::METRICS {
            metric.define();
        }
        if F::HOOKS & hooks::TICK != 0 {
            let period = rules.global.as_ref().and_then(F::tick_period);
            let millis = period.map_or(0, |p| p.as_millis().clamp(1, u32::MAX.into()) as u32);
            host::set_tick_period(millis);
        }
        self.config = Some(Rc::new(rules));
        Ok(())
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    /// `configure`, logging a refusal as one line naming the filter and the problem.
    pub(crate) fn configure_logged(&mut self, bytes: &[u8]) -> bool {
        match self.configure(bytes) {
            Ok(()) => true,
            Err(e) => {
                crate::error!("configuration refused: {e}");
                false
            }
        }
    }

    pub(crate) fn stream(&self) -> Stream<F> {
        Stream {
            config: self.config.clone(),
            pick: None,
            flow: Flow {
                waiting: None,
                callouts: F::HOOKS & hooks::HTTP_CALL_RESPONSE != 0,
                body_mode: F::BODY_MODE,
                // All zero (cheaper per request than one filled in): the mode is settled at the first chunk.
                bodies: Default::default(),
                rule: None,
            },
            paused: None,
            filter: F::default(),
        }
    }

    /// Runs the queue hook for `token` with the global configuration.
    pub(crate) fn queue_ready(&mut self, token: u32) {
        if F::HOOKS & hooks::QUEUE_READY == 0 {
            return;
        }
        if let Some(config) = self.config.as_ref().and_then(|c| c.global.as_ref()) {
            let queue = crate::queue::Queue::from_token(token);
            let calls = (F::HOOKS & hooks::TICK_CALLOUT_RESPONSE != 0).then_some(&mut self.calls);
            F::on_queue_ready(&mut Tick::new(config, calls), queue);
        }
    }

    /// Runs the tick hook with the global configuration.
    pub(crate) fn tick(&mut self) {
        if F::HOOKS & hooks::TICK == 0 {
            return;
        }
        if let Some(config) = self.config.as_ref().and_then(|c| c.global.as_ref()) {
            let calls = (F::HOOKS & hooks::TICK_CALLOUT_RESPONSE != 0).then_some(&mut self.calls);
            F::on_tick(&mut Tick::new(config, calls));
        }
    }

    /// True when `sent` is a callout of this plugin's ticks, waiting for its answer.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn waits_for(&self, sent: Sent) -> bool {
        F::HOOKS & hooks::TICK_CALLOUT_RESPONSE != 0 && self.calls.waits_for(sent)
    }

    /// The answer to the tick callout `sent`: runs `on_tick_callout_response`
    /// with the global configuration.
    pub(crate) fn callout_response(&mut self, sent: Sent, mut response: CalloutResponse) {
        if F::HOOKS & hooks::TICK_CALLOUT_RESPONSE == 0 {
            return;
        }
        let Some(index) = self.calls.answered(sent) else {
            return;
        };
        response.index = index;
        if let Some(config) = self.config.as_ref().and_then(|c| c.global.as_ref()) {
            F::on_tick_callout_response(&mut Tick::new(config, Some(&mut self.calls)), response);
        }
    }
}

/// One request through the filter.
pub(crate) struct Stream<F: HttpFilter> {
    config: Option<Rc<RuleSet<F::Config>>>,
    /// The configuration this request uses, picked on its first hook.
    pick: Option<Pick>,
    flow: Flow,
    /// The direction a hook paused (and a callout's answer resumes).
    paused: Option<Direction>,
    filter: F,
}

/// A hook's action; an `Err` is logged (`<filter>: <hook>: <error>`) and the request continues.
fn finish(hook: &str, result: crate::Result) -> Action {
    result.unwrap_or_else(|e| {
        crate::log::line(crate::log::Level::Warn, &[hook, ": ", e.message()]);
        Action::Continue
    })
}

/// The host buffer holding `direction`'s body.
fn buffer(direction: Direction) -> Buffer {
    match direction {
        Direction::Request => Buffer::RequestBody,
        Direction::Response => Buffer::ResponseBody,
    }
}

fn hook_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Request => "on_request_body",
        Direction::Response => "on_response_body",
    }
}

/// True when `F`'s filter-wide `Buffer` must learn, from the headers, which bodies
/// are streams it must not hold. Envoy shows a stream's headers only in its headers
/// hooks (once they continue, a body hook finds none), so this makes the module
/// export both headers hooks even when the filter does not implement them.
const fn watches_streams<F: HttpFilter>() -> bool {
    matches!(F::BODY_MODE, BodyMode::Buffer)
        && F::HOOKS & (hooks::REQUEST_BODY | hooks::RESPONSE_BODY) != 0
}

/// The hooks `F`'s module exports (the `weir.hooks` section, see [`hooks::exported`]).
#[doc(hidden)]
pub const fn exported_hooks<F: HttpFilter>() -> u32 {
    let watch = if watches_streams::<F>() {
        hooks::REQUEST_HEADERS | hooks::RESPONSE_HEADERS
    } else {
        0
    };
    hooks::exported(F::HOOKS | watch)
}

/// True when the headers in `map` announce a stream by `content-type`: Server-Sent
/// Events or gRPC.
fn streaming_type(map: Map) -> bool {
    host::map_get(map, b"content-type").is_some_and(|t| {
        let t = t.trim_ascii_start().to_ascii_lowercase();
        t.starts_with(b"text/event-stream") || t.starts_with(b"application/grpc")
    })
}

impl<F: HttpFilter> Stream<F> {
    /// True when this request has a configuration (no rule said "skip").
    fn configured(&mut self) -> bool {
        let Some(set) = &self.config else {
            return false;
        };
        let flow = &mut self.flow;
        let pick = *self.pick.get_or_insert_with(|| {
            let pick = set.pick(F::SNAPSHOTS_REQUEST_HEADERS);
            if let Pick::Rule(i) = pick {
                flow.rule = Some(i);
            }
            pick
        });
        pick != Pick::Skip
    }

    /// Runs one hook with the request's configuration; remembers a pause. The
    /// request headers the rules pick kept for the hook's snapshot do not outlive it.
    fn run(
        &mut self,
        direction: Direction,
        hook: &str,
        call: impl FnOnce(&mut F, &F::Config, &mut Flow) -> crate::Result,
    ) -> Action {
        let action = self.run_picked(direction, hook, call);
        if F::SNAPSHOTS_REQUEST_HEADERS {
            crate::header::take_picked();
        }
        action
    }

    fn run_picked(
        &mut self,
        direction: Direction,
        hook: &str,
        call: impl FnOnce(&mut F, &F::Config, &mut Flow) -> crate::Result,
    ) -> Action {
        if !self.configured() {
            return Action::Continue;
        }
        let (Some(set), Some(pick)) = (&self.config, self.pick) else {
            return Action::Continue;
        };
        let Some(config) = set.get(pick) else {
            return Action::Continue;
        };
        let action = finish(hook, call(&mut self.filter, config, &mut self.flow));
        if action == Action::Pause {
            self.paused = Some(direction);
        }
        action
    }

    pub(crate) fn request_headers(&mut self, end_of_stream: bool) -> Action {
        if watches_streams::<F>() {
            // An upgraded connection (WebSocket, HTTP/2's extended CONNECT) or a CONNECT
            // tunnel streams both ways; an SSE or gRPC request body streams too.
            let upgraded = host::map_get(Map::RequestHeaders, b"upgrade").is_some()
                || host::map_get(Map::RequestHeaders, b":protocol").is_some()
                || host::map_get(Map::RequestHeaders, b":method")
                    .is_some_and(|m| m.eq_ignore_ascii_case(b"CONNECT"));
            let request = upgraded || streaming_type(Map::RequestHeaders);
            self.flow.bodies[Direction::Request as usize].set(BodyFlow::ENDLESS, request);
            self.flow.bodies[Direction::Response as usize].set(BodyFlow::ENDLESS, upgraded);
        }
        if F::HOOKS & hooks::REQUEST_HEADERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Request, "on_request_headers", |f, c, flow| {
            f.on_request_headers(&mut Request::new(
                c,
                flow,
                Body::new(Buffer::RequestBody, 0),
                end_of_stream,
            ))
        })
    }

    pub(crate) fn request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if F::HOOKS & hooks::REQUEST_BODY == 0 {
            return Action::Continue;
        }
        self.body(Direction::Request, size, end_of_stream)
    }

    pub(crate) fn request_trailers(&mut self) -> Action {
        if F::HOOKS & hooks::REQUEST_BODY != 0 && self.end_body(Direction::Request) == Action::Pause
        {
            return Action::Pause;
        }
        if F::HOOKS & hooks::REQUEST_TRAILERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Request, "on_request_trailers", |f, c, flow| {
            f.on_request_trailers(&mut Request::new(
                c,
                flow,
                Body::new(Buffer::RequestBody, 0),
                true,
            ))
        })
    }

    pub(crate) fn response_headers(&mut self, end_of_stream: bool) -> Action {
        if watches_streams::<F>() && !end_of_stream {
            let switched =
                host::map_get(Map::ResponseHeaders, b":status").is_some_and(|s| s == b"101");
            if switched || streaming_type(Map::ResponseHeaders) {
                self.flow.bodies[Direction::Response as usize].set(BodyFlow::ENDLESS, true);
            }
        }
        if F::HOOKS & hooks::RESPONSE_HEADERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Response, "on_response_headers", |f, c, flow| {
            f.on_response_headers(&mut Response::new(
                c,
                flow,
                Body::new(Buffer::ResponseBody, 0),
                end_of_stream,
            ))
        })
    }

    pub(crate) fn response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if F::HOOKS & hooks::RESPONSE_BODY == 0 {
            return Action::Continue;
        }
        self.body(Direction::Response, size, end_of_stream)
    }

    pub(crate) fn response_trailers(&mut self) -> Action {
        if F::HOOKS & hooks::RESPONSE_BODY != 0
            && self.end_body(Direction::Response) == Action::Pause
        {
            return Action::Pause;
        }
        if F::HOOKS & hooks::RESPONSE_TRAILERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Response, "on_response_trailers", |f, c, flow| {
            f.on_response_trailers(&mut Response::new(
                c,
                flow,
                Body::new(Buffer::ResponseBody, 0),
                true,
            ))
        })
    }

    /// One body chunk of `size` bytes (all the host holds for this direction) in
    /// the direction's mode: passed to the hook at once (`Stream`), held until the
    /// end of the stream (`Buffer`), or let through (`Skip`).
    fn body(&mut self, direction: Direction, size: usize, end_of_stream: bool) -> Action {
        let action = self.body_picked(direction, size, end_of_stream);
        if F::SNAPSHOTS_REQUEST_HEADERS {
            crate::header::take_picked();
        }
        action
    }

    fn body_picked(&mut self, direction: Direction, size: usize, end_of_stream: bool) -> Action {
        if !self.configured() {
            return Action::Continue;
        }
        let at = direction as usize;
        if !self.flow.bodies[at].is(BodyFlow::STARTED) {
            let body = &mut self.flow.bodies[at];
            body.set(BodyFlow::STARTED, true);
            if !body.is(BodyFlow::CHOSEN) {
                body.mode = match F::BODY_MODE {
                    BodyMode::Buffer if body.is(BodyFlow::ENDLESS) => BodyMode::Stream,
                    mode => mode,
                };
            }
        }
        let body = &mut self.flow.bodies[at];
        if body.is(BodyFlow::ENDED) {
            return Action::Continue;
        }
        match body.mode {
            BodyMode::Skip => Action::Continue,
            BodyMode::Stream => {
                body.set(BodyFlow::ENDED, end_of_stream);
                self.body_hook(direction, Body::new(buffer(direction), size), end_of_stream)
            }
            BodyMode::Buffer if size > F::BODY_LIMIT => {
                body.mode = BodyMode::Skip;
                body.buffered = 0;
                let hook = hook_name(direction);
                if direction == Direction::Request {
                    let reply = LocalReply::new(413)
                        .body("request body too large\n")
                        .details("weir_body_limit");
                    return finish(hook, reply.send());
                }
                crate::warn!("{hook}: body over {} bytes passes unread", F::BODY_LIMIT);
                Action::Continue
            }
            BodyMode::Buffer if !end_of_stream => {
                body.buffered = size;
                Action::Pause // hold until the whole body is here
            }
            BodyMode::Buffer => {
                body.buffered = 0;
                body.set(BodyFlow::ENDED, true);
                self.body_hook(direction, Body::new(buffer(direction), size), true)
            }
        }
    }

    /// The trailers ended `direction`'s body: a buffered body goes to the hook
    /// whole; a streamed one gets a last, empty call saying so.
    fn end_body(&mut self, direction: Direction) -> Action {
        let body = self.flow.bodies[direction as usize];
        if !body.is(BodyFlow::STARTED) || body.is(BodyFlow::ENDED) {
            return Action::Continue;
        }
        match body.mode {
            BodyMode::Skip => Action::Continue,
            BodyMode::Buffer => self.body(direction, body.buffered, true),
            BodyMode::Stream => {
                self.flow.bodies[direction as usize].set(BodyFlow::ENDED, true);
                self.body_hook(direction, Body::ended(buffer(direction)), true)
            }
        }
    }

    fn body_hook(&mut self, direction: Direction, body: Body, end_of_stream: bool) -> Action {
        match direction {
            Direction::Request => self.run(direction, "on_request_body", |f, c, flow| {
                f.on_request_body(&mut Request::new(c, flow, body, end_of_stream))
            }),
            Direction::Response => self.run(direction, "on_response_body", |f, c, flow| {
                f.on_response_body(&mut Response::new(c, flow, body, end_of_stream))
            }),
        }
    }

    /// The answer to this request's callout `sent`: runs the hook, then resumes
    /// the paused direction when the hook continued and the request's [`Wait`]
    /// holds (the first answer, or no answer still to come); unless the hook
    /// paused again or replied. An answer nobody waits for is dropped.
    pub(crate) fn callout_response(&mut self, sent: Sent, mut response: CalloutResponse) {
        if F::HOOKS & hooks::HTTP_CALL_RESPONSE == 0 {
            return;
        }
        let Some(waiting) = self.flow.waiting.as_mut() else {
            return;
        };
        let Some(index) = waiting.answered(sent) else {
            return;
        };
        response.index = index;
        let paused = self.paused;
        let direction = paused.unwrap_or(Direction::Request);
        let action = self.run(direction, "on_callout_response", |f, c, flow| {
            f.on_callout_response(&mut Callback::new(c, flow), response)
        });
        let Some(waiting) = self.flow.waiting.as_mut() else {
            return;
        };
        if action != Action::Continue || (waiting.wait == Wait::All && !waiting.calls.is_empty()) {
            return; // still paused: by the hook, or for the answers to come
        }
        waiting.calls.clear(); // after `Wait::First`, later answers are dropped
        self.paused = None;
        if paused.is_some() && !host::resume(direction) {
            crate::warn!("on_callout_response: the proxy refused to resume the request");
        }
    }

    /// True when this request's callout `sent` is waiting for its answer.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn waits_for(&self, sent: Sent) -> bool {
        self.flow
            .waiting
            .as_ref()
            .is_some_and(|w| w.waits_for(sent))
    }

    pub(crate) fn log(&mut self) {
        if F::HOOKS & hooks::LOG == 0 {
            return;
        }
        let _ = self.run(Direction::Response, "on_log", |f, c, _| {
            f.on_log(&mut Log::new(c));
            Ok(Action::Continue)
        });
    }
}

/// The proxy-wasm ABI (0.2.1) entry points around [`Plugin`] and [`Stream`].
///
/// [`export!`](crate::export) defines one `static` [`wasm::Vm`] for the filter
/// and `#[no_mangle]` exports that call it, so dispatch is monomorphic: no
/// `Box<dyn>` per request, no hash map, and no allocation once the stream
/// table has grown to the worker's concurrency. Streams live in a `Vec`
/// searched from the newest end; a stream's hooks usually find it in the
/// first few slots.
#[cfg(target_arch = "wasm32")]
pub mod wasm {
    use super::{Plugin, Stream};
    use crate::callout::{CalloutResponse, Sent};
    use crate::filter::HttpFilter;
    use crate::metrics::Gauge;
    use crate::outcome::Action;
    use std::cell::{Cell, UnsafeCell};

    struct State<F: HttpFilter> {
        roots: Vec<(u32, Plugin<F>)>,
        streams: Streams<F>,
    }

    /// The requests under way, sorted by context id (Envoy hands them out in
    /// increasing order, so a new one is pushed at the end). A finished request
    /// leaves a hole that is reused by nothing and swept once holes are half the
    /// table, so look-ups are a binary search however many long-lived streams are
    /// open, and nothing moves or allocates per request.
    struct Streams<F: HttpFilter> {
        slots: Vec<(u32, Option<Stream<F>>)>,
        holes: usize,
    }

    impl<F: HttpFilter> Streams<F> {
        const fn new() -> Self {
            Streams {
                slots: Vec::new(),
                holes: 0,
            }
        }

        /// The slot of `id`: the newest is checked first (the common case).
        fn find(&self, id: u32) -> Option<usize> {
            let last = self.slots.len().checked_sub(1)?;
            if self.slots[last].0 == id {
                return Some(last);
            }
            self.slots.binary_search_by_key(&id, |(i, _)| *i).ok()
        }

        fn get(&mut self, id: u32) -> Option<&mut Stream<F>> {
            let at = self.find(id)?;
            self.slots[at].1.as_mut()
        }

        fn insert(&mut self, id: u32, stream: Stream<F>) {
            match self.slots.last() {
                Some((last, _)) if *last >= id => {
                    // Not from Envoy, which never reuses or goes back; kept correct anyway.
                    match self.slots.binary_search_by_key(&id, |(i, _)| *i) {
                        Ok(at) => {
                            if self.slots[at].1.replace(stream).is_none() {
                                self.holes -= 1;
                            }
                        }
                        Err(at) => {
                            // `Vec::insert` by hand: pushed, then moved down to `at`
                            // (without `insert`'s out-of-range panic message).
                            self.slots.push((id, Some(stream)));
                            let mut i = self.slots.len() - 1;
                            while i > at {
                                self.slots.swap(i - 1, i);
                                i -= 1;
                            }
                        }
                    }
                }
                _ => self.slots.push((id, Some(stream))),
            }
        }

        /// Forgets `id`; false when it is not a request under way. Drops in
        /// place: the newest request (and any holes before it) by truncating,
        /// another by leaving a hole.
        fn remove(&mut self, id: u32) -> bool {
            let Some(at) = self.find(id) else {
                return false;
            };
            if self.slots[at].1.is_none() {
                return false;
            }
            if at + 1 == self.slots.len() {
                let mut keep = at;
                while keep > 0 && self.slots[keep - 1].1.is_none() {
                    keep -= 1;
                }
                self.holes -= at - keep;
                self.slots.truncate(keep);
            } else {
                self.slots[at].1 = None;
                self.holes += 1;
                if self.holes > 16 && self.holes * 2 > self.slots.len() {
                    self.slots.retain(|(_, s)| s.is_some());
                    self.holes = 0;
                }
            }
            true
        }

        /// The request waiting for callout `sent`, with its id.
        fn waiting_for(&mut self, sent: Sent) -> Option<(u32, &mut Stream<F>)> {
            self.slots
                .iter_mut()
                .find_map(|(id, s)| s.as_mut().filter(|s| s.waits_for(sent)).map(|s| (*id, s)))
        }
    }

    /// The filter's plugins and requests in this VM. Wasm modules run on one
    /// thread, and the host never runs two hooks at once; a hook re-entered
    /// anyway (a host call that calls back in) is ignored rather than allowed
    /// to alias the state.
    pub struct Vm<F: HttpFilter> {
        name: &'static str,
        busy: Cell<bool>,
        state: UnsafeCell<State<F>>,
        /// `wasmcustom.weir.<filter>.memory_bytes`: the VM's linear memory.
        memory: &'static Gauge,
        /// Linear memory (64 KiB pages) last reported to `memory`.
        pages: Cell<usize>,
    }

    // SAFETY: wasm32 modules built by weir are single-threaded; `busy` keeps
    // every access to `state` exclusive.
    unsafe impl<F: HttpFilter> Sync for Vm<F> {}

    const CONTINUE: u32 = 0;
    const PAUSE: u32 = 1;

    fn action(a: Action) -> u32 {
        match a {
            Action::Continue => CONTINUE,
            Action::Pause => PAUSE,
        }
    }

    impl<F: HttpFilter> Vm<F> {
        /// An empty VM for the filter named `name` (its log lines carry it),
        /// reporting its linear memory to the gauge `memory`.
        pub const fn new(name: &'static str, memory: &'static Gauge) -> Self {
            Vm {
                name,
                busy: Cell::new(false),
                state: UnsafeCell::new(State {
                    roots: Vec::new(),
                    streams: Streams::new(),
                }),
                memory,
                pages: Cell::new(0),
            }
        }

        /// Reports the linear memory when it changed: one instruction and a
        /// comparison per call, a host call only when memory grew.
        fn note_memory(&self) {
            let pages = core::arch::wasm32::memory_size(0);
            if pages != self.pages.get() {
                self.pages.set(pages);
                self.memory.set(pages as u64 * 65536);
            }
        }

        /// Runs `f` with exclusive access to the state, or returns `otherwise`
        /// when a hook is already running.
        fn with<R>(&self, otherwise: R, f: impl FnOnce(&mut State<F>) -> R) -> R {
            if self.busy.replace(true) {
                return otherwise;
            }
            // SAFETY: `busy` was false, so no other reference to `state` exists.
            let result = f(unsafe { &mut *self.state.get() });
            self.busy.set(false);
            result
        }

        fn stream(&self, id: u32, otherwise: u32, f: impl FnOnce(&mut Stream<F>) -> Action) -> u32 {
            self.with(otherwise, |s| match s.streams.get(id) {
                Some(stream) => action(f(stream)),
                None => otherwise,
            })
        }

        fn root(&self, id: u32, f: impl FnOnce(&mut Plugin<F>) -> bool) -> bool {
            self.with(false, |s| {
                match s.roots.iter_mut().find(|(i, _)| *i == id) {
                    Some((_, root)) => f(root),
                    None => false,
                }
            })
        }

        /// `_initialize`: logs panics with the filter's name.
        pub fn initialize(&'static self) {
            let name = self.name;
            crate::log::set_filter_name(name);
            std::panic::set_hook(Box::new(move |info| {
                crate::log::set_filter_name(name);
                crate::log::panicked(info);
            }));
        }

        /// `proxy_on_context_create`: a plugin (`parent == 0`) or a request of plugin `parent`.
        pub fn context_create(&self, id: u32, parent: u32) {
            self.with((), |s| {
                if parent == 0 {
                    s.roots.push((id, Plugin::new(self.name)));
                } else if let Some((_, root)) = s.roots.iter().find(|(i, _)| *i == parent) {
                    let stream = root.stream();
                    s.streams.insert(id, stream);
                }
            })
        }

        /// `proxy_on_configure`.
        pub fn configure(&self, id: u32, size: usize) -> bool {
            let accepted = self.root(id, |root| {
                root.configure_logged(&crate::host::plugin_configuration(size))
            });
            self.note_memory();
            accepted
        }

        /// `proxy_on_tick`.
        pub fn tick(&self, id: u32) {
            self.root(id, |root| {
                root.tick();
                true
            });
        }

        /// `proxy_on_queue_ready`.
        pub fn queue_ready(&self, id: u32, token: u32) {
            self.root(id, |root| {
                root.queue_ready(token);
                true
            });
        }

        /// `proxy_on_request_headers`.
        pub fn request_headers(&self, id: u32, end_of_stream: bool) -> u32 {
            self.stream(id, CONTINUE, |s| s.request_headers(end_of_stream))
        }

        /// `proxy_on_request_body`.
        pub fn request_body(&self, id: u32, size: usize, end_of_stream: bool) -> u32 {
            self.stream(id, CONTINUE, |s| s.request_body(size, end_of_stream))
        }

        /// `proxy_on_request_trailers`.
        pub fn request_trailers(&self, id: u32) -> u32 {
            self.stream(id, CONTINUE, |s| s.request_trailers())
        }

        /// `proxy_on_response_headers`.
        pub fn response_headers(&self, id: u32, end_of_stream: bool) -> u32 {
            self.stream(id, CONTINUE, |s| s.response_headers(end_of_stream))
        }

        /// `proxy_on_response_body`.
        pub fn response_body(&self, id: u32, size: usize, end_of_stream: bool) -> u32 {
            self.stream(id, CONTINUE, |s| s.response_body(size, end_of_stream))
        }

        /// `proxy_on_response_trailers`.
        pub fn response_trailers(&self, id: u32) -> u32 {
            self.stream(id, CONTINUE, |s| s.response_trailers())
        }

        /// `proxy_on_log`.
        pub fn log(&self, id: u32) {
            self.stream(id, CONTINUE, |s| {
                s.log();
                Action::Continue
            });
        }

        /// `proxy_on_http_call_response`.
        pub fn http_call_response(&self, token: u32, body_size: usize) {
            let sent = Sent { token, grpc: false };
            self.answer(sent, || CalloutResponse::read(body_size, F::BODY_LIMIT));
        }

        /// `proxy_on_grpc_receive`: a gRPC call's reply message.
        pub fn grpc_receive(&self, token: u32, size: usize) {
            let sent = Sent { token, grpc: true };
            self.answer(sent, || {
                CalloutResponse::grpc_message_received(size, F::BODY_LIMIT)
            });
        }

        /// `proxy_on_grpc_close`: a gRPC call that ended without a reply.
        pub fn grpc_close(&self, token: u32, status: u32) {
            let sent = Sent { token, grpc: true };
            self.answer(sent, || CalloutResponse::grpc_closed(status));
        }

        /// A callout's answer, routed by its token to the plugin or the request
        /// waiting for it; read (`read`) in the plugin's context, where Envoy
        /// delivers it, before the request is made the effective context. An
        /// answer nobody waits for (a late one after `Wait::First`) is not read.
        fn answer(&self, sent: Sent, read: impl FnOnce() -> CalloutResponse) {
            self.with((), |s| {
                if let Some((_, root)) = s.roots.iter_mut().find(|(_, r)| r.waits_for(sent)) {
                    root.callout_response(sent, read());
                } else if let Some((id, stream)) = s.streams.waiting_for(sent) {
                    let response = read();
                    crate::host::set_effective_context(id);
                    stream.callout_response(sent, response);
                }
            })
        }

        /// `proxy_on_delete`: forgets the request or plugin `id`, then reports
        /// the linear memory if it changed.
        pub fn delete(&self, id: u32) {
            self.with((), |s| {
                if !s.streams.remove(id) {
                    if let Some(at) = s.roots.iter().position(|(i, _)| *i == id) {
                        s.roots.swap_remove(at);
                    }
                }
            });
            self.note_memory();
        }
    }

    /// `proxy_on_memory_allocate`: a buffer the host fills and hands back.
    pub fn allocate(size: usize) -> *mut u8 {
        let mut buffer = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
        buffer.as_mut_ptr()
    }
}
