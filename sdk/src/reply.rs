//! Local replies: the filter answers the client itself (e.g. 403, 429, or a gRPC status).

use crate::header::{AsHeaderName, AsHeaderValue, InvalidHeader};
use crate::host;
use crate::outcome::{Action, Error, Result};

/// A reply the filter sends itself, instead of the upstream's.
///
/// ```
/// let deny = weir::LocalReply::new(403).body("denied\n").header("x-denied-by", "policy");
/// let grpc = weir::LocalReply::new(200).grpc_status(7).body("not allowed");
/// # let _ = (deny, grpc);
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

    /// Answers as gRPC with this status code (e.g. 7, PERMISSION_DENIED):
    /// Envoy sends HTTP 200 with `grpc-status`, and the body becomes the `grpc-message`.
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

    pub(crate) fn send(self) -> Result {
        if let Some(e) = self.invalid {
            return Err(e.into());
        }
        let headers: Vec<(&[u8], &[u8])> =
            self.headers.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        if host::send_local_reply(
            self.status,
            &self.details,
            &self.body,
            &headers,
            self.grpc_status,
        ) {
            Ok(Action::Pause)
        } else {
            Err(Error::new(format_args!(
                "the proxy refused a local reply with status {}",
                self.status
            )))
        }
    }
}
