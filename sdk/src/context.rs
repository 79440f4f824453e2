//! What each hook is handed: the configuration for this request and what the hook may touch.

use crate::body::{Body, BodyMode};
use crate::callout::{Callout, Sent, Wait};
use crate::header::Headers;
use crate::host::{Direction, Map};
use crate::outcome::{Action, Error, Result};
use crate::property::Properties;
use crate::reply::LocalReply;

/// Per-request state the contexts share with the runtime: the callout in flight
/// and how far each body has come.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    /// The callouts this request sent and waits for (boxed: a request that never
    /// calls out carries one null pointer).
    pub(crate) waiting: Option<Box<Waiting>>,
    /// Whether the filter has a callout hook (else a callout's answer would be lost).
    pub(crate) callouts: bool,
    /// The filter's [`BODY_MODE`](crate::HttpFilter::BODY_MODE).
    pub(crate) body_mode: BodyMode,
    /// The request body (`[0]`) and the response body (`[1]`), by [`Direction`].
    pub(crate) bodies: [BodyFlow; 2],
    /// The `_rules_` entry this request's configuration came from.
    pub(crate) rule: Option<usize>,
}

/// One direction's body: how the hook sees it, and how far it has come. Eight bytes,
/// zero at the start of a request (every byte here is work per request: `bench --work`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BodyFlow {
    /// The mode, once chosen or once the body started (until then, `Flow::body_mode`).
    pub(crate) mode: BodyMode,
    /// [`BodyFlow::CHOSEN`], [`BodyFlow::ENDLESS`], [`BodyFlow::STARTED`], [`BodyFlow::ENDED`].
    flags: u8,
    /// Bytes held in `Buffer` mode with no end of stream yet: when trailers end
    /// the stream instead, the body hook runs from the trailers hook.
    pub(crate) buffered: usize,
}

impl BodyFlow {
    /// The filter chose `mode` for this request: a filter-wide `Buffer` yields to
    /// streams (SSE, gRPC, upgrades), a chosen one does not.
    pub(crate) const CHOSEN: u8 = 1;
    /// The headers announced a stream (SSE, gRPC, an upgrade) that a filter-wide
    /// `Buffer` must not hold; noted in the headers hooks, where Envoy shows them.
    pub(crate) const ENDLESS: u8 = 2;
    /// A chunk has arrived (the mode is settled).
    pub(crate) const STARTED: u8 = 4;
    /// The hook has seen the end of the stream.
    pub(crate) const ENDED: u8 = 8;

    /// True when any of `flags` is set.
    pub(crate) fn is(&self, flags: u8) -> bool {
        self.flags & flags != 0
    }

    pub(crate) fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}

/// The callouts a request (or, for ticks, the plugin) waits for.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// Each call waiting for its answer, with its index.
    pub(crate) calls: Calls,
    /// When the paused request resumes.
    pub(crate) wait: Wait,
    /// How many callouts were sent so far (the next one's index).
    pub(crate) sent: usize,
}

/// The calls waiting for their answers, each with its index: the first inline (a
/// request usually sends one callout, which then allocates nothing here), the rest
/// in a `Vec`. `rest` holds calls only while `first` does.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    first: Option<(Sent, usize)>,
    rest: Vec<(Sent, usize)>,
}

impl Calls {
    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn clear(&mut self) {
        self.first = None;
        self.rest.clear();
    }

    fn push(&mut self, call: (Sent, usize)) {
        match self.first {
            None => self.first = Some(call),
            Some(_) => self.rest.push(call),
        }
    }

    /// Keeps the first `len` calls.
    fn truncate(&mut self, len: usize) {
        match len {
            0 => self.clear(),
            _ => self.rest.truncate(len - 1),
        }
    }

    /// Takes the call `sent` out: its index.
    fn take(&mut self, sent: Sent) -> Option<usize> {
        if let Some((first, index)) = self.first {
            if first == sent {
                self.first = (!self.rest.is_empty()).then(|| self.rest.remove(0));
                return Some(index);
            }
        }
        let at = self.rest.iter().position(|(s, _)| *s == sent)?;
        Some(self.rest.remove(at).1)
    }

    fn contains(&self, sent: Sent) -> bool {
        self.first.iter().chain(&self.rest).any(|(s, _)| *s == sent)
    }
}

impl Waiting {
    /// Sends `callouts`, in order; on a refusal, forgets the whole batch (answers to
    /// those already sent are dropped) and says which one. Returns the first index.
    pub(crate) fn send(
        &mut self,
        callouts: impl IntoIterator<Item = Callout>,
    ) -> Result<usize, Error> {
        let (before, first) = (self.calls.len(), self.sent);
        for (i, callout) in callouts.into_iter().enumerate() {
            match callout.dispatch() {
                Ok(sent) => {
                    self.calls.push((sent, self.sent));
                    self.sent += 1;
                }
                Err(e) if i == 0 => return Err(e),
                Err(e) => {
                    self.calls.truncate(before);
                    return Err(Error::new(format_args!(
                        "callout {i} of the batch: {e} (the batch's other callouts are abandoned)"
                    )));
                }
            }
        }
        if self.calls.len() == before {
            return Err(Error::from("no callout to send: the batch is empty"));
        }
        Ok(first)
    }

    /// Takes the call `sent` out of those waiting: its index.
    pub(crate) fn answered(&mut self, sent: Sent) -> Option<usize> {
        self.calls.take(sent)
    }

    /// True when `sent` is waiting for its answer.
    pub(crate) fn waits_for(&self, sent: Sent) -> bool {
        self.calls.contains(sent)
    }
}

impl Flow {
    /// `set_body_mode` for `direction`: any mode before the body starts, then only `Skip`.
    fn set_body_mode(&mut self, direction: Direction, mode: BodyMode) -> Result<(), Error> {
        let body = &mut self.bodies[direction as usize];
        if body.is(BodyFlow::STARTED) && mode != body.mode && mode != BodyMode::Skip {
            return Err(Error::new(format_args!(
                "the body mode can change to {mode:?} only before the body starts: choose it in the headers hook"
            )));
        }
        body.mode = mode;
        body.set(BodyFlow::CHOSEN, true);
        Ok(())
    }

    fn callouts(&mut self, wait: Wait, callouts: impl IntoIterator<Item = Callout>) -> Result {
        if !self.callouts {
            return Err(Error::from(
                "a callout needs an `on_callout_response` hook: implement it in the #[weir::filter] impl",
            ));
        }
        let waiting = self.waiting.get_or_insert_with(Box::default);
        waiting.send(callouts)?;
        waiting.wait = wait;
        Ok(Action::Pause)
    }
}

/// What the request hooks are handed: the configuration, the request's headers,
/// body and trailers, its properties, and the ways to answer or pause it.
pub struct Request<'a, C> {
    config: &'a C,
    flow: &'a mut Flow,
    headers: Headers,
    trailers: Headers,
    body: Body,
    end_of_stream: bool,
}

/// What the response hooks are handed: the configuration, the response's
/// headers, body and trailers, the request's properties, and the ways to
/// replace or pause it.
pub struct Response<'a, C> {
    config: &'a C,
    flow: &'a mut Flow,
    headers: Headers,
    trailers: Headers,
    body: Body,
    end_of_stream: bool,
}

impl<'a, C> Request<'a, C> {
    pub(crate) fn new(config: &'a C, flow: &'a mut Flow, body: Body, end_of_stream: bool) -> Self {
        Request {
            config,
            flow,
            headers: Headers::new(Map::RequestHeaders),
            trailers: Headers::new(Map::RequestTrailers),
            body,
            end_of_stream,
        }
    }

    /// The request headers, including `:method`, `:path`, `:authority` and `:scheme`.
    /// Envoy shows them in the headers hook (and while it holds the request); once
    /// that hook continued, the body and trailers hooks find none.
    pub fn headers(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// Sends `reply` to the client instead of forwarding the request.
    pub fn reply(&mut self, reply: LocalReply) -> Result {
        reply.send()
    }
}

impl<'a, C> Response<'a, C> {
    pub(crate) fn new(config: &'a C, flow: &'a mut Flow, body: Body, end_of_stream: bool) -> Self {
        Response {
            config,
            flow,
            headers: Headers::new(Map::ResponseHeaders),
            trailers: Headers::new(Map::ResponseTrailers),
            body,
            end_of_stream,
        }
    }

    /// The response headers, including `:status`. Envoy shows them in the headers
    /// hook (and while it holds the response); once that hook continued, the body
    /// and trailers hooks find none.
    pub fn headers(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// Replaces the upstream's response with `reply`.
    pub fn reply(&mut self, reply: LocalReply) -> Result {
        reply.send()
    }
}

/// The methods `Request` and `Response` share.
macro_rules! stream_context {
    ($ty:ident, $what:literal, $direction:expr) => {
        impl<'a, C> $ty<'a, C> {
            /// The configuration for this request: the global one, or the
            /// `_rules_` entry it matched. Borrowed for the whole hook, so it
            /// can be held while headers are written.
            pub fn config(&self) -> &'a C {
                self.config
            }

            #[doc = concat!("The ", $what, " trailers; empty outside the trailers hook.")]
            pub fn trailers(&mut self) -> &mut Headers {
                &mut self.trailers
            }

            #[doc = concat!("In the body hook, the ", $what, " body bytes this call sees: the chunk that")]
            /// arrived, or the whole body when the mode is [`BodyMode::Buffer`]. Empty elsewhere.
            ///
            /// ```
            #[doc = concat!("# fn hook(cx: &mut weir::", stringify!($ty), "<'_, ()>) -> weir::Result {")]
            /// let bytes = cx.body().read();
            /// cx.body().replace(&bytes.to_ascii_lowercase())?;
            /// # Ok(weir::Action::Continue) }
            /// ```
            pub fn body(&mut self) -> &mut Body {
                &mut self.body
            }

            #[doc = concat!("True when nothing follows in this direction: in the headers hook, the ", $what, " has")]
            /// no body; in the body hook, this is the last chunk (or the whole body).
            ///
            /// ```
            #[doc = concat!("# fn hook(cx: &mut weir::", stringify!($ty), "<'_, ()>, count: &mut usize)")]
            /// # -> weir::Result {
            /// *count += cx.body().len();
            /// if cx.end_of_stream() {
            ///     weir::log::log(weir::log::Level::Debug, &format!("{count} bytes in all"));
            /// }
            /// # Ok(weir::Action::Continue) }
            /// ```
            pub fn end_of_stream(&self) -> bool {
                self.end_of_stream
            }

            #[doc = concat!("Chooses how the body hook sees this ", $what, "'s body ([`BodyMode`]), overriding")]
            /// [`HttpFilter::BODY_MODE`](crate::HttpFilter::BODY_MODE) for this request. Call it
            /// in the headers hook; once the body has started only [`BodyMode::Skip`] is taken
            /// (stop seeing the rest), anything else is an `Err`. `Buffer` chosen here
            /// holds even a stream (SSE, gRPC, an upgrade): you asked for exactly this one.
            ///
            /// ```
            /// use weir::BodyMode;
            #[doc = concat!("# fn hook(cx: &mut weir::", stringify!($ty), "<'_, ()>) -> weir::Result {")]
            /// let form = cx.headers().get("content-type").is_some_and(|t| t == "application/x-www-form-urlencoded");
            /// cx.set_body_mode(if form { BodyMode::Buffer } else { BodyMode::Stream })?;
            /// # Ok(weir::Action::Continue) }
            /// ```
            pub fn set_body_mode(&mut self, mode: BodyMode) -> Result<(), Error> {
                self.flow.set_body_mode($direction, mode)
            }

            #[doc = concat!("How the body hook sees this ", $what, "'s body: in the body hook, how this call")]
            /// came (a filter-wide `Buffer` that met a stream says `Stream`); in the headers hook,
            /// what was chosen so far.
            ///
            /// ```
            /// use weir::BodyMode;
            #[doc = concat!("# fn hook(cx: &mut weir::", stringify!($ty), "<'_, ()>) -> weir::Result {")]
            /// if cx.body_mode() != BodyMode::Buffer {
            ///     return Ok(weir::Action::Continue); // a chunk of a stream: this filter reads whole documents only
            /// }
            /// # Ok(weir::Action::Continue) }
            /// ```
            pub fn body_mode(&self) -> BodyMode {
                let body = &self.flow.bodies[$direction as usize];
                if body.is(BodyFlow::CHOSEN | BodyFlow::STARTED) {
                    body.mode
                } else {
                    self.flow.body_mode
                }
            }

            /// Which configuration this request runs with: `Some(i)` for the
            /// `_rules_` entry `i` (counting from 0), `None` for the global one.
            /// State kept across requests (counters, caches) can be keyed by it.
            pub fn rule(&self) -> Option<usize> {
                self.flow.rule
            }

            /// The request's attributes: path, method, source address, route name…
            pub fn properties(&self) -> Properties {
                Properties::new()
            }

            /// Sends `callout` and pauses until
            /// [`on_callout_response`](crate::HttpFilter::on_callout_response) has
            /// its answer: return what this returns (`Ok(Action::Pause)`).
            /// The same as `callouts(Wait::All, [callout])`.
            pub fn callout(&mut self, callout: Callout) -> Result {
                self.flow.callouts(Wait::All, [callout])
            }

            /// Sends several callouts at once (they run in parallel) and pauses until
            /// `wait` holds: [`Wait::All`], every answer has been through
            /// [`on_callout_response`](crate::HttpFilter::on_callout_response); or
            /// [`Wait::First`], one answer's hook returned `Continue` (later answers are
            /// dropped). Each answer says which callout it is by
            /// [`index`](crate::CalloutResponse::index): its position here, counted on from
            /// the callouts this request sent before. If the proxy refuses one, none is
            /// waited for and this is an `Err` naming it.
            ///
            /// ```
            /// use weir::{Action, Callback, Callout, CalloutResponse, Request, Wait};
            ///
            /// #[derive(Default)]
            /// struct Quorum { allowed: usize }
            ///
            /// #[weir::filter]
            /// impl weir::HttpFilter for Quorum {
            ///     type Config = ();
            ///     fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
            ///         cx.callouts(Wait::All, [Callout::get("policy", "/check"), Callout::get("quota", "/check")])
            ///     }
            ///     fn on_callout_response(&mut self, cx: &mut Callback<'_, ()>, answer: CalloutResponse) -> weir::Result {
            ///         if answer.status() != Some(200) {
            ///             let who = ["policy", "quota"][answer.index()];
            ///             return cx.reply(weir::LocalReply::new(403).body(format!("denied by {who}\n")));
            ///         }
            ///         self.allowed += 1; // the request resumes after the last answer
            ///         Ok(Action::Continue)
            ///     }
            /// }
            /// ```
            pub fn callouts(
                &mut self,
                wait: Wait,
                callouts: impl IntoIterator<Item = Callout>,
            ) -> Result {
                self.flow.callouts(wait, callouts)
            }
        }
    };
}
stream_context!(Request, "request", Direction::Request);
stream_context!(Response, "response", Direction::Response);

/// What [`on_callout_response`](crate::HttpFilter::on_callout_response) is
/// handed: the request (paused while the callout ran) and the ways to resume
/// it, reject it or call out again.
pub struct Callback<'a, C> {
    config: &'a C,
    flow: &'a mut Flow,
    request_headers: Headers,
    response_headers: Headers,
}

impl<'a, C> Callback<'a, C> {
    pub(crate) fn new(config: &'a C, flow: &'a mut Flow) -> Self {
        Callback {
            config,
            flow,
            request_headers: Headers::new(Map::RequestHeaders),
            response_headers: Headers::new(Map::ResponseHeaders),
        }
    }

    /// The configuration for this request.
    pub fn config(&self) -> &'a C {
        self.config
    }

    /// The request headers (still writable when the request phase paused).
    pub fn request_headers(&mut self) -> &mut Headers {
        &mut self.request_headers
    }

    /// The response headers (when the response phase paused).
    pub fn response_headers(&mut self) -> &mut Headers {
        &mut self.response_headers
    }

    /// The request's attributes.
    pub fn properties(&self) -> Properties {
        Properties::new()
    }

    /// Rejects the paused request (or response) with `reply`; answers still to
    /// come are dropped.
    pub fn reply(&mut self, reply: LocalReply) -> Result {
        if let Some(waiting) = &mut self.flow.waiting {
            waiting.calls.clear();
        }
        reply.send()
    }

    /// Sends another callout; the request stays paused until its answer.
    pub fn callout(&mut self, callout: Callout) -> Result {
        self.flow.callouts(Wait::All, [callout])
    }

    /// Sends more callouts at once (see [`Request::callouts`]); `wait` applies to
    /// every callout still waiting.
    pub fn callouts(&mut self, wait: Wait, callouts: impl IntoIterator<Item = Callout>) -> Result {
        self.flow.callouts(wait, callouts)
    }

    /// How many of this request's callouts still wait for their answer (not
    /// counting this one). With [`Wait::All`], the request resumes when this is 0
    /// and the hook returns `Continue`.
    pub fn pending(&self) -> usize {
        self.flow.waiting.as_ref().map_or(0, |w| w.calls.len())
    }
}

/// What [`on_log`](crate::HttpFilter::on_log) is handed when the request is over.
pub struct Log<'a, C> {
    config: &'a C,
    request_headers: Headers,
    response_headers: Headers,
}

impl<'a, C> Log<'a, C> {
    pub(crate) fn new(config: &'a C) -> Self {
        Log {
            config,
            request_headers: Headers::new(Map::RequestHeaders),
            response_headers: Headers::new(Map::ResponseHeaders),
        }
    }

    /// The configuration for this request.
    pub fn config(&self) -> &'a C {
        self.config
    }

    /// The request headers as they went upstream (read only in practice).
    pub fn request_headers(&self) -> &Headers {
        &self.request_headers
    }

    /// The response headers as they went to the client.
    pub fn response_headers(&self) -> &Headers {
        &self.response_headers
    }

    /// The request's attributes (and `response.code`, via `get`).
    pub fn properties(&self) -> Properties {
        Properties::new()
    }
}

/// What [`on_tick`](crate::HttpFilter::on_tick) and
/// [`on_queue_ready`](crate::HttpFilter::on_queue_ready) and
/// [`on_tick_callout_response`](crate::HttpFilter::on_tick_callout_response) are
/// handed, outside any request: the global configuration, and callouts.
pub struct Tick<'a, C> {
    config: &'a C,
    /// The plugin's callouts, when the filter has `on_tick_callout_response`.
    calls: Option<&'a mut Waiting>,
}

impl<'a, C> Tick<'a, C> {
    pub(crate) fn new(config: &'a C, calls: Option<&'a mut Waiting>) -> Self {
        Tick { config, calls }
    }

    /// The global configuration (ticks run only when there is one).
    pub fn config(&self) -> &'a C {
        self.config
    }

    /// The plugin's attributes (`plugin_name`, `plugin_vm_id`, `node`…). There is
    /// no request here: request attributes are not found, and
    /// [`Properties::set`] is `Err(PropertyError::NoRequest)`.
    ///
    /// [`PropertyError::NoRequest`]: crate::property::PropertyError::NoRequest
    pub fn properties(&self) -> Properties {
        Properties::new()
    }

    /// Sends `callout` (HTTP or gRPC) outside any request; its answer goes to
    /// [`on_tick_callout_response`](crate::HttpFilter::on_tick_callout_response),
    /// e.g. to refresh a policy or a key set into [`crate::shared`] data, which
    /// every worker's requests read. Returns its [`index`](crate::CalloutResponse::index)
    /// among the plugin's callouts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir::{Callout, CalloutResponse, Tick};
    ///
    /// #[derive(Default)]
    /// struct Policy;
    ///
    /// #[weir::filter]
    /// impl weir::HttpFilter for Policy {
    ///     type Config = ();
    ///     fn tick_period(_: &()) -> Option<Duration> { Some(Duration::from_secs(30)) }
    ///     fn on_tick(cx: &mut Tick<'_, ()>) {
    ///         if let Err(e) = cx.callout(Callout::get("policy", "/current")) {
    ///             weir::warn!("policy refresh: {e}");
    ///         }
    ///     }
    ///     fn on_tick_callout_response(_cx: &mut Tick<'_, ()>, answer: CalloutResponse) {
    ///         if answer.status() == Some(200) {
    ///             let _ = weir::shared::set("policy", answer.body(), None);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn callout(&mut self, callout: Callout) -> Result<usize, Error> {
        match &mut self.calls {
            Some(calls) => calls.send([callout]),
            None => Err(Error::from(
                "a tick's callout needs an `on_tick_callout_response` hook: implement it in the #[weir::filter] impl",
            )),
        }
    }
}

#[cfg(test)]
mod calls_tests {
    use super::*;

    fn sent(token: u32) -> Sent {
        Sent { token, grpc: false }
    }

    #[test]
    fn calls_answer_in_any_order_and_truncate_from_the_end() {
        let mut calls = Calls::default();
        assert!(calls.is_empty());
        for (i, t) in [7, 8, 9].into_iter().enumerate() {
            calls.push((sent(t), i));
        }
        assert_eq!(calls.len(), 3);
        assert!(calls.contains(sent(8)));
        assert_eq!(calls.take(sent(7)), Some(0));
        assert_eq!(calls.take(sent(7)), None);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls.take(sent(9)), Some(2));
        assert_eq!(calls.take(sent(8)), Some(1));
        assert!(calls.is_empty());
        for (i, t) in [1, 2, 3].into_iter().enumerate() {
            calls.push((sent(t), i));
        }
        calls.truncate(1);
        assert_eq!(calls.len(), 1);
        assert!(calls.contains(sent(1)) && !calls.contains(sent(2)));
        calls.truncate(0);
        assert!(calls.is_empty());
    }
}
