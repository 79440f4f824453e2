//! HTTP callouts: a request to another cluster while the request waits, answered in
//! [`on_callout_response`](crate::HttpFilter::on_callout_response).

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
    pub(crate) fn dispatch(self) -> Result<u32, Error> {
        if let Some(e) = self.invalid {
            return Err(Error::from(e));
        }
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        host::http_call(&self.upstream, &headers, &self.body, self.timeout).ok_or_else(|| {
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
}

impl CalloutResponse {
    /// Reads the answer the host holds for the current callback.
    pub(crate) fn read(body_size: usize, body_limit: usize) -> Self {
        CalloutResponse {
            headers: host::map_pairs(Map::HttpCallResponseHeaders),
            body: host::buffer_get(Buffer::HttpCallResponseBody, 0, body_size.min(body_limit)),
        }
    }

    /// The upstream's status, or `None` when the call failed without an answer (a
    /// reset). A timeout is not that: Envoy answers it with 504.
    pub fn status(&self) -> Option<u16> {
        self.header(":status")?.to_str()?.parse().ok()
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

    /// The body (up to [`HttpFilter::BODY_LIMIT`](crate::HttpFilter::BODY_LIMIT) bytes).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}
