//! ext-authz: asks an authorization service about each request before it goes
//! upstream, like Envoy's `ext_authz` HTTP mode, as a Wasm filter.
//!
//! The request is paused while an HTTP callout (same method, `path_prefix` +
//! the request's path, the configured headers) goes to `cluster`. A 2xx answer
//! lets the request through, copying `upstream_headers` from the answer onto
//! it; a 5xx, no answer within `timeout_ms` or a refused call is a failure,
//! answered with `failure_status` (503) or let through when `fail_open` is set;
//! any other answer is denied with `deny_status` (403) and the service's body.

use std::time::Duration;

use weir::metrics::Counter;
use weir::{
    Action, Callback, Callout, CalloutResponse, ConfigError, HeaderName, Headers, HttpFilter,
    LocalReply, Request,
};

static ALLOWED: Counter = Counter::new("ext_authz_allowed");
static DENIED: Counter = Counter::new("ext_authz_denied");
static FAILED: Counter = Counter::new("ext_authz_failed");

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
    /// Request headers sent to the service (default `authorization`). Values
    /// that are not UTF-8 are not sent (proxy-wasm callouts carry text).
    #[serde(default = "default_forward")]
    pub forward_headers: Vec<HeaderName>,
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
    const METRICS: &'static [&'static weir::metrics::Metric] =
        &[ALLOWED.metric(), DENIED.metric(), FAILED.metric()];
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
        let headers = cx.headers();
        let method = headers.get(":method");
        let method = method.as_ref().and_then(|m| m.to_str()).unwrap_or("GET");
        let path = headers
            .get(":path")
            .map_or_else(|| "/".into(), |p| escape_path(p.as_bytes()));
        let mut check = Callout::new(
            method,
            &config.cluster,
            &format!("{}{path}", config.path_prefix),
        )
        .timeout(Duration::from_millis(config.timeout_ms));
        if let Some(host) = headers.get(":authority") {
            if let Some(host) = host.to_str() {
                check = check.header("x-forwarded-host", host);
            }
        }
        for name in &config.forward_headers {
            if let Some(value) = headers.get(name.as_str()) {
                if value.to_str().is_some() {
                    check = check.header(name, value.as_bytes());
                }
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
                    match response.header(name.as_str()) {
                        Some(value) => cx.request_headers().set(name, value.as_bytes())?,
                        None => cx.request_headers().remove(name.as_str()),
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
    if config.fail_open {
        for name in &config.upstream_headers {
            request.remove(name.as_str());
        }
        return None;
    }
    Some(
        LocalReply::new(config.failure_status)
            .body("authorization service unavailable\n")
            .details("ext_authz_error"),
    )
}

weir::export!(ExtAuthz);
