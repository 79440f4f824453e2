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
//!
//! With `"grpc": true` it speaks Envoy's ext_authz gRPC protocol instead: a unary
//! `envoy.service.auth.v3.Authorization/Check` call to `cluster` (an HTTP/2 cluster)
//! carrying a `CheckRequest` with the method, the same path and query, the host and
//! the forwarded headers (repeated copies joined with `,`, as Envoy does). A
//! `CheckResponse` with status code 0 allows, copying `upstream_headers` from its
//! `ok_response` headers; any other code denies with its `denied_response` status
//! (else `deny_status`) and body; a gRPC failure or timeout fails as above. OPA's
//! Envoy plugin and most authorization services speak this protocol.

use std::time::Duration;

use weir::proto::{fields, Field, Writer};
use weir::{
    Action, Callback, Callout, CalloutResponse, ConfigError, HeaderName, HeaderSnapshot, Headers,
    HttpFilter, LocalReply, Request,
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
    /// Ask over gRPC (`envoy.service.auth.v3.Authorization/Check`) instead of HTTP.
    #[serde(default)]
    pub grpc: bool,
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
        if config.grpc && !config.path_prefix.is_empty() {
            return Err(ConfigError::at(
                "path_prefix",
                "a gRPC check sends the request's own path: remove `path_prefix` or `grpc`",
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
        // The check's path as text, in one string: `path_prefix` (HTTP only:
        // `validate` refuses it with gRPC), the canonical path, the query.
        let mut target = String::with_capacity(config.path_prefix.len() + path.len() + query.len());
        target.push_str(&config.path_prefix);
        push_escaped(&mut target, &path);
        push_escaped(&mut target, query);
        let host = match headers.get(":authority") {
            Some(host) => match std::str::from_utf8(host) {
                Ok(host) => Some(host),
                Err(_) => return refuse(cx, "invalid host\n", "ext_authz_host_not_text"),
            },
            None => None,
        };
        // Every forwarded copy is checked before anything is sent; then read
        // again in place where the check is written (nothing copied).
        for name in &config.forward_headers {
            if config.repeated_headers == Repeated::Deny && headers.get_all(name).nth(1).is_some() {
                return refuse(cx, "repeated header\n", "ext_authz_header_repeated");
            }
            if headers
                .get_all(name)
                .any(|value| std::str::from_utf8(value).is_err())
            {
                return refuse(
                    cx,
                    "header value is not text\n",
                    "ext_authz_header_not_text",
                );
            }
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let check = if config.grpc {
            let request = check_request(method, &target, host, &headers, &config.forward_headers);
            Callout::grpc(&config.cluster, AUTHORIZATION, "Check", request).timeout(timeout)
        } else {
            let mut check = Callout::new(method, &config.cluster, &target).timeout(timeout);
            if let Some(host) = host {
                check = check.header("x-forwarded-host", host);
            }
            for name in &config.forward_headers {
                for value in headers.get_all(name) {
                    check = check.header(name, value);
                }
            }
            check
        };
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
        let verdict = match response.grpc_status() {
            Some(_) => grpc_verdict(&response),
            None => http_verdict(&response, config),
        };
        match verdict {
            Verdict::Allow(answer) => {
                ALLOWED.inc();
                for name in &config.upstream_headers {
                    let written = match answer.header(name) {
                        Some(value) => cx.request_headers().set(name, value),
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
            Verdict::Fail => match fail(config, cx.request_headers()) {
                Some(reply) => cx.reply(reply),
                None => Ok(Action::Continue),
            },
            Verdict::Deny(status, body) => {
                DENIED.inc();
                cx.reply(
                    LocalReply::new(status.unwrap_or(config.deny_status))
                        .body(body)
                        .details("ext_authz_denied"),
                )
            }
        }
    }
}

/// What the service said, read in place in its answer.
enum Verdict<'a> {
    /// Allowed, with the answer's headers.
    Allow(Answer<'a>),
    /// Denied: the status it asked for (else `deny_status`) and the body.
    Deny(Option<u16>, &'a [u8]),
    /// It could not decide.
    Fail,
}

/// Where an allowing answer's headers are.
enum Answer<'a> {
    /// The HTTP answer's own headers.
    Http(&'a CalloutResponse),
    /// A `CheckResponse.ok_response` (`OkHttpResponse`): its `HeaderValueOption`s.
    Grpc(&'a [u8]),
}

impl Answer<'_> {
    /// The first value of header `name` in the answer.
    fn header(&self, name: &HeaderName) -> Option<&[u8]> {
        match self {
            Answer::Http(response) => response.header_bytes(name),
            // HeaderValueOption: header 1 (HeaderValue: key 1, value 2, raw_value 3).
            Answer::Grpc(ok) => fields(ok)
                .flatten()
                .filter(|f| f.number == 2)
                .find_map(|option| {
                    let header = field(option.as_bytes()?, 1)?.as_bytes()?;
                    let key = field(header, 1)?.as_bytes()?;
                    if !key.eq_ignore_ascii_case(name.as_str().as_bytes()) {
                        return None;
                    }
                    let value = field(header, 3).or_else(|| field(header, 2));
                    Some(value.and_then(|v| v.as_bytes()).unwrap_or(b""))
                }),
        }
    }
}

/// An HTTP answer: 2xx allows, 5xx or none fails, anything else denies.
fn http_verdict<'a>(response: &'a CalloutResponse, _config: &Config) -> Verdict<'a> {
    match response.status() {
        Some(200..=299) => Verdict::Allow(Answer::Http(response)),
        // Like Envoy's ext_authz: a 5xx is the service failing, not deciding.
        // Envoy itself answers a callout that timed out or could not
        // connect with 504/503, so this also covers those.
        Some(500..=599) | None => Verdict::Fail,
        Some(_) => Verdict::Deny(None, response.body()),
    }
}

/// The service's gRPC name.
const AUTHORIZATION: &str = "envoy.service.auth.v3.Authorization";

/// `envoy.service.auth.v3.CheckRequest { attributes: { request: { http: HttpRequest } } }`,
/// with the field numbers of Envoy's `attribute_context.proto`: `HttpRequest` has
/// `method` 2, `headers` 3 (a map: entries of key 1, value 2), `path` 4, `host` 5.
fn check_request(
    method: &str,
    target: &str,
    host: Option<&str>,
    headers: &HeaderSnapshot,
    forward: &[HeaderName],
) -> Vec<u8> {
    let http = |mut m: Writer| {
        m = m.string(2, method);
        if let Some(host) = host {
            m = m.message(3, |e| e.string(1, ":authority").string(2, host));
        }
        m = m
            .message(3, |e| e.string(1, ":method").string(2, method))
            .message(3, |e| e.string(1, ":path").string(2, target));
        for name in forward {
            if headers.get_all(name).next().is_none() {
                continue;
            }
            // Repeated copies joined with `,`, as Envoy does (checked to be text before).
            let mut joined = String::new();
            for (i, value) in headers.get_all(name).enumerate() {
                if i > 0 {
                    joined.push(',');
                }
                joined.push_str(std::str::from_utf8(value).unwrap_or_default());
            }
            m = m.message(3, |e| e.string(1, name.as_str()).string(2, &joined));
        }
        m = m.string(4, target);
        if let Some(host) = host {
            m = m.string(5, host);
        }
        m
    };
    // CheckRequest.attributes = 1; AttributeContext.request = 4; Request.http = 2.
    Writer::new()
        .message(1, |a| a.message(4, |r| r.message(2, http)))
        .into_bytes()
}

/// The first field numbered `number` in `message`.
fn field<'a>(message: &'a [u8], number: u32) -> Option<Field<'a>> {
    fields(message).flatten().find(|f| f.number == number)
}

/// A gRPC answer: a `CheckResponse` whose `status.code` (a `google.rpc.Status`) is 0
/// allows with `ok_response.headers`; another code denies with `denied_response`;
/// a failed call (or an unreadable answer) fails.
fn grpc_verdict(response: &CalloutResponse) -> Verdict<'_> {
    if response.grpc_status() != Some(0) {
        let message = response.grpc_message().unwrap_or_default();
        weir::warn!(
            "the authorization service failed: gRPC status {} ({})",
            response.grpc_status().unwrap_or(2),
            String::from_utf8_lossy(message)
        );
        return Verdict::Fail;
    }
    let answer = response.body();
    if fields(answer).any(|f| f.is_err()) {
        weir::warn!("the authorization service's CheckResponse is malformed");
        return Verdict::Fail;
    }
    // CheckResponse: status 1 (google.rpc.Status: code 1), denied_response 2, ok_response 3.
    let code = field(answer, 1)
        .and_then(|s| field(s.as_bytes()?, 1))
        .and_then(|c| c.as_u64())
        .unwrap_or(0);
    if code == 0 {
        let ok = field(answer, 3).and_then(|f| f.as_bytes()).unwrap_or(b"");
        return Verdict::Allow(Answer::Grpc(ok));
    }
    // DeniedHttpResponse: status 1 (HttpStatus: code 1), headers 2, body 3.
    let denied = field(answer, 2).and_then(|f| f.as_bytes()).unwrap_or(b"");
    let status = field(denied, 1)
        .and_then(|s| field(s.as_bytes()?, 1))
        .and_then(|c| c.as_u64())
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (200..=599).contains(c));
    let body = field(denied, 3).and_then(|f| f.as_bytes()).unwrap_or(b"");
    Verdict::Deny(status, body)
}

/// Answers 400 without asking the service: the request cannot be shown to it as the upstream will see it.
fn refuse(cx: &mut Request<'_, Config>, body: &str, details: &str) -> weir::Result {
    DENIED.inc();
    cx.reply(LocalReply::new(400).body(body).details(details))
}

/// Appends the path as callout text: UTF-8 as it is, other bytes
/// percent-encoded, so the service sees every byte the upstream will.
fn push_escaped(out: &mut String, path: &[u8]) {
    if let Ok(text) = std::str::from_utf8(path) {
        out.push_str(text);
        return;
    }
    out.reserve(path.len() * 3);
    for &b in path {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
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
