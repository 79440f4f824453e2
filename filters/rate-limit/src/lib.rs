//! rate-limit: at most `requests` per `window_seconds` for each client (source
//! IP, IPv6 grouped by `ipv6_prefix`, or the value of `key_header`), counted in
//! shared data so every worker of the Envoy sees one count; over the limit, 429
//! with `retry-after`.
//!
//! Counts are per `_rules_` entry and per window: the shared-data key is
//! `rate-limit/<rule>/<slot>` (`<rule>` is `g` for the global configuration or
//! the rule's index), where `<slot>` is one of `slots` buckets the client's key
//! hashes to. A slot's value holds up to [`SLOT_CLIENTS`] clients of the
//! current window (fingerprint, window, count; 20 bytes each) and one shared
//! overflow count for more; entries of older windows are dropped on the next
//! write. So shared data never holds more than `slots` keys of at most
//! 180 bytes per rule, however many clients come and go.
//!
//! Every write is a compare-and-swap on the version read, except the very first
//! write of a slot: proxy-wasm 0.2.1 has no "create if absent" (Envoy stores a
//! missing key whatever version is given), so two workers creating one slot at
//! the same instant can lose one increment, once per slot for the life of the
//! Envoy.

use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use weir::shared::{self, SharedError};
use weir::{Action, ConfigError, HeaderName, HttpFilter, LocalReply, Request};

weir::metrics! {
    /// Requests within their limit.
    static ALLOWED: Counter = "rate_limit_allowed";
    /// Requests answered 429.
    static LIMITED: Counter = "rate_limit_limited";
}

/// Clients of one window a slot keeps apart; more share the slot's overflow count.
pub const SLOT_CLIENTS: usize = 8;

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
    /// IPv6 sources in one network of this prefix length are one client
    /// (default 64: a host picks any address in its /64).
    #[serde(default = "sixty_four")]
    pub ipv6_prefix: u8,
    /// IPv4 sources in one network of this prefix length are one client (default 32).
    #[serde(default = "thirty_two")]
    pub ipv4_prefix: u8,
    /// Shared-data slots the clients are hashed to, per rule (default 16384).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// The status over the limit (default 429).
    #[serde(default = "too_many")]
    pub status: u16,
}

fn one() -> u64 {
    1
}
fn sixty_four() -> u8 {
    64
}
fn thirty_two() -> u8 {
    32
}
fn default_slots() -> u32 {
    16384
}
fn too_many() -> u16 {
    429
}

/// One client's count in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Count {
    /// The client's key hash (0: the slot's overflow count).
    fingerprint: u64,
    window: u64,
    count: u32,
}

const ENTRY: usize = 20;

/// FNV-1a, 64 bits: the same in every worker's VM (unlike a randomly keyed hash).
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A client key built on the stack: a source network is at most 18 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SourceKey {
    bytes: [u8; 18],
    len: usize,
}

impl SourceKey {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// The client key of a source address: its network under the configured prefix
/// (`4`, the masked address, the prefix; or the same with `6`).
fn source_key(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> SourceKey {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let mut bytes = [0u8; 18];
    let len = match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(ipv4_prefix.min(32)))
                .unwrap_or(0);
            bytes[0] = 4;
            bytes[1..5].copy_from_slice(&(bits & mask).to_be_bytes());
            bytes[5] = ipv4_prefix;
            6
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                .unwrap_or(0);
            bytes[0] = 6;
            bytes[1..17].copy_from_slice(&(bits & mask).to_be_bytes());
            bytes[17] = ipv6_prefix;
            18
        }
    };
    SourceKey { bytes, len }
}

/// A shared-data key, `rate-limit/<rule>/<slot>`, built on the stack.
struct SlotKey {
    bytes: [u8; 64],
    len: usize,
}

impl SlotKey {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        s.bytes().for_each(|b| self.push(b));
    }

    fn push_number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        digits[at..].iter().for_each(|&b| self.push(b));
    }

    /// The key (ASCII, so always a `str`).
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or_default()
    }
}

/// Where a client is counted: the shared-data key and its fingerprint in it.
fn place(rule: Option<usize>, client: &[u8], slots: u32) -> (SlotKey, u64) {
    let h = fnv(client);
    let slot = (h >> 32 ^ h) % u64::from(slots.max(1));
    let mut key = SlotKey {
        bytes: [0; 64],
        len: 0,
    };
    key.push_str("rate-limit/");
    match rule {
        Some(i) => key.push_number(i as u64),
        None => key.push(b'g'),
    }
    key.push(b'/');
    key.push_number(slot);
    (key, h.max(1))
}

/// What one request does to its client's count.
enum Verdict {
    Allow,
    /// Over the limit; seconds until the window ends.
    Limit(u64),
}

/// The entry at `at` (a multiple of [`ENTRY`] within `bytes`).
fn entry_at(bytes: &[u8], at: usize) -> Option<Count> {
    let e = bytes.get(at..at + ENTRY)?;
    Some(Count {
        fingerprint: u64::from_le_bytes(e.get(..8)?.try_into().ok()?),
        window: u64::from_le_bytes(e.get(8..16)?.try_into().ok()?),
        count: u32::from_le_bytes(e.get(16..20)?.try_into().ok()?),
    })
}

/// The offset of the first entry of `fingerprint` in `bytes`.
fn find(bytes: &[u8], fingerprint: u64) -> Option<usize> {
    (0..bytes.len() / ENTRY)
        .map(|i| i * ENTRY)
        .find(|&at| entry_at(bytes, at).is_some_and(|c| c.fingerprint == fingerprint))
}

/// Counts one request of `fingerprint` in `counts`, a slot's value, for `window`:
/// false when the client is already at `limit` (nothing changed). Judged and
/// rewritten in the buffer the value was read into, with no list decoded: older
/// windows are dropped (their counts go with this write), and so is a cut entry
/// at the end; a client new to a full slot is counted in its overflow entry.
fn judge(counts: &mut Vec<u8>, fingerprint: u64, window: u64, limit: u32) -> bool {
    let mut kept = 0;
    for at in (0..counts.len() / ENTRY).map(|i| i * ENTRY) {
        if entry_at(counts, at).is_some_and(|c| c.window == window) {
            counts.copy_within(at..at + ENTRY, kept);
            kept += ENTRY;
        }
    }
    counts.truncate(kept);
    let at = match find(counts, fingerprint) {
        Some(at) => at,
        None => {
            let clients = (0..counts.len() / ENTRY)
                .filter(|i| entry_at(counts, i * ENTRY).is_some_and(|c| c.fingerprint != 0))
                .count();
            let fingerprint = if clients < SLOT_CLIENTS {
                fingerprint
            } else {
                0
            };
            match find(counts, fingerprint) {
                Some(at) => at,
                None => {
                    counts.extend_from_slice(&fingerprint.to_le_bytes());
                    counts.extend_from_slice(&window.to_le_bytes());
                    counts.extend_from_slice(&0u32.to_le_bytes());
                    counts.len() - ENTRY
                }
            }
        }
    };
    let Some(current) = entry_at(counts, at) else {
        return false;
    };
    if current.count >= limit {
        return false;
    }
    if let Some(c) = counts.get_mut(at + 16..at + ENTRY) {
        c.copy_from_slice(&(current.count + 1).to_le_bytes());
    }
    true
}

/// Counts one request of `fingerprint` in the slot `key` with compare-and-swap,
/// retrying when another worker wrote in between.
fn count(
    key: &str,
    fingerprint: u64,
    limit: u32,
    window_seconds: u64,
    now: u64,
) -> Result<Verdict, SharedError> {
    let window = now / window_seconds;
    for _ in 0..8 {
        let (mut counts, version) = match shared::get(key) {
            Some(e) => (e.value, Some(e.version)),
            None => (Vec::new(), None),
        };
        if !judge(&mut counts, fingerprint, window, limit) {
            return Ok(Verdict::Limit((window + 1) * window_seconds - now));
        }
        match shared::set(key, &counts, version) {
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

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if config.window_seconds == 0 {
            return Err(ConfigError::at("window_seconds", "must be at least 1"));
        }
        if !(1..=128).contains(&config.ipv6_prefix) {
            return Err(ConfigError::at("ipv6_prefix", "must be from 1 to 128"));
        }
        if !(1..=32).contains(&config.ipv4_prefix) {
            return Err(ConfigError::at("ipv4_prefix", "must be from 1 to 32"));
        }
        if !(1..=1 << 20).contains(&config.slots) {
            return Err(ConfigError::at("slots", "must be from 1 to 1048576"));
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
        let (key, fingerprint) = match &config.key_header {
            Some(name) => {
                let value = cx.headers().get(name);
                let client = value.as_ref().map_or(&[][..], |v| v.as_bytes());
                place(cx.rule(), client, config.slots)
            }
            None => {
                let source = cx
                    .properties()
                    .source_address()
                    .map(|a| source_key(a.ip(), config.ipv4_prefix, config.ipv6_prefix));
                let client = source.as_ref().map_or(&[][..], SourceKey::as_bytes);
                place(cx.rule(), client, config.slots)
            }
        };
        let now = weir::clock::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A count that cannot be kept (the proxy refuses shared data) lets the
        // request through: the hook's error is logged and the request continues.
        match count(
            key.as_str(),
            fingerprint,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Vec<Count> {
        bytes
            .chunks_exact(ENTRY)
            .filter_map(|e| {
                Some(Count {
                    fingerprint: u64::from_le_bytes(e.get(..8)?.try_into().ok()?),
                    window: u64::from_le_bytes(e.get(8..16)?.try_into().ok()?),
                    count: u32::from_le_bytes(e.get(16..20)?.try_into().ok()?),
                })
            })
            .collect()
    }

    fn encode(counts: &[Count]) -> Vec<u8> {
        let mut out = Vec::with_capacity(counts.len() * ENTRY);
        for c in counts {
            out.extend_from_slice(&c.fingerprint.to_le_bytes());
            out.extend_from_slice(&c.window.to_le_bytes());
            out.extend_from_slice(&c.count.to_le_bytes());
        }
        out
    }

    /// What a request does to a slot, on the decoded list: the model [`judge`]
    /// must agree with byte for byte.
    fn judge_decoded(value: &[u8], fingerprint: u64, window: u64, limit: u32) -> Option<Vec<u8>> {
        let mut counts = decode(value);
        counts.retain(|c| c.window == window);
        let i = match counts.iter().position(|c| c.fingerprint == fingerprint) {
            Some(i) => i,
            None => {
                let clients = counts.iter().filter(|c| c.fingerprint != 0).count();
                let fingerprint = if clients < SLOT_CLIENTS {
                    fingerprint
                } else {
                    0
                };
                match counts.iter().position(|c| c.fingerprint == fingerprint) {
                    Some(i) => i,
                    None => {
                        counts.push(Count {
                            fingerprint,
                            window,
                            count: 0,
                        });
                        counts.len() - 1
                    }
                }
            }
        };
        if counts[i].count >= limit {
            return None;
        }
        counts[i].count += 1;
        Some(encode(&counts))
    }

    #[test]
    fn keys_are_built_as_before() {
        let v4 = source_key("10.1.2.3".parse().unwrap(), 24, 64);
        assert_eq!(v4.as_bytes(), [4, 10, 1, 2, 0, 24]);
        let v6 = source_key("2001:db8::1".parse().unwrap(), 32, 32);
        let mut want = vec![6, 0x20, 0x01, 0x0d, 0xb8];
        want.extend([0; 12]);
        want.push(32);
        assert_eq!(v6.as_bytes(), want);
        for (rule, client, slots) in [
            (None, &b"a"[..], 16384),
            (Some(0), b"", 1),
            (Some(12), b"\xff\x00", u32::MAX),
            (Some(usize::MAX), b"client", 1 << 20),
        ] {
            let h = fnv(client);
            let slot = (h >> 32 ^ h) % u64::from(slots.max(1));
            let rule_text = rule.map_or_else(|| "g".to_owned(), |i: usize| i.to_string());
            let (key, fingerprint) = place(rule, client, slots);
            assert_eq!(key.as_str(), format!("rate-limit/{rule_text}/{slot}"));
            assert_eq!(fingerprint, h.max(1));
        }
    }

    #[test]
    fn judging_in_place_matches_the_decoded_model() {
        // xorshift: many slots of mixed windows, fingerprints, counts and cut ends.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..20_000 {
            let entries: Vec<Count> = (0..next(12))
                .map(|_| Count {
                    fingerprint: next(12),
                    window: 5 + next(2),
                    count: next(4) as u32,
                })
                .collect();
            let mut value = encode(&entries);
            value.truncate(value.len() - next(3) as usize * next(7) as usize % (value.len() + 1));
            let (fingerprint, window, limit) = (next(12), 5 + next(2), next(4) as u32);
            let want = judge_decoded(&value, fingerprint, window, limit);
            let mut got = value.clone();
            let counted = judge(&mut got, fingerprint, window, limit);
            assert_eq!(
                counted.then_some(got),
                want,
                "{value:?} {fingerprint} {window} {limit}"
            );
        }
    }

    #[test]
    fn ipv6_sources_group_by_prefix_and_mapped_ipv4_is_ipv4() {
        let k = |ip: &str, p6| source_key(ip.parse().unwrap(), 32, p6);
        assert_eq!(
            k("2001:db8:1:2:aaaa::1", 64),
            k("2001:db8:1:2:ffff:1:2:3", 64)
        );
        assert_ne!(k("2001:db8:1:2::1", 64), k("2001:db8:1:3::1", 64));
        assert_ne!(k("2001:db8:1:2::1", 128), k("2001:db8:1:2::2", 128));
        assert_eq!(k("::ffff:10.0.0.1", 64), k("10.0.0.1", 64));
        assert_ne!(k("10.0.0.1", 64), k("10.0.0.2", 64));
        assert_eq!(
            source_key("10.0.0.1".parse().unwrap(), 24, 64),
            source_key("10.0.0.200".parse().unwrap(), 24, 64)
        );
    }

    #[test]
    fn counts_round_trip() {
        let counts = vec![
            Count {
                fingerprint: 7,
                window: 9,
                count: 3,
            },
            Count {
                fingerprint: 0,
                window: 9,
                count: 1,
            },
        ];
        assert_eq!(decode(&encode(&counts)), counts);
        assert_eq!(decode(&[1, 2, 3]), vec![]);
    }
}
