//! ext-authz: asks an authorization service about each request before it goes
//! upstream, like Envoy's `ext_authz` HTTP mode, as a Wasm filter.
//!
//! The request is paused while an HTTP callout (same method, `path_prefix` +
//! the request's path, the configured headers) goes to `cluster`. A 2xx answer
//! lets the request through, copying `upstream_headers` from the answer onto
//! it; a 5xx, no answer within `timeout_ms` or a refused call is a failure,
//! answered with `failure_status` (503) or let through when `fail_open` is set;
//! any other answer is denied with `deny_status` (403) and the service's body.
//!
//! What the service sees is what the upstream will act on: the canonical path
//! (`weir::path`; `//admin` and `/%61dmin` are `/admin`) with the query as sent,
//! and every copy of a forwarded header, in order. A request whose path has no
//! canonical form, or whose forwarded header is not text (callouts carry text),
//! is answered with 400 without asking; with `repeated_headers: "deny"` so is
//! one that sends a forwarded header more than once.

use std::time::Duration;

use weir::{
    Action, Callback, Callout, CalloutResponse, ConfigError, HeaderName, Headers, HttpFilter,
    LocalReply, Request,
};

weir::metrics! {
    /// Requests the service allowed.
    static ALLOWED: Counter = "ext_authz_allowed";
    /// Requests refused: by the service, or as unshowable to it (400).
    static DENIED: Counter = "ext_authz_denied";
    /// Requests the service could not decide (5xx, timeout, no connection).
    static FAILED: Counter = "ext_authz_failed";
}

/// Where and how to ask.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Envoy cluster of the authorization service.
    pub cluster: String,
    /// Prepended to the request's path for the check (default none).
    #[serde(default)]
    pub path_prefix: String,
    /// How long to wait for the answer (default 200 ms).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Request headers sent to the service (default `authorization`), every
    /// copy of each. A value that is not UTF-8 cannot be sent (proxy-wasm
    /// callouts carry text): such a request is answered with 400.
    #[serde(default = "default_forward")]
    pub forward_headers: Vec<HeaderName>,
    /// A forwarded header sent more than once: `"forward"` every copy (default)
    /// or `"deny"` the request with 400.
    #[serde(default)]
    pub repeated_headers: Repeated,
    /// Headers of an allowing answer copied onto the upstream request.
    #[serde(default)]
    pub upstream_headers: Vec<HeaderName>,
    /// The status when the service says no (default 403).
    #[serde(default = "default_deny")]
    pub deny_status: u16,
    /// The status when the service fails or times out (default 503).
    #[serde(default = "default_failure")]
    pub failure_status: u16,
    /// Let requests through when the service fails or times out.
    #[serde(default)]
    pub fail_open: bool,
}

/// What to do with a forwarded header sent more than once.
#[derive(serde::Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Repeated {
    /// Send every copy to the service, in order.
    #[default]
    Forward,
    /// Answer 400.
    Deny,
}

fn default_timeout() -> u64 {
    200
}
fn default_forward() -> Vec<HeaderName> {
    HeaderName::new("authorization").into_iter().collect()
}
fn default_deny() -> u16 {
    403
}
fn default_failure() -> u16 {
    503
}

/// The check for one request.
#[derive(Default)]
pub struct ExtAuthz;

#[weir::filter]
impl HttpFilter for ExtAuthz {
    type Config = Config;
    const BODY_LIMIT: usize = 8 * 1024;

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if config.cluster.is_empty() {
            return Err(ConfigError::at(
                "cluster",
                "name the authorization service's Envoy cluster",
            ));
        }
        if !(1..=60_000).contains(&config.timeout_ms) {
            return Err(ConfigError::at("timeout_ms", "must be from 1 to 60000"));
        }
        for (field, status) in [
            ("deny_status", config.deny_status),
            ("failure_status", config.failure_status),
        ] {
            if !(200..=599).contains(&status) {
                return Err(ConfigError::at(
                    field,
                    "must be an HTTP status from 200 to 599",
                ));
            }
        }
        Ok(())
    }

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        let config = cx.config();
        // Every header the check needs, in one host call, read in place.
        let headers = cx.headers().snapshot();
        let method = headers
            .get(":method")
            .and_then(|m| std::str::from_utf8(m).ok())
            .unwrap_or("GET");
        let raw = headers.get(":path").unwrap_or(b"/");
        let path = match weir::path::canonicalize(raw) {
            Ok(path) => path,
            Err(e) => return refuse(cx, "invalid path\n", e.details()),
        };
        let query = raw
            .iter()
            .position(|&b| b == b'?')
            .map_or(&b""[..], |i| &raw[i..]);
        let mut check = Callout::new(
            method,
            &config.cluster,
            &format!(
                "{}{}{}",
                config.path_prefix,
                escape_path(&path),
                escape_path(query)
            ),
        )
        .timeout(Duration::from_millis(config.timeout_ms));
        if let Some(host) = headers.get(":authority") {
            match std::str::from_utf8(host) {
                Ok(host) => check = check.header("x-forwarded-host", host),
                Err(_) => return refuse(cx, "invalid host\n", "ext_authz_host_not_text"),
            }
        }
        for name in &config.forward_headers {
            if config.repeated_headers == Repeated::Deny && headers.get_all(name).nth(1).is_some() {
                return refuse(cx, "repeated header\n", "ext_authz_header_repeated");
            }
            for value in headers.get_all(name) {
                if std::str::from_utf8(value).is_err() {
                    return refuse(
                        cx,
                        "header value is not text\n",
                        "ext_authz_header_not_text",
                    );
                }
                check = check.header(name, value);
            }
        }
        match cx.callout(check) {
            Ok(action) => Ok(action),
            Err(e) => {
                weir::log::log(weir::log::Level::Warn, &format!("ext-authz: {e}"));
                match fail(config, cx.headers()) {
                    Some(reply) => cx.reply(reply),
                    None => Ok(Action::Continue),
                }
            }
        }
    }

    fn on_callout_response(
        &mut self,
        cx: &mut Callback<'_, Config>,
        response: CalloutResponse,
    ) -> weir::Result {
        let config = cx.config();
        match response.status() {
            Some(200..=299) => {
                ALLOWED.inc();
                for name in &config.upstream_headers {
                    let written = match response.header(name) {
                        Some(value) => cx.request_headers().set(name, value.as_bytes()),
                        None => cx.request_headers().remove(name),
                    };
                    // Unwritten, the upstream could see what the client sent
                    // in its place: refuse rather than pass it on.
                    if let Err(e) = written {
                        weir::warn!("{e}: refusing the request");
                        return cx.reply(unavailable(config));
                    }
                }
                Ok(Action::Continue)
            }
            // Like Envoy's ext_authz: a 5xx is the service failing, not deciding.
            // Envoy itself answers a callout that timed out or could not
            // connect with 504/503, so this also covers those.
            Some(500..=599) | None => match fail(config, cx.request_headers()) {
                Some(reply) => cx.reply(reply),
                None => Ok(Action::Continue),
            },
            Some(_) => {
                DENIED.inc();
                cx.reply(
                    LocalReply::new(config.deny_status)
                        .body(response.body())
                        .details("ext_authz_denied"),
                )
            }
        }
    }
}

/// Answers 400 without asking the service: the request cannot be shown to it as the upstream will see it.
fn refuse(cx: &mut Request<'_, Config>, body: &str, details: &str) -> weir::Result {
    DENIED.inc();
    cx.reply(LocalReply::new(400).body(body).details(details))
}

/// The path as callout text: UTF-8 as it is, other bytes percent-encoded, so
/// the service sees every byte the upstream will.
fn escape_path(path: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(path) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(path.len() * 3);
    for &b in path {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// The service could not answer: the reply denying with `failure_status`, or
/// `None` to let the request through (`fail_open`) without any client-sent
/// `upstream_headers`, which only the service may set.
fn fail(config: &Config, request: &mut Headers) -> Option<LocalReply> {
    FAILED.inc();
    // Open only once every client-sent upstream header is gone.
    if config.fail_open
        && config
            .upstream_headers
            .iter()
            .all(|name| request.remove(name).is_ok())
    {
        return None;
    }
    Some(unavailable(config))
}

/// The reply when the service cannot decide: `failure_status`.
fn unavailable(config: &Config) -> LocalReply {
    LocalReply::new(config.failure_status)
        .body("authorization service unavailable\n")
        .details("ext_authz_error")
}

weir::export!(ExtAuthz);
