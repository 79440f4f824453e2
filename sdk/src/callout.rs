//! Callouts: an HTTP request or a unary gRPC call to another cluster while the
//! request waits (one or several at once, [`Wait`]), answered in
//! [`on_callout_response`](crate::HttpFilter::on_callout_response); from
//! [`on_tick`](crate::HttpFilter::on_tick), answered in
//! [`on_tick_callout_response`](crate::HttpFilter::on_tick_callout_response).

use std::time::Duration;

use crate::header::{AsHeaderName, AsHeaderValue, HeaderSnapshot, Value};
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
#[derive(Clone)]
pub struct Callout {
    /// The cluster's name, then (gRPC) the service and method, then the headers
    /// as the ABI serializes them (a count, each pair's sizes, then each name and
    /// value with a NUL): one allocation for the whole call, handed to the proxy
    /// as it is.
    buf: Vec<u8>,
    /// Where the headers start in `buf`.
    head: usize,
    /// The cluster name's length.
    upstream: usize,
    /// A gRPC call: the service's and the method's lengths (the body is the request message).
    grpc: Option<(usize, usize)>,
    body: Vec<u8>,
    timeout: Duration,
    invalid: Option<String>,
}

impl std::fmt::Debug for Callout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let headers: Vec<(String, String)> =
            self.pairs().map(|(k, v)| (text(k), text(v))).collect();
        f.debug_struct("Callout")
            .field("upstream", &text(self.upstream()))
            .field("grpc", &self.grpc_names().map(|(s, m)| (text(s), text(m))))
            .field("headers", &headers)
            .field("body", &self.body)
            .field("timeout", &self.timeout)
            .field("invalid", &self.invalid)
            .finish()
    }
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
        // Room for these and a few more headers without growing.
        let room = upstream.len() * 2 + method.len() + path.len() + 256;
        let mut c = Callout::empty(upstream, None, room);
        c.push_pair(b":method", method.as_bytes());
        c.push_pair(b":path", path.as_bytes());
        c.push_pair(b":authority", upstream.as_bytes());
        c
    }

    /// A call to `upstream` (with gRPC's service and method) with no header yet.
    fn empty(upstream: &str, grpc: Option<(&str, &str)>, room: usize) -> Self {
        let mut buf = Vec::with_capacity(room);
        buf.extend_from_slice(upstream.as_bytes());
        if let Some((service, method)) = grpc {
            buf.extend_from_slice(service.as_bytes());
            buf.extend_from_slice(method.as_bytes());
        }
        let head = buf.len();
        buf.extend_from_slice(&0u32.to_le_bytes());
        Callout {
            buf,
            head,
            upstream: upstream.len(),
            grpc: grpc.map(|(s, m)| (s.len(), m.len())),
            body: Vec::new(),
            timeout: Duration::from_secs(1),
            invalid: None,
        }
    }

    /// The number of headers so far.
    fn count(&self) -> usize {
        let b = &self.buf[self.head..self.head + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    /// Appends one header pair in the ABI's layout: its sizes after the others',
    /// its bytes at the end.
    fn push_pair(&mut self, name: &[u8], value: &[u8]) {
        let count = self.count();
        let at = self.head + 4 + count * 8;
        let mut sizes = [0u8; 8];
        sizes[..4].copy_from_slice(&(name.len() as u32).to_le_bytes());
        sizes[4..].copy_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.reserve(8 + name.len() + value.len() + 2);
        let end = self.buf.len();
        self.buf.extend_from_slice(&sizes);
        self.buf.copy_within(at..end, at + 8);
        self.buf[at..at + 8].copy_from_slice(&sizes);
        self.buf.extend_from_slice(name);
        self.buf.push(0);
        self.buf.extend_from_slice(value);
        self.buf.push(0);
        let count = (count as u32 + 1).to_le_bytes();
        self.buf[self.head..self.head + 4].copy_from_slice(&count);
    }

    /// The headers, as the ABI serializes them.
    fn serialized(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Each header pair.
    fn pairs(&self) -> crate::header::SnapshotIter<'_> {
        crate::header::pairs_in(self.serialized())
    }

    /// The cluster's name.
    fn upstream(&self) -> &[u8] {
        &self.buf[..self.upstream]
    }

    /// A gRPC call's service and method.
    fn grpc_names(&self) -> Option<(&[u8], &[u8])> {
        let (service, method) = self.grpc?;
        let at = self.upstream;
        Some((
            &self.buf[at..at + service],
            &self.buf[at + service..at + service + method],
        ))
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
        let room = upstream.len() + service.len() + method.len() + 64;
        let mut c = Callout::empty(upstream, Some((service, method)), room);
        c.body = message.into();
        c
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
            (Ok(n), Ok(v)) => match (crate::utf8::str(n), crate::utf8::str(v)) {
                (Ok(_), Ok(_)) => Ok((n, v)),
                _ => Err("callout header values must be UTF-8".to_owned()),
            },
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        };
        match checked {
            Ok((n, v)) => self.push_pair(n, v),
            Err(e) => self.invalid = self.invalid.take().or(Some(e)),
        }
        self
    }

    /// Sets `:authority` (the `Host` the cluster sees).
    pub fn authority(mut self, authority: &str) -> Self {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = self
            .pairs()
            .map(|(k, v)| {
                let v = if k == b":authority" {
                    authority.as_bytes()
                } else {
                    v
                };
                (k.to_vec(), v.to_vec())
            })
            .collect();
        self.buf.truncate(self.head);
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        for (k, v) in &pairs {
            self.push_pair(k, v);
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
        let token = match self.grpc_names() {
            Some((service, method)) => host::grpc_call_serialized(
                self.upstream(),
                service,
                method,
                self.serialized(),
                &self.body,
                self.timeout,
            ),
            None => host::http_call_serialized(
                self.upstream(),
                self.serialized(),
                &self.body,
                self.timeout,
            ),
        };
        let grpc = self.grpc.is_some();
        token.map(|token| Sent { token, grpc }).ok_or_else(|| {
            Error::new(format_args!(
                "the proxy refused a callout to cluster `{}` (is it configured?)",
                String::from_utf8_lossy(self.upstream())
            ))
        })
    }
}

/// The answer to a [`Callout`].
#[derive(Clone, Debug, Default)]
pub struct CalloutResponse {
    /// The headers as the proxy serialized them, read in place.
    headers: HeaderSnapshot,
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
            headers: HeaderSnapshot::from_bytes(host::map_pairs_bytes(
                Map::HttpCallResponseHeaders,
            )),
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
        self.headers.get(name)
    }

    /// The first value of header `name` as text; `None` when absent or not UTF-8
    /// (then [`header_bytes`](Self::header_bytes) has it).
    pub fn header_str(&self, name: impl AsHeaderName) -> Option<&str> {
        crate::utf8::str(self.header_bytes(name)?).ok()
    }

    /// Every value of header `name`, in order, as bytes.
    pub fn header_all(&self, name: impl AsHeaderName) -> Vec<&[u8]> {
        let name = name.name_bytes();
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The first value of header `name` (a [`HeaderName`](crate::HeaderName) or
    /// text, as in [`Headers::get`](crate::Headers::get)), compared case-insensitively.
    pub fn header(&self, name: impl AsHeaderName) -> Option<Value> {
        self.headers.get(name).map(|v| Value(v.to_vec()))
    }

    /// Every header, in order, as bytes.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter()
    }

    /// The body (up to [`HttpFilter::BODY_LIMIT`](crate::HttpFilter::BODY_LIMIT) bytes);
    /// for a gRPC call, the reply message (without gRPC's 5-byte frame header).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(c: &Callout) -> Vec<(String, String)> {
        c.pairs()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn headers_are_kept_in_the_abi_layout_in_order() {
        let c = Callout::new("POST", "authz", "/check")
            .header("x-a", "1")
            .header("x-b", b"two".as_slice())
            .authority("authz.example");
        let want = [
            (":method", "POST"),
            (":path", "/check"),
            (":authority", "authz.example"),
            ("x-a", "1"),
            ("x-b", "two"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(pairs(&c), want);
        assert_eq!(c.upstream(), b"authz");
        assert_eq!(c.grpc_names(), None);
        // The proxy is handed the ABI's bytes as they are.
        let abi: Vec<(&[u8], &[u8])> = want
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(c.serialized(), crate::host::serialize_pairs(&abi));
    }

    #[test]
    fn grpc_calls_keep_service_method_and_metadata_apart() {
        let c = Callout::grpc("authz", "pkg.Service", "Check", b"msg".to_vec()).header("x-m", "v");
        assert_eq!(c.upstream(), b"authz");
        assert_eq!(c.grpc_names(), Some((&b"pkg.Service"[..], &b"Check"[..])));
        assert_eq!(pairs(&c), [("x-m".to_owned(), "v".to_owned())]);
        assert_eq!(c.body, b"msg");
    }

    #[test]
    fn a_header_that_is_not_text_makes_the_call_invalid() {
        let c = Callout::get("a", "/").header("x", b"\xff".as_slice());
        assert!(c.invalid.is_some());
        assert_eq!(pairs(&c).len(), 3);
    }
}
