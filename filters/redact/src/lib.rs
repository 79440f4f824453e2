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

/// Masks every match of `patterns` in `data` with `mask`; returns how many. Matches
/// are found left to right without overlap; where several patterns start at one
/// place, the first listed wins.
///
/// The scan is Horspool's, for several patterns: a window as long as the shortest
/// pattern slides along `data`, and the window's last byte says how far it may jump
/// (no pattern's first bytes hold that byte closer to the end). On ordinary text
/// most bytes are jumped over, never read: the body streams at close to the speed
/// of no filter. Nothing is allocated.
///
/// ```
/// let mut data = b"key=hunter2".to_vec();
/// assert_eq!(redact::mask_matches(&mut data, &["hunter2".to_owned()], b'#'), 1);
/// assert_eq!(data, b"key=#######");
/// ```
pub fn mask_matches(data: &mut [u8], patterns: &[String], mask: u8) -> u64 {
    let Some(shortest) = patterns.iter().map(String::len).min().filter(|&m| m > 0) else {
        return 0;
    };
    // shift[b]: the least distance from the window's end at which byte b stands in
    // the first `shortest` bytes of some pattern (`shortest` when in none).
    let mut shift = [shortest; 256];
    for p in patterns {
        for (j, &b) in p.as_bytes()[..shortest].iter().enumerate() {
            let d = &mut shift[usize::from(b)];
            *d = (*d).min(shortest - 1 - j);
        }
    }
    let mut found = 0;
    let mut at = 0;
    while let Some(&last) = data.get(at + shortest - 1) {
        let jump = shift[usize::from(last)];
        if jump > 0 {
            at += jump;
            continue;
        }
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
        let mut data = cx.body().read();
        if data.is_empty() && self.carry.is_empty() {
            return Ok(Action::Continue);
        }
        // A tail held from the last chunk goes first; the usual chunk has none and
        // is scanned where the host put it, with no copy.
        let held = !self.carry.is_empty();
        if held {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(&data);
            data = joined;
        }
        let found = mask_matches(&mut data, &config.patterns, config.mask as u8);
        if found > 0 {
            MATCHES.add(found);
        }
        let hold = if cx.end_of_stream() {
            0
        } else {
            unfinished_tail(&data, &config.patterns)
        };
        if hold > 0 {
            self.carry.extend_from_slice(&data[data.len() - hold..]);
            data.truncate(data.len() - hold);
        }
        if held || found > 0 || hold > 0 {
            cx.body().replace(&data)?;
        }
        Ok(Action::Continue)
    }
}

weir::export!(Redact);

#[cfg(test)]
mod tests {
    use super::mask_matches;

    /// The scan before the jump table: every position, every pattern.
    fn naive(data: &mut [u8], patterns: &[String], mask: u8) -> u64 {
        let (mut found, mut at) = (0, 0);
        while at < data.len() {
            match patterns
                .iter()
                .map(String::as_bytes)
                .find(|p| data[at..].starts_with(p))
            {
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

    #[test]
    fn the_jump_table_finds_what_every_position_finds() {
        // A small alphabet makes matches, near misses and overlaps common.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let sets: [&[&str]; 5] = [
            &["ab"],
            &["abc", "b"],
            &["aab", "ab", "baa"],
            &["abcab", "cab"],
            &["a"],
        ];
        let mut matched = 0;
        for round in 0..4000 {
            let patterns: Vec<String> = sets[round % sets.len()]
                .iter()
                .map(|p| p.to_string())
                .collect();
            let len = (next() % 40) as usize;
            let data: Vec<u8> = (0..len).map(|_| b"abc"[(next() % 3) as usize]).collect();
            let (mut fast, mut slow) = (data.clone(), data.clone());
            let n = mask_matches(&mut fast, &patterns, b'#');
            assert_eq!(
                n,
                naive(&mut slow, &patterns, b'#'),
                "{:?} in {:?}",
                patterns,
                String::from_utf8_lossy(&data)
            );
            assert_eq!(
                fast,
                slow,
                "{:?} in {:?}",
                patterns,
                String::from_utf8_lossy(&data)
            );
            matched += n;
        }
        assert!(matched > 1000, "the inputs matched only {matched} times");
    }
}
