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

/// FNV-1a, 64 bits: the same in every worker's VM (unlike a randomly keyed hash).
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The client key of a source address: its network under the configured prefix.
fn source_key(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> Vec<u8> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(ipv4_prefix.min(32)))
                .unwrap_or(0);
            let mut out = vec![4];
            out.extend_from_slice(&(bits & mask).to_be_bytes());
            out.push(ipv4_prefix);
            out
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                .unwrap_or(0);
            let mut out = vec![6];
            out.extend_from_slice(&(bits & mask).to_be_bytes());
            out.push(ipv6_prefix);
            out
        }
    }
}

/// Where a client is counted: the shared-data key and its fingerprint in it.
fn place(rule: Option<usize>, client: &[u8], slots: u32) -> (String, u64) {
    let h = fnv(client);
    let slot = (h >> 32 ^ h) % u64::from(slots.max(1));
    let rule = rule.map_or_else(|| "g".to_owned(), |i| i.to_string());
    (format!("rate-limit/{rule}/{slot}"), h.max(1))
}

/// What one request does to its client's count.
enum Verdict {
    Allow,
    /// Over the limit; seconds until the window ends.
    Limit(u64),
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
            Some(e) => (decode(&e.value), Some(e.version)),
            None => (Vec::new(), None),
        };
        // Older windows are over: their counts go with this write.
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
            return Ok(Verdict::Limit((window + 1) * window_seconds - now));
        }
        counts[i].count += 1;
        match shared::set(key, &encode(&counts), version) {
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
        let client = match &config.key_header {
            Some(name) => cx
                .headers()
                .get(name)
                .map(|v| v.into_bytes())
                .unwrap_or_default(),
            None => cx
                .properties()
                .source_address()
                .map(|a| source_key(a.ip(), config.ipv4_prefix, config.ipv6_prefix))
                .unwrap_or_default(),
        };
        let (key, fingerprint) = place(cx.rule(), &client, config.slots);
        let now = weir::clock::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A count that cannot be kept (the proxy refuses shared data) lets the
        // request through: the hook's error is logged and the request continues.
        match count(
            &key,
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
