//! The filter runtime: configuration and per-request dispatch, shared by the
//! wasm glue (proxy-wasm's contexts) and the native test harness.

use std::rc::Rc;

use crate::callout::CalloutResponse;
use crate::config::ConfigError;
use crate::context::{Callback, Flow, Log, Request, Response, Tick};
use crate::filter::{Action, HttpFilter};
use crate::hooks;
use crate::host::{self, Direction};
use crate::log::{log, Level};
use crate::reply::LocalReply;
use crate::rules::{Pick, RuleSet};

/// One configured plugin: the filter's name and its current configuration.
pub(crate) struct Plugin<F: HttpFilter> {
    pub(crate) name: &'static str,
    config: Option<Rc<RuleSet<F::Config>>>,
}

impl<F: HttpFilter> Plugin<F> {
    pub(crate) fn new(name: &'static str) -> Self {
        Plugin { name, config: None }
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
                log(
                    Level::Error,
                    &format!("{}: configuration refused: {e}", self.name),
                );
                false
            }
        }
    }

    pub(crate) fn stream(&self) -> Stream<F> {
        Stream {
            name: self.name,
            config: self.config.clone(),
            pick: None,
            flow: Flow {
                pending: None,
                callouts: F::HOOKS & hooks::HTTP_CALL_RESPONSE != 0,
            },
            paused: None,
            body_skipped: false,
            buffered: 0,
            filter: F::default(),
        }
    }

    /// Runs the tick hook with the global configuration.
    pub(crate) fn tick(&self) {
        if F::HOOKS & hooks::TICK == 0 {
            return;
        }
        if let Some(config) = self.config.as_ref().and_then(|c| c.global.as_ref()) {
            F::on_tick(&mut Tick::new(config));
        }
    }
}

/// One request through the filter.
pub(crate) struct Stream<F: HttpFilter> {
    name: &'static str,
    config: Option<Rc<RuleSet<F::Config>>>,
    /// The configuration this request uses, picked on its first hook.
    pick: Option<Pick>,
    flow: Flow,
    /// The direction a hook paused (and a callout's answer resumes).
    paused: Option<Direction>,
    /// A response body over the limit: its later chunks pass unread.
    body_skipped: bool,
    /// Body bytes buffered without an end of stream yet: when trailers end the
    /// stream instead, the body hook runs first, from the trailers hook.
    buffered: usize,
    filter: F,
}

fn finish(name: &str, hook: &str, result: crate::Result) -> Action {
    result.unwrap_or_else(|e| {
        log(Level::Warn, &format!("{name}: {hook}: {e}"));
        Action::Continue
    })
}

impl<F: HttpFilter> Stream<F> {
    /// True when this request has a configuration (no rule said "skip").
    fn configured(&mut self) -> bool {
        let Some(set) = &self.config else {
            return false;
        };
        let pick = *self.pick.get_or_insert_with(|| set.pick());
        pick != Pick::Skip
    }

    /// Runs one hook with the request's configuration; remembers a pause.
    fn run(
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
        let action = finish(
            self.name,
            hook,
            call(&mut self.filter, config, &mut self.flow),
        );
        if action == Action::Pause {
            self.paused = Some(direction);
        }
        action
    }

    pub(crate) fn request_headers(&mut self, end_of_stream: bool) -> Action {
        if F::HOOKS & hooks::REQUEST_HEADERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Request, "on_request_headers", |f, c, flow| {
            f.on_request_headers(&mut Request::new(c, flow, 0, end_of_stream))
        })
    }

    pub(crate) fn request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if F::HOOKS & hooks::REQUEST_BODY == 0 || !self.configured() {
            return Action::Continue;
        }
        if size > F::BODY_LIMIT {
            let reply = LocalReply::new(413)
                .body("request body too large\n")
                .details("weir_body_limit");
            return finish(self.name, "on_request_body", reply.send());
        }
        if !end_of_stream {
            self.buffered = size;
            return Action::Pause; // buffer until the whole body is here
        }
        self.buffered = 0;
        self.run(Direction::Request, "on_request_body", |f, c, flow| {
            f.on_request_body(&mut Request::new(c, flow, size, true))
        })
    }

    pub(crate) fn request_trailers(&mut self) -> Action {
        if self.buffered > 0 && self.request_body(self.buffered, true) == Action::Pause {
            return Action::Pause;
        }
        if F::HOOKS & hooks::REQUEST_TRAILERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Request, "on_request_trailers", |f, c, flow| {
            f.on_request_trailers(&mut Request::new(c, flow, 0, true))
        })
    }

    pub(crate) fn response_headers(&mut self, end_of_stream: bool) -> Action {
        if F::HOOKS & hooks::RESPONSE_HEADERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Response, "on_response_headers", |f, c, flow| {
            f.on_response_headers(&mut Response::new(c, flow, 0, end_of_stream))
        })
    }

    pub(crate) fn response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if F::HOOKS & hooks::RESPONSE_BODY == 0 || self.body_skipped || !self.configured() {
            return Action::Continue;
        }
        if size > F::BODY_LIMIT {
            self.body_skipped = true;
            log(
                Level::Warn,
                &format!(
                    "{}: on_response_body: body over {} bytes passes unread",
                    self.name,
                    F::BODY_LIMIT
                ),
            );
            return Action::Continue;
        }
        if !end_of_stream {
            self.buffered = size;
            return Action::Pause;
        }
        self.buffered = 0;
        self.run(Direction::Response, "on_response_body", |f, c, flow| {
            f.on_response_body(&mut Response::new(c, flow, size, true))
        })
    }

    pub(crate) fn response_trailers(&mut self) -> Action {
        if self.buffered > 0 && self.response_body(self.buffered, true) == Action::Pause {
            return Action::Pause;
        }
        if F::HOOKS & hooks::RESPONSE_TRAILERS == 0 {
            return Action::Continue;
        }
        self.run(Direction::Response, "on_response_trailers", |f, c, flow| {
            f.on_response_trailers(&mut Response::new(c, flow, 0, true))
        })
    }

    /// The answer to this request's callout `token`: runs the hook, then resumes
    /// the paused direction unless the hook paused again or replied.
    pub(crate) fn callout_response(&mut self, token: u32, body_size: usize) {
        if F::HOOKS & hooks::HTTP_CALL_RESPONSE == 0 || self.flow.pending != Some(token) {
            return;
        }
        self.flow.pending = None;
        let response = CalloutResponse::read(body_size, F::BODY_LIMIT);
        let paused = self.paused.take();
        let direction = paused.unwrap_or(Direction::Request);
        let action = self.run(direction, "on_callout_response", |f, c, flow| {
            f.on_callout_response(&mut Callback::new(c, flow), response)
        });
        if action == Action::Continue && paused.is_some() && !host::resume(direction) {
            log(
                Level::Warn,
                &format!(
                    "{}: on_callout_response: the proxy refused to resume the request",
                    self.name
                ),
            );
        }
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

/// The proxy-wasm contexts around [`Plugin`] and [`Stream`].
#[cfg(target_arch = "wasm32")]
pub(crate) mod wasm {
    use super::{Plugin, Stream};
    use crate::filter::{Action, HttpFilter};
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{self, ContextType};

    struct Root<F: HttpFilter>(Plugin<F>);

    impl<F: HttpFilter> Context for Root<F> {}

    impl<F: HttpFilter> RootContext for Root<F> {
        fn on_configure(&mut self, size: usize) -> bool {
            self.0
                .configure_logged(&crate::host::plugin_configuration(size))
        }

        fn on_tick(&mut self) {
            self.0.tick();
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(self.0.stream()))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    fn action(a: Action) -> types::Action {
        match a {
            Action::Continue => types::Action::Continue,
            Action::Pause => types::Action::Pause,
        }
    }

    impl<F: HttpFilter> Context for Stream<F> {
        fn on_http_call_response(
            &mut self,
            token: u32,
            _headers: usize,
            body_size: usize,
            _trailers: usize,
        ) {
            self.callout_response(token, body_size);
        }
    }

    impl<F: HttpFilter> HttpContext for Stream<F> {
        fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> types::Action {
            action(self.request_headers(end_of_stream))
        }

        fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> types::Action {
            action(self.request_body(size, end_of_stream))
        }

        fn on_http_request_trailers(&mut self, _n: usize) -> types::Action {
            action(self.request_trailers())
        }

        fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> types::Action {
            action(self.response_headers(end_of_stream))
        }

        fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> types::Action {
            action(self.response_body(size, end_of_stream))
        }

        fn on_http_response_trailers(&mut self, _n: usize) -> types::Action {
            action(self.response_trailers())
        }

        fn on_log(&mut self) {
            Stream::log(self);
        }
    }

    static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

    fn new_root<F: HttpFilter>(_id: u32) -> Box<dyn RootContext> {
        Box::new(Root::<F>(Plugin::new(
            NAME.get().copied().unwrap_or("weir"),
        )))
    }

    /// Registers `F` with proxy-wasm and logs any panic with the filter's name.
    pub fn start<F: HttpFilter>(name: &'static str) {
        let _ = NAME.set(name);
        std::panic::set_hook(Box::new(move |info| {
            crate::log::log(
                crate::log::Level::Critical,
                &format!("{name}: filter panicked: {info}"),
            );
        }));
        proxy_wasm::set_root_context(new_root::<F>);
    }
}
