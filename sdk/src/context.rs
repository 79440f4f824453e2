//! What each hook is handed: the configuration for this request and what the hook may touch.

use crate::body::Body;
use crate::callout::Callout;
use crate::filter::{Action, Error, Result};
use crate::header::Headers;
use crate::host::{Buffer, Map};
use crate::property::Properties;
use crate::reply::LocalReply;

/// Per-request state the contexts share with the runtime: the callout in flight.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    /// The token of the callout waiting for its answer.
    pub(crate) pending: Option<u32>,
    /// Whether the filter has a callout hook (else a callout's answer would be lost).
    pub(crate) callouts: bool,
    /// The `_rules_` entry this request's configuration came from.
    pub(crate) rule: Option<usize>,
}

impl Flow {
    fn callout(&mut self, callout: Callout) -> Result {
        if !self.callouts {
            return Err(Error::from(
                "a callout needs an `on_callout_response` hook: implement it in the #[weir::filter] impl",
            ));
        }
        if self.pending.is_some() {
            return Err(Error::from("a callout is already waiting for its answer"));
        }
        self.pending = Some(callout.dispatch()?);
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
    pub(crate) fn new(
        config: &'a C,
        flow: &'a mut Flow,
        body_size: usize,
        end_of_stream: bool,
    ) -> Self {
        Request {
            config,
            flow,
            headers: Headers::new(Map::RequestHeaders),
            trailers: Headers::new(Map::RequestTrailers),
            body: Body::new(Buffer::RequestBody, body_size),
            end_of_stream,
        }
    }

    /// The request headers, including `:method`, `:path`, `:authority` and `:scheme`.
    pub fn headers(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// Sends `reply` to the client instead of forwarding the request.
    pub fn reply(&mut self, reply: LocalReply) -> Result {
        reply.send()
    }
}

impl<'a, C> Response<'a, C> {
    pub(crate) fn new(
        config: &'a C,
        flow: &'a mut Flow,
        body_size: usize,
        end_of_stream: bool,
    ) -> Self {
        Response {
            config,
            flow,
            headers: Headers::new(Map::ResponseHeaders),
            trailers: Headers::new(Map::ResponseTrailers),
            body: Body::new(Buffer::ResponseBody, body_size),
            end_of_stream,
        }
    }

    /// The response headers, including `:status`.
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
    ($ty:ident, $what:literal) => {
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

            #[doc = concat!("The whole ", $what, " body in the body hook; empty elsewhere.")]
            pub fn body(&mut self) -> &mut Body {
                &mut self.body
            }

            #[doc = concat!("True when nothing follows in this direction (in the headers hook: the ", $what, " has no body).")]
            pub fn end_of_stream(&self) -> bool {
                self.end_of_stream
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
            /// One callout at a time per request.
            pub fn callout(&mut self, callout: Callout) -> Result {
                self.flow.callout(callout)
            }
        }
    };
}
stream_context!(Request, "request");
stream_context!(Response, "response");

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

    /// Rejects the paused request (or response) with `reply`.
    pub fn reply(&mut self, reply: LocalReply) -> Result {
        reply.send()
    }

    /// Sends another callout; the request stays paused until its answer.
    pub fn callout(&mut self, callout: Callout) -> Result {
        self.flow.callout(callout)
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

/// What [`on_tick`](crate::HttpFilter::on_tick) is handed: the global configuration.
pub struct Tick<'a, C> {
    config: &'a C,
}

impl<'a, C> Tick<'a, C> {
    pub(crate) fn new(config: &'a C) -> Self {
        Tick { config }
    }

    /// The global configuration (ticks run only when there is one).
    pub fn config(&self) -> &'a C {
        self.config
    }
}
