//! What a filter author implements ([`HttpFilter`]) and what each hook is handed.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::header::{AsHeaderName, AsHeaderValue, Headers, InvalidHeader};
use crate::host::{self, Map};

/// An HTTP filter: a configuration type and the hooks it needs.
///
/// One value of the implementing type is made (with [`Default`]) for each
/// request, so per-request state lives in its fields. Every hook has a default
/// body that lets the request through; override only the ones you need.
///
/// A hook returns [`Result`]: `Err` is logged with the filter's name and the
/// request continues (fail open), so `?` on a header write is always safe.
pub trait HttpFilter: Default + 'static {
    /// The configuration, parsed from the plugin's JSON once per configure and
    /// shared by every request. Use [`HeaderName`](crate::HeaderName) and
    /// [`HeaderValue`](crate::HeaderValue) fields to have them checked then.
    type Config: DeserializeOwned + 'static;

    /// The configuration to use when Envoy passes none. `None` (the default)
    /// refuses an empty configuration.
    fn default_config() -> Option<Self::Config> {
        None
    }

    /// Checks a parsed configuration beyond what its type says. An `Err`
    /// refuses it, exactly like a parse error.
    fn validate(_config: &Self::Config) -> Result<(), crate::ConfigError> {
        Ok(())
    }

    /// Called when the request headers arrive.
    fn on_request_headers(&mut self, _cx: &mut Request<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }

    /// Called when the response headers arrive.
    fn on_response_headers(&mut self, _cx: &mut Response<'_, Self::Config>) -> Result {
        Ok(Action::Continue)
    }
}

/// What the proxy does after a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Pass the request or response on to the next filter.
    Continue,
    /// Hold it here (after a local reply, or until a callout answers).
    Pause,
}

/// What a hook returns.
pub type Result<T = Action, E = Error> = std::result::Result<T, E>;

/// A failure inside a hook: logged with the filter's name, then the request
/// continues unchanged.
pub struct Error(Box<str>);

impl Error {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Error(message.to_string().into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<InvalidHeader> for Error {
    fn from(e: InvalidHeader) -> Self {
        Error::new(e)
    }
}

impl From<&str> for Error {
    fn from(e: &str) -> Self {
        Error(e.into())
    }
}

impl From<String> for Error {
    fn from(e: String) -> Self {
        Error(e.into())
    }
}

/// A reply the filter sends itself, instead of the upstream's.
///
/// ```
/// let deny = weir::LocalReply::new(403).body("denied\n").header("x-denied-by", "policy");
/// # let _ = deny;
/// ```
#[derive(Clone, Debug)]
pub struct LocalReply {
    status: u32,
    body: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    grpc_status: Option<u32>,
    details: String,
    invalid: Option<InvalidHeader>,
}

impl LocalReply {
    /// A reply with this HTTP status and an empty body.
    pub fn new(status: u16) -> Self {
        LocalReply {
            status: status.into(),
            body: Vec::new(),
            headers: Vec::new(),
            grpc_status: None,
            details: String::new(),
            invalid: None,
        }
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header; an illegal one makes sending the reply fail with [`InvalidHeader`].
    pub fn header(mut self, name: impl AsHeaderName, value: impl AsHeaderValue) -> Self {
        match (name.header_name(), value.header_value()) {
            (Ok(n), Ok(v)) => self.headers.push((n.to_vec(), v.to_vec())),
            (Err(e), _) | (_, Err(e)) => self.invalid = self.invalid.take().or(Some(e)),
        }
        self
    }

    /// Answers as gRPC with this status code (e.g. 7, PERMISSION_DENIED);
    /// the body becomes the `grpc-message`.
    pub fn grpc_status(mut self, code: u32) -> Self {
        self.grpc_status = Some(code);
        self
    }

    /// The response-code details Envoy records in its access log
    /// (`%RESPONSE_CODE_DETAILS%`); letters, digits and `_` only.
    pub fn details(mut self, details: &str) -> Self {
        self.details = details
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self
    }

    fn send(self) -> Result {
        if let Some(e) = self.invalid {
            return Err(e.into());
        }
        let headers: Vec<(&[u8], &[u8])> =
            self.headers.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        if host::send_local_reply(self.status, &self.details, &self.body, &headers, self.grpc_status) {
            Ok(Action::Pause)
        } else {
            Err(Error::new(format_args!("the proxy refused a local reply with status {}", self.status)))
        }
    }
}

/// What `on_request_headers` is handed: the configuration and the request headers.
pub struct Request<'a, C> {
    pub(crate) config: &'a C,
    pub(crate) headers: Headers,
    pub(crate) end_of_stream: bool,
}

impl<'a, C> Request<'a, C> {
    pub(crate) fn new(config: &'a C, end_of_stream: bool) -> Self {
        Request { config, headers: Headers::new(Map::RequestHeaders), end_of_stream }
    }

    /// The filter's configuration (borrowed for the whole hook, so it can be
    /// held while headers are written).
    pub fn config(&self) -> &'a C {
        self.config
    }

    /// The request headers, including `:method`, `:path`, `:authority` and `:scheme`.
    pub fn headers(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// True when the request has no body.
    pub fn end_of_stream(&self) -> bool {
        self.end_of_stream
    }

    /// Sends `reply` to the client instead of forwarding the request.
    pub fn reply(&mut self, reply: LocalReply) -> Result {
        reply.send()
    }
}

/// What `on_response_headers` is handed: the configuration and the response headers.
pub struct Response<'a, C> {
    pub(crate) config: &'a C,
    pub(crate) headers: Headers,
    pub(crate) end_of_stream: bool,
}

impl<'a, C> Response<'a, C> {
    pub(crate) fn new(config: &'a C, end_of_stream: bool) -> Self {
        Response { config, headers: Headers::new(Map::ResponseHeaders), end_of_stream }
    }

    /// The filter's configuration (borrowed for the whole hook, so it can be
    /// held while headers are written).
    pub fn config(&self) -> &'a C {
        self.config
    }

    /// The response headers, including `:status`.
    pub fn headers(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// True when the response has no body.
    pub fn end_of_stream(&self) -> bool {
        self.end_of_stream
    }

    /// Replaces the upstream's response with `reply`.
    pub fn reply(&mut self, reply: LocalReply) -> Result {
        reply.send()
    }
}
