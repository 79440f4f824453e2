//! Bodies: how a body hook sees them ([`BodyMode`]: each chunk as it passes, all of it
//! once, or not at all) and what it reads and rewrites ([`Body`]).

use crate::host::{self, Buffer};
use crate::outcome::Error;

/// How the body hooks see one direction's body. The default is
/// [`Stream`](BodyMode::Stream): nothing is held, so Server-Sent Events, gRPC
/// streams, long downloads and WebSockets pass at the upstream's pace.
///
/// Choose it for every request with [`HttpFilter::BODY_MODE`](crate::HttpFilter::BODY_MODE),
/// or for one request in its headers hook with `cx.set_body_mode(..)`
/// ([`Request::set_body_mode`](crate::Request::set_body_mode) for the request body,
/// [`Response::set_body_mode`](crate::Response::set_body_mode) for the response body).
///
/// ```
/// use weir::{Action, BodyMode, HttpFilter, Response};
///
/// #[derive(Default)]
/// struct JsonOnly;
///
/// #[weir::filter]
/// impl HttpFilter for JsonOnly {
///     type Config = ();
///
///     fn on_response_headers(&mut self, cx: &mut Response<'_, ()>) -> weir::Result {
///         let json = cx.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
///         // Whole JSON documents; any other body passes without entering the filter.
///         cx.set_body_mode(if json { BodyMode::Buffer } else { BodyMode::Skip })?;
///         Ok(Action::Continue)
///     }
///
///     fn on_response_body(&mut self, cx: &mut Response<'_, ()>) -> weir::Result {
///         let document = cx.body().read(); // all of it: the mode is Buffer here
///         # let _ = document;
///         Ok(Action::Continue)
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyMode {
    /// Each chunk as it arrives: the hook reads and may rewrite it
    /// ([`Body::replace`]), then it goes on at once. `cx.end_of_stream()` is
    /// true on the last call. Bytes a rewrite must hold back (a pattern cut
    /// by a chunk boundary) are the filter's to keep and emit with a later chunk.
    #[default]
    Stream,
    /// All of it, once: weir holds the chunks until the end of the stream (up to
    /// [`HttpFilter::BODY_LIMIT`](crate::HttpFilter::BODY_LIMIT); a larger request
    /// body gets 413, a larger response body passes unread), then runs the hook
    /// with the whole body and `end_of_stream` true.
    ///
    /// As the filter's [`BODY_MODE`](crate::HttpFilter::BODY_MODE), it holds
    /// no stream that never ends or must not wait: `text/event-stream`,
    /// `application/grpc*`, and upgraded connections (an `upgrade` header,
    /// `CONNECT`, a `101` response) are delivered as [`Stream`](BodyMode::Stream)
    /// instead. Chosen for one request with `set_body_mode`, it holds even those.
    Buffer,
    /// Not at all: the body passes untouched and the body hook is not called.
    Skip,
}

/// The body bytes a body hook is handed: the chunk that just arrived
/// ([`BodyMode::Stream`]) or the whole body ([`BodyMode::Buffer`]).
///
/// Outside a body hook it is empty. When a rewrite changes a body's length,
/// remove `content-length` in the headers hook (Envoy does not rewrite it).
///
/// ```
/// use weir::{Action, HttpFilter, Response};
///
/// #[derive(Default)]
/// struct Shout;
///
/// #[weir::filter]
/// impl HttpFilter for Shout {
///     type Config = ();
///
///     // Streamed (the default): each chunk is rewritten as it passes.
///     fn on_response_body(&mut self, cx: &mut Response<'_, ()>) -> weir::Result {
///         let chunk = cx.body().read();
///         cx.body().replace(&chunk.to_ascii_uppercase())?;
///         Ok(Action::Continue)
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Body {
    buffer: Buffer,
    size: usize,
    /// False for the last call of a streamed body that ended at the trailers:
    /// its bytes have gone, nothing more can be written.
    writable: bool,
}

impl Body {
    pub(crate) fn new(buffer: Buffer, size: usize) -> Self {
        Body {
            buffer,
            size,
            writable: true,
        }
    }

    /// The end of a streamed body at the trailers: empty, and nothing can be added.
    pub(crate) fn ended(buffer: Buffer) -> Self {
        Body {
            buffer,
            size: 0,
            writable: false,
        }
    }

    /// The length in bytes of what this hook sees (the chunk, or the whole body).
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Response<'_, ()>, seen: &mut usize) -> weir::Result {
    /// *seen += cx.body().len(); // bytes of this response so far
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn len(&self) -> usize {
        self.size
    }

    /// True when there are no bytes (an empty last chunk, or not a body hook).
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Response<'_, ()>) -> weir::Result {
    /// if cx.body().is_empty() && cx.end_of_stream() {
    ///     // the stream ended with an empty chunk
    /// }
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The bytes (one host call; any bytes, no UTF-8 assumed).
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// let bytes: Vec<u8> = cx.body().read();
    /// # let _ = bytes; Ok(weir::Action::Continue) }
    /// ```
    pub fn read(&self) -> Vec<u8> {
        if self.size == 0 {
            return Vec::new();
        }
        host::buffer_get(self.buffer, 0, self.size)
    }

    /// Replaces these bytes (the chunk, or the whole body) with `bytes`; an empty
    /// slice drops them. Fails on the last call of a streamed body that ended
    /// at the trailers, whose bytes have already gone on.
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// let masked = cx.body().read().iter().map(|b| if b.is_ascii_digit() { b'#' } else { *b }).collect::<Vec<u8>>();
    /// cx.body().replace(&masked)?;
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn replace(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::from(
                "the body ended at the trailers: its bytes have gone on, nothing more can be written",
            ));
        }
        if host::buffer_set(self.buffer, 0, self.size, bytes) {
            self.size = bytes.len();
            Ok(())
        } else {
            Err(Error::from("the proxy refused to replace the body"))
        }
    }

    /// Puts `bytes` before these bytes, which are not read or copied: one host call
    /// as long as `bytes`. A streamed rewrite emits what it held back from the last
    /// chunk this way, where `replace` would copy the whole chunk back. Fails like
    /// `replace` on the last call of a streamed body that ended at the trailers.
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Response<'_, ()>, held: &mut Vec<u8>) -> weir::Result {
    /// cx.body().prepend(held)?; // the held bytes go out first, the chunk after them
    /// held.clear();
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn prepend(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if !self.writable {
            return Err(Error::from(
                "the body ended at the trailers: its bytes have gone on, nothing more can be written",
            ));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if host::buffer_set(self.buffer, 0, 0, bytes) {
            self.size += bytes.len();
            Ok(())
        } else {
            Err(Error::from("the proxy refused to add to the body"))
        }
    }
}
