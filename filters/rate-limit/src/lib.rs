//! rate-limit: at most `requests` per `window_seconds` for each client (source
//! IP, or the value of `key_header`), counted in shared data so every worker of
//! the Envoy sees one count; over the limit, 429 with `retry-after`.

use std::time::UNIX_EPOCH;

use weir::metrics::Counter;
use weir::shared::{self, SharedError};
use weir::{Action, ConfigError, HeaderName, HttpFilter, LocalReply, Request};

static ALLOWED: Counter = Counter::new("rate_limit_allowed");
static LIMITED: Counter = Counter::new("rate_limit_limited");

/// The limit.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Requests allowed per window and client.
    pub requests: u32,
    /// The window, in seconds (default 1).
    #[serde(default = "one")]
    pub window_seconds: u64,
    /// Count per value of this header instead of per source IP; requests
    /// without it share one count.
    #[serde(default)]
    pub key_header: Option<HeaderName>,
    /// The status over the limit (default 429).
    #[serde(default = "too_many")]
    pub status: u16,
}

fn one() -> u64 {
    1
}
fn too_many() -> u16 {
    429
}

/// One count: the window it belongs to and the requests seen in it.
fn decode(bytes: &[u8]) -> Option<(u64, u32)> {
    let window = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let count = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    Some((window, count))
}

fn encode(window: u64, count: u32) -> [u8; 12] {
    let mut out = [0; 12];
    out[..8].copy_from_slice(&window.to_le_bytes());
    out[8..].copy_from_slice(&count.to_le_bytes());
    out
}

/// A shared-data key for client `key`: text as it is, other bytes percent-encoded.
fn shared_key(key: &[u8]) -> String {
    let mut out = String::from("rate-limit/");
    match std::str::from_utf8(key) {
        Ok(text) if !text.contains('%') => out.push_str(text),
        _ => {
            for &b in key {
                if b.is_ascii() && b != b'%' {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// What one request does to its client's count.
enum Verdict {
    Allow,
    /// Over the limit; seconds until the window ends.
    Limit(u64),
}

/// Counts one request against `key` with compare-and-swap, retrying when
/// another worker wrote in between.
fn count(key: &str, limit: u32, window_seconds: u64, now: u64) -> Result<Verdict, SharedError> {
    let window = now / window_seconds;
    for _ in 0..8 {
        let (seen, version) = match shared::get(key) {
            Some(e) => match decode(&e.value) {
                Some((w, c)) if w == window => (c, Some(e.version)),
                _ => (0, Some(e.version)),
            },
            None => (0, None),
        };
        if seen >= limit {
            return Ok(Verdict::Limit((window + 1) * window_seconds - now));
        }
        match shared::set(key, &encode(window, seen + 1), version) {
            Ok(()) => return Ok(Verdict::Allow),
            Err(SharedError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(SharedError::Conflict)
}

/// Counts each request; answers the ones over the limit itself.
#[derive(Default)]
pub struct RateLimit;

#[weir::filter]
impl HttpFilter for RateLimit {
    type Config = Config;
    const METRICS: &'static [&'static weir::metrics::Metric] =
        &[ALLOWED.metric(), LIMITED.metric()];

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if config.window_seconds == 0 {
            return Err(ConfigError::at("window_seconds", "must be at least 1"));
        }
        if !(400..=599).contains(&config.status) {
            return Err(ConfigError::at(
                "status",
                "must be an error status from 400 to 599",
            ));
        }
        Ok(())
    }

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        let config = cx.config();
        let client = match &config.key_header {
            Some(name) => cx
                .headers()
                .get(name.as_str())
                .map(|v| v.into_bytes())
                .unwrap_or_default(),
            None => cx
                .properties()
                .source_address()
                .map(|a| a.ip().to_string().into_bytes())
                .unwrap_or_default(),
        };
        let now = weir::clock::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A count that cannot be kept (the proxy refuses shared data) lets the
        // request through: the hook's error is logged and the request continues.
        match count(
            &shared_key(&client),
            config.requests,
            config.window_seconds,
            now,
        )? {
            Verdict::Allow => {
                ALLOWED.inc();
                Ok(Action::Continue)
            }
            Verdict::Limit(retry_after) => {
                LIMITED.inc();
                cx.reply(
                    LocalReply::new(config.status)
                        .body("rate limited\n")
                        .header("retry-after", retry_after.to_string())
                        .details("rate_limited"),
                )
            }
        }
    }
}

weir::export!(RateLimit);
