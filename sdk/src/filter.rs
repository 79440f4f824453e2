//! What a filter author implements: [`HttpFilter`], its configuration and its hooks.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::body::BodyMode;
use crate::callout::CalloutResponse;
use crate::context::{Callback, Log, Request, Response, Tick};
use crate::metrics::Metric;
use crate::outcome::{Action, Result};
use crate::queue::Queue;

/// An HTTP filter: a configuration type and the hooks it needs.
///
/// Write the impl with `#[weir::filter]` on it: the attribute records which
/// hooks you implemented, so the build can stop Envoy from entering the VM for
/// the others. One value of the implementing type is made (with [`Default`])
/// for each request, so per-request state lives in its fields. Every hook has a
/// default body that lets the request through; override only the ones you need.
///
/// A hook returns [`Result`]: `Err` is logged with the filter's name and the
/// request continues (fail open), so `?` on a header write is always safe. A
/// panic in a hook is logged with the filter's name and then aborts the VM,
/// and Envoy applies the plugin's `failure_policy` (`FAIL_CLOSED` by default:
/// 503 until the VM is reloaded; see the filter guide).
pub trait HttpFilter: Default + 'static {
    /// The configuration, parsed from the plugin's JSON once per configure and
    /// shared by every request. Use [`HeaderName`](crate::HeaderName) and
    /// [`HeaderValue`](crate::HeaderValue) fields to have them checked then.
    /// Per-route overrides (`_rules_`) come for free: see [`crate::rules`].
    type Config: DeserializeOwned + 'static;

    /// Which hooks this filter implements, one bit each ([`crate::hooks`]).
    /// `#[weir::filter]` writes it; without the attribute the filter does not compile:
    ///
    /// ```compile_fail
    /// #[derive(Default)]
    /// struct NoAttribute;
    /// impl weir::HttpFilter for NoAttribute { type Config = (); }
    /// weir::export!(NoAttribute); // error: put #[weir::filter] on your `impl weir::HttpFilter for ...` block
    /// ```
    const HOOKS: u32 = panic!("put #[weir::filter] on your `impl weir::HttpFilter for ...` block");

    /// The filter's package name, written by `#[weir::filter]`: the name its log lines
    /// carry in Envoy (the module's VM is named after its package), which the native
    /// harness uses too, so a test's expected lines hold both ways.
    #[doc(hidden)]
    const PACKAGE: &'static str = "";

    /// Metrics to define when the filter is configured, so they show in Envoy's
    /// stats (at zero) before the first request. A metric not listed here is
    /// defined on first use.
    const METRICS: &'static [&'static Metric] = &[];

    /// Whether the configuration may carry per-route `_rules_` ([`crate::rules`]).
    /// `false` refuses `_rules_` as an unknown field would be, and leaves the
    /// rule parser and path matching out of the module (about 8 KB of add-header
    /// after weir's pipeline, measured in issue 15's second round; BENCHMARKS.md).
    const RULES: bool = true;

    /// The most body bytes weir holds for a body hook in [`BodyMode::Buffer`]. A
    /// larger request body is answered with 413; a larger response body passes
    /// through unread (and a warning is logged). Streamed bodies have no limit.
    const BODY_LIMIT: usize = 1 << 20;

    /// How the body hooks see bodies, both ways, unless the headers hook chooses
    /// otherwise for one request (`cx.set_body_mode`). [`BodyMode::Stream`] (the
    /// default) hands over each chunk as it passes and holds nothing.
    /// [`BodyMode::Buffer`] holds each body whole, except streams that must not
    /// wait (`text/event-stream`, `application/grpc*`, upgraded connections),
    /// which are streamed; the hook tells by `cx.body_mode()`.
    ///
    /// ```
    /// use weir::{Action, BodyMode, HttpFilter, Request};
    ///
    /// #[derive(Default)]
    /// struct WholeBodies;
    ///
    /// #[weir::filter]
    /// impl HttpFilter for WholeBodies {
    ///     type Config = ();
    ///     const BODY_MODE: BodyMode = BodyMode::Buffer;
    ///
    ///     fn on_request_body(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
    ///         if cx.body_mode() == BodyMode::Buffer {
    ///             let whole = cx.body().read();
    ///             # let _ = whole;
    ///         }
    ///         Ok(Action::Continue)
    ///     }
    /// }
    /// ```
    const BODY_MODE: BodyMode = BodyMode::Stream;

    /// `true` when the request-headers hook reads the request headers with
    /// `cx.headers().snapshot()`. A `_rules_` entry matching on the path then has
    /// its `:path` found in one read of the whole header map, and the hook's first
    /// snapshot is that same read: one host call per request instead of two (a
    /// property read for the pick, the map for the hook). Left `false`, the pick
    /// reads only `request.path`, the cheaper call for a filter that never takes
    /// a snapshot. Either way the pick and the hook see the same path.
    ///
    /// ```
    /// use weir::{Action, HttpFilter, LocalReply, Request};
    ///
    /// #[derive(Default)]
    /// struct NeedsKey;
    ///
    /// #[weir::filter]
    /// impl HttpFilter for NeedsKey {
    ///     type Config = ();
    ///     const SNAPSHOTS_REQUEST_HEADERS: bool = true;
    ///
    ///     fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
    ///         let headers = cx.headers().snapshot(); // no host call after a path rule's pick
    ///         if headers.get("x-api-key").is_none() {
    ///             return cx.reply(LocalReply::new(401));
    ///         }
    ///         Ok(Action::Continue)
    ///     }
    /// }
    /// ```
    const SNAPSHOTS_REQUEST_HEADERS: bool = false;

    /// The configuration to use when Envoy passes none. `None` (the default)
    /// refuses an empty configuration.
    fn default_config() -> Option<Self::Config> {
        None
    }

    /// Checks a parsed configuration beyond what its type says (called for the
    /// global configuration and each rule's). An `Err` refuses it, exactly like
    /// a parse error.
    fn validate(_config: &Self::Config) -> Result<(), crate::ConfigError> {
        Ok(())
    }

    /// How often [`on_tick`](Self::on_tick) runs, given the global configuration. `None`: never.
    fn tick_period(_config: &Self::Config) -> Option<Duration> {
        None
    }

    /// Called when the request headers arrive.
    fn on_request_headers(&mut self, _cx: &mut Request<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }

    /// Called as the request body passes, when there is one: with each chunk as
    /// it arrives ([`BodyMode::Stream`], the default; `cx.end_of_stream()` marks
    /// the last), or once with all of it ([`BodyMode::Buffer`], up to
    /// [`BODY_LIMIT`](Self::BODY_LIMIT)). `cx.body()` reads and rewrites what
    /// this call sees. See [`BODY_MODE`](Self::BODY_MODE) and `cx.set_body_mode`.
    fn on_request_body(&mut self, _cx: &mut Request<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }

    /// Called when the request trailers arrive (gRPC and chunked requests).
    fn on_request_trailers(&mut self, _cx: &mut Request<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }

    /// Called when the response headers arrive.
    fn on_response_headers(&mut self, _cx: &mut Response<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }

    /// Called as the response body passes, when there is one: with each chunk
    /// as it arrives ([`BodyMode::Stream`], the default; `cx.end_of_stream()`
    /// marks the last), or once with all of it ([`BodyMode::Buffer`], up to
    /// [`BODY_LIMIT`](Self::BODY_LIMIT)). A streamed body that ends at the
    /// trailers gets a last call with an empty, unwritable chunk.
    fn on_response_body(&mut self, _cx: &mut Response<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }

    /// Called when the response trailers arrive (e.g. `grpc-status`).
    fn on_response_trailers(&mut self, _cx: &mut Response<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }

    /// Called with the answer to a [`Callout`](crate::Callout) this request made
    /// (a timeout is Envoy's own 504; no status when the call failed without an
    /// answer), once per callout; the answer's [`index`](CalloutResponse::index)
    /// says which. `Continue` resumes the paused request or response (with several
    /// callouts in flight, as [`Wait`](crate::Wait) says); a local reply rejects it; `Pause` keeps it
    /// waiting (e.g. for another callout). The default resumes.
    fn on_callout_response(
        &mut self,
        _cx: &mut Callback<'_, Self::Config>,
        _response: CalloutResponse,
    ) -> Result {
        Ok(Action::Continue)
    }

    /// Called when the request is over (Envoy's access-log time), e.g. to record metrics.
    fn on_log(&mut self, _cx: &mut Log<'_, Self::Config>) {}

    /// Called every [`tick_period`](Self::tick_period), outside any request.
    fn on_tick(_cx: &mut Tick<'_, Self::Config>) {}

    /// Called, outside any request, once for each item enqueued to a shared
    /// [`Queue`] this plugin registered: take them with [`Queue::dequeue`]
    /// (see [`crate::queue`]). Runs with the global configuration.
    fn on_queue_ready(_cx: &mut Tick<'_, Self::Config>, _queue: Queue) {}
    /// Called with the answer to a callout sent from [`on_tick`](Self::on_tick)
    /// (`cx.callout(..)`), outside any request: e.g. store a refreshed policy in
    /// [`crate::shared`] data. `cx` can send another callout.
    fn on_tick_callout_response(_cx: &mut Tick<'_, Self::Config>, _response: CalloutResponse) {}
}
