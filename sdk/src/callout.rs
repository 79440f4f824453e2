//! Callouts: an HTTP request or a unary gRPC call to another cluster while the
//! request waits (one or several at once, [`Wait`]), answered in
//! [`on_callout_response`](crate::HttpFilter::on_callout_response); from
//! [`on_tick`](crate::HttpFilter::on_tick), answered in
//! [`on_tick_callout_response`](crate::HttpFilter::on_tick_callout_response).

use std::time::Duration;

use crate::header::{AsHeaderName, AsHeaderValue, Value};
use crate::host::{self, Buffer, Map};
use crate::outcome::Error;

/// An HTTP request to an Envoy cluster. Send it with `cx.callout(..)`, which
/// pauses the request until [`on_callout_response`](crate::HttpFilter::on_callout_response)
/// runs with the answer. After the timeout, Envoy answers it itself: status 504, body
/// `upstream request timeout`.
///
/// ```
/// use std::time::Duration;
/// let check = weir::Callout::get("auth", "/check")
///     .header("authorization", "Bearer abc")
///     .timeout(Duration::from_millis(200));
/// # let _ = check;
/// ```
#[derive(Clone, Debug)]
pub struct Callout {
    upstream: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Duration,
    invalid: Option<String>,
    /// A gRPC call: the service and method (the body is the request message).
    grpc: Option<(String, String)>,
}

/// How a request paused on several callouts resumes (see
/// [`Request::callouts`](crate::Request::callouts)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Once every answer has been handed to the hook (the default, and what a single
    /// callout does): a hook returning `Continue` before the last answer just means
    /// "nothing to object to so far".
    #[default]
    All,
    /// At the first answer whose hook returns `Continue` (a hook returning `Pause`
    /// waits for the next answer); answers arriving after that are dropped unseen.
    First,
}

/// A callout the proxy accepted, waiting for its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) token: u32,
    pub(crate) grpc: bool,
}

impl Callout {
    /// A request with `method` to `path` on the cluster `upstream`; its
    /// `:authority` is the cluster's name until [`authority`](Self::authority) sets it.
    pub fn new(method: &str, upstream: &str, path: &str) -> Self {
        Callout {
            upstream: upstream.to_owned(),
            headers: vec![
                (":method".into(), method.into()),
                (":path".into(), path.into()),
                (":authority".into(), upstream.into()),
            ],
            body: Vec::new(),
            timeout: Duration::from_secs(1),
            invalid: None,
            grpc: None,
        }
    }

    /// A unary gRPC call of `service`'s `method` (e.g.
    /// `"envoy.service.auth.v3.Authorization"`, `"Check"`) on the cluster
    /// `upstream` (which must speak HTTP/2), with `message` the serialized request
    /// ([`crate::proto::Writer`] writes one). Its answer has
    /// [`grpc_status`](CalloutResponse::grpc_status) (0 when it succeeded, with the
    /// reply message as the [`body`](CalloutResponse::body)); a failure has the
    /// service's status and [`grpc_message`](CalloutResponse::grpc_message) (Envoy
    /// appends its response-code details, e.g. `{via_upstream}`). Envoy 1.36–1.40
    /// report a timeout, and a server that cannot be reached, as 14 (`UNAVAILABLE`),
    /// e.g. `upstream request timeout{response_timeout}`. [`header`](Self::header)
    /// adds initial metadata.
    ///
    /// ```
    /// use std::time::Duration;
    /// // grpc.health.v1.Health/Check { service: "" }
    /// let check = weir::Callout::grpc("health", "grpc.health.v1.Health", "Check", Vec::new())
    ///     .timeout(Duration::from_millis(250));
    /// # let _ = check;
    /// ```
    pub fn grpc(upstream: &str, service: &str, method: &str, message: impl Into<Vec<u8>>) -> Self {
        Callout {
            upstream: upstream.to_owned(),
            headers: Vec::new(),
            body: message.into(),
            timeout: Duration::from_secs(1),
            invalid: None,
            grpc: Some((service.to_owned(), method.to_owned())),
        }
    }

    /// A request with `method` to `path` on an Istio service: the cluster Istio
    /// names `outbound|PORT||FQDN` ([`istio_cluster`](Self::istio_cluster)),
    /// with `:authority` the service's `fqdn`.
    ///
    /// ```
    /// let check = weir::Callout::istio("GET", 8080, "authz.security.svc.cluster.local", "/check");
    /// # let _ = check;
    /// ```
    pub fn istio(method: &str, port: u16, fqdn: &str, path: &str) -> Self {
        Self::new(method, &Self::istio_cluster(port, fqdn), path).authority(fqdn)
    }

    /// Istio's name for the outbound cluster of service `fqdn` on `port`:
    /// `outbound|PORT||FQDN` (the subset between the two `|` left empty).
    ///
    /// ```
    /// assert_eq!(
    ///     weir::Callout::istio_cluster(8080, "authz.security.svc.cluster.local"),
    ///     "outbound|8080||authz.security.svc.cluster.local"
    /// );
    /// ```
    pub fn istio_cluster(port: u16, fqdn: &str) -> String {
        format!("outbound|{port}||{fqdn}")
    }

    /// A `GET` of `path` on the cluster `upstream`.
    pub fn get(upstream: &str, path: &str) -> Self {
        Self::new("GET", upstream, path)
    }

    /// A `POST` of `body` to `path` on the cluster `upstream`.
    pub fn post(upstream: &str, path: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut c = Self::new("POST", upstream, path);
        c.body = body.into();
        c
    }

    /// Adds a header. proxy-wasm sends callout headers as text, so a value that
    /// is not UTF-8 (or is illegal) makes sending fail with an error.
    pub fn header(mut self, name: impl AsHeaderName, value: impl AsHeaderValue) -> Self {
        let checked = match (name.header_name(), value.header_value()) {
            (Ok(n), Ok(v)) => match (std::str::from_utf8(n), std::str::from_utf8(v)) {
                (Ok(n), Ok(v)) => Ok((n.to_owned(), v.to_owned())),
                _ => Err("callout header values must be UTF-8".to_owned()),
            },
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        };
        match checked {
            Ok(pair) => self.headers.push(pair),
            Err(e) => self.invalid = self.invalid.take().or(Some(e)),
        }
        self
    }

    /// Sets `:authority` (the `Host` the cluster sees).
    pub fn authority(mut self, authority: &str) -> Self {
        if let Some(h) = self.headers.iter_mut().find(|(k, _)| k == ":authority") {
            h.1 = authority.to_owned();
        }
        self
    }

    /// How long to wait for the answer (default 1 s); after it the hook runs with
    /// Envoy's own answer, status 504 and body `upstream request timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends it; the call's token.
    pub(crate) fn dispatch(self) -> Result<Sent, Error> {
        if let Some(e) = self.invalid {
            return Err(Error::from(e));
        }
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let token = match &self.grpc {
            Some((service, method)) => host::grpc_call(
                &self.upstream,
                service,
                method,
                &headers,
                &self.body,
                self.timeout,
            ),
            None => host::http_call(&self.upstream, &headers, &self.body, self.timeout),
        };
        let grpc = self.grpc.is_some();
        token.map(|token| Sent { token, grpc }).ok_or_else(|| {
            Error::new(format_args!(
                "the proxy refused a callout to cluster `{}` (is it configured?)",
                self.upstream
            ))
        })
    }
}

/// The answer to a [`Callout`].
#[derive(Clone, Debug, Default)]
pub struct CalloutResponse {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    /// The callout's position among those its request (or the plugin) sent.
    pub(crate) index: usize,
    /// A gRPC call's status and message.
    grpc: Option<(u32, Vec<u8>)>,
}

impl CalloutResponse {
    /// Reads the answer the host holds for the current HTTP callback.
    pub(crate) fn read(body_size: usize, body_limit: usize) -> Self {
        CalloutResponse {
            headers: host::map_pairs(Map::HttpCallResponseHeaders),
            body: host::buffer_get(Buffer::HttpCallResponseBody, 0, body_size.min(body_limit)),
            ..Default::default()
        }
    }

    /// Reads a gRPC call's reply message (`proxy_on_grpc_receive`): status 0.
    pub(crate) fn grpc_message_received(size: usize, body_limit: usize) -> Self {
        CalloutResponse {
            body: host::buffer_get(Buffer::GrpcReceive, 0, size.min(body_limit)),
            grpc: Some((0, Vec::new())),
            ..Default::default()
        }
    }

    /// A gRPC call that ended with `status` and no message (`proxy_on_grpc_close`);
    /// the status message is read from the host.
    pub(crate) fn grpc_closed(status: u32) -> Self {
        let message = host::status_message().unwrap_or_default();
        CalloutResponse {
            grpc: Some((status, message)),
            ..Default::default()
        }
    }

    /// Which callout this answers: its position, from 0, among the callouts its
    /// request sent (or, in [`on_tick_callout_response`](crate::HttpFilter::on_tick_callout_response),
    /// among those the plugin sent from its ticks), in the order they were sent.
    /// [`Request::callouts`](crate::Request::callouts) sends a batch in the order given.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The upstream's HTTP status, or `None` when the call failed without an
    /// answer (a reset). A timeout is not that: Envoy answers it with 504. For a
    /// gRPC call, see [`grpc_status`](Self::grpc_status).
    pub fn status(&self) -> Option<u16> {
        self.header_str(":status")?.parse().ok()
    }

    /// For a gRPC call ([`Callout::grpc`]): its status, 0 (`OK`) when the reply
    /// message arrived (it is the [`body`](Self::body)); `None` for an HTTP callout.
    pub fn grpc_status(&self) -> Option<u32> {
        self.grpc.as_ref().map(|(s, _)| *s)
    }

    /// For a gRPC call that failed: the status message as bytes (may be empty,
    /// and is not checked to be UTF-8; `String::from_utf8_lossy` shows it).
    pub fn grpc_message(&self) -> Option<&[u8]> {
        self.grpc.as_ref().map(|(_, m)| &m[..])
    }

    /// The first value of header `name` as bytes, as the upstream sent them
    /// (no UTF-8 check, no copy).
    ///
    /// ```
    /// # fn f(response: &weir::CalloutResponse) {
    /// let raw: Option<&[u8]> = response.header_bytes("x-token");
    /// # let _ = raw; }
    /// ```
    pub fn header_bytes(&self, name: impl AsHeaderName) -> Option<&[u8]> {
        let name = name.name_bytes();
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }

    /// The first value of header `name` as text; `None` when absent or not UTF-8
    /// (then [`header_bytes`](Self::header_bytes) has it).
    pub fn header_str(&self, name: impl AsHeaderName) -> Option<&str> {
        std::str::from_utf8(self.header_bytes(name)?).ok()
    }

    /// Every value of header `name`, in order, as bytes.
    pub fn header_all(&self, name: impl AsHeaderName) -> Vec<&[u8]> {
        let name = name.name_bytes();
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
            .collect()
    }

    /// The first value of header `name` (a [`HeaderName`](crate::HeaderName) or
    /// text, as in [`Headers::get`](crate::Headers::get)), compared case-insensitively.
    pub fn header(&self, name: impl AsHeaderName) -> Option<Value> {
        let name = name.name_bytes();
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| Value(v.clone()))
    }

    /// Every header, in order, as bytes.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|(k, v)| (&k[..], &v[..]))
    }

    /// The body (up to [`HttpFilter::BODY_LIMIT`](crate::HttpFilter::BODY_LIMIT) bytes);
    /// for a gRPC call, the reply message (without gRPC's 5-byte frame header).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}
