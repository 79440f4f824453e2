//! redact: masks secrets in response bodies as they stream, one chunk at a time, including a
//! secret that a chunk boundary cuts in two; nothing is held longer than that.
//!
//! Configuration (`config.example.json`): `{"patterns": ["sk_live_51HxQz", "hunter2"], "mask": "#"}`.
//! Each byte of a match becomes `mask`, so a body keeps its length (and `content-length`
//! stays true). Only bodies whose `content-type` starts with one of `content_types`
//! are read; any other, and any compressed body, passes without entering the filter.
//! Counter: `wasmcustom.redact_matches`.

use weir::{Action, BodyMode, ConfigError, HttpFilter, Response};

weir::metrics! {
    /// Secrets masked.
    static MATCHES: Counter = "redact_matches";
}

/// What to mask, with what, and in which bodies.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Byte strings to mask wherever they occur (leftmost first; at one
    /// position, the first listed).
    pub patterns: Vec<String>,
    /// The one ASCII character each masked byte becomes (default `*`).
    #[serde(default = "star")]
    pub mask: char,
    /// `content-type` prefixes of the bodies to read (default: text, JSON and NDJSON).
    #[serde(default = "text_types")]
    pub content_types: Vec<String>,
}

fn star() -> char {
    '*'
}

fn text_types() -> Vec<String> {
    ["text/", "application/json", "application/x-ndjson"]
        .map(str::to_owned)
        .to_vec()
}

/// Per response: the end of the last chunk held back because it may be the
/// start of a secret the next chunk completes.
#[derive(Default)]
pub struct Redact {
    carry: Vec<u8>,
}

/// Masks every match of `patterns` in `data` with `mask`; returns how many.
///
/// ```
/// let mut data = b"key=hunter2".to_vec();
/// assert_eq!(redact::mask_matches(&mut data, &["hunter2".to_owned()], b'#'), 1);
/// assert_eq!(data, b"key=#######");
/// ```
pub fn mask_matches(data: &mut [u8], patterns: &[String], mask: u8) -> u64 {
    let mut found = 0;
    let mut at = 0;
    while at < data.len() {
        let hit = patterns
            .iter()
            .map(String::as_bytes)
            .find(|p| data[at..].starts_with(p));
        match hit {
            Some(p) => {
                data[at..at + p.len()].fill(mask);
                at += p.len();
                found += 1;
            }
            None => at += 1,
        }
    }
    found
}

/// How many bytes at the end of `data` must wait for the next chunk: the
/// longest tail that is the beginning of some pattern (shorter than it).
///
/// ```
/// let patterns = ["hunter2".to_owned()];
/// assert_eq!(redact::unfinished_tail(b"pass=hun", &patterns), 3); // `hun` may become `hunter2`
/// assert_eq!(redact::unfinished_tail(b"pass=abc", &patterns), 0);
/// ```
pub fn unfinished_tail(data: &[u8], patterns: &[String]) -> usize {
    let longest = patterns.iter().map(String::len).max().unwrap_or(0);
    let most = longest.saturating_sub(1).min(data.len());
    (1..=most)
        .rev()
        .find(|&n| {
            let tail = &data[data.len() - n..];
            patterns.iter().any(|p| p.as_bytes().starts_with(tail))
        })
        .unwrap_or(0)
}

#[weir::filter]
impl HttpFilter for Redact {
    type Config = Config;

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if config.patterns.is_empty() {
            return Err(ConfigError::at(
                "patterns",
                "give at least one pattern to mask",
            ));
        }
        if !config.mask.is_ascii() {
            return Err(ConfigError::at("mask", "must be one ASCII character"));
        }
        for p in &config.patterns {
            if p.is_empty() {
                return Err(ConfigError::at("patterns", "a pattern is empty"));
            }
            if p.contains(config.mask) {
                return Err(ConfigError::at(
                    "patterns",
                    format!(
                        "pattern `{p}` contains the mask `{}`: choose another mask",
                        config.mask
                    ),
                ));
            }
        }
        Ok(())
    }

    fn on_response_headers(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
        let config = cx.config();
        let headers = cx.headers();
        let listed = headers.get("content-type").is_some_and(|t| {
            let t = t.as_bytes().to_ascii_lowercase();
            config
                .content_types
                .iter()
                .any(|p| t.starts_with(p.to_ascii_lowercase().as_bytes()))
        });
        let encoded = headers
            .get("content-encoding")
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        if !listed || encoded {
            cx.set_body_mode(BodyMode::Skip)?;
        }
        Ok(Action::Continue)
    }

    fn on_response_body(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
        let config = cx.config();
        let chunk = cx.body().read();
        if chunk.is_empty() && self.carry.is_empty() {
            return Ok(Action::Continue);
        }
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(&chunk);
        let found = mask_matches(&mut data, &config.patterns, config.mask as u8);
        if found > 0 {
            MATCHES.add(found);
        }
        let hold = if cx.end_of_stream() {
            0
        } else {
            unfinished_tail(&data, &config.patterns)
        };
        self.carry = data.split_off(data.len() - hold);
        if data != chunk {
            cx.body().replace(&data)?;
        }
        Ok(Action::Continue)
    }
}

weir::export!(Redact);
