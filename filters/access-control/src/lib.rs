//! access-control: allows or denies requests by source address, path prefix and
//! headers, answering denied ones with a local reply (403 by default).
//!
//! Configuration (`config.example.json`, every field optional):
//! `allow_sources`/`deny_sources` (CIDRs), `deny_path_prefixes`,
//! `require_headers`/`deny_headers` (`{"name": .., "values": [..]}`),
//! `deny_status`, `deny_body`. Per-route overrides use `_rules_`. Counters:
//! `access_control_allowed`, `access_control_denied`. A denied gRPC call
//! (`content-type: application/grpc…`) gets `grpc-status: 7` (PERMISSION_DENIED).

use std::net::IpAddr;

use weir::{Action, ConfigError, HeaderName, HeaderSnapshot, HttpFilter, LocalReply, Request};

weir::metrics! {
    /// Requests let through.
    static ALLOWED: Counter = "access_control_allowed";
    /// Requests refused.
    static DENIED: Counter = "access_control_denied";
}

/// gRPC's PERMISSION_DENIED, the status a denied gRPC call gets.
const GRPC_PERMISSION_DENIED: u32 = 7;

/// The policy. A request is denied when any deny condition holds or any allow
/// condition fails; with the defaults everything is allowed.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// When non-empty, only these source networks are allowed.
    #[serde(default)]
    pub allow_sources: Vec<Cidr>,
    /// Source networks always denied.
    #[serde(default)]
    pub deny_sources: Vec<Cidr>,
    /// Request paths starting with one of these are denied. Paths are compared
    /// in their canonical form (`weir::path`: `//admin`, `/x/../admin` and
    /// `/%61dmin` are `/admin`), and so are the prefixes; a path with no
    /// canonical form (`%2F`, `\\`, `%zz`…) is answered with 400.
    #[serde(default)]
    pub deny_path_prefixes: Vec<PathPrefix>,
    /// Headers every request must carry (with one of `values`, when given).
    #[serde(default)]
    pub require_headers: Vec<HeaderRule>,
    /// Headers that deny a request when present (with one of `values`, when given).
    #[serde(default)]
    pub deny_headers: Vec<HeaderRule>,
    /// The status of the denial (default 403).
    #[serde(default = "default_status")]
    pub deny_status: u16,
    /// The body of the denial.
    #[serde(default = "default_body")]
    pub deny_body: String,
}

fn default_status() -> u16 {
    403
}

fn default_body() -> String {
    "access denied\n".into()
}

/// A header condition: `name` present, and when `values` is non-empty, equal to
/// one of them. A header sent several times is judged on every copy, since the
/// upstream may read any of them: a required header passes only when every copy
/// is accepted, a denied one denies when any copy matches. Envoy (and many
/// upstreams) join repeated headers with `,`, so each copy is also judged on
/// its comma-separated elements: `x-role: user, admin` carries `admin`.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// The header, lowercase.
    pub name: HeaderName,
    /// Accepted values (exact bytes); empty means any.
    #[serde(default)]
    pub values: Vec<String>,
}

/// How a header rule judges the copies of a repeated header.
#[derive(Clone, Copy)]
enum Copies {
    /// Every copy must be accepted (`require_headers`).
    All,
    /// One matching copy is enough (`deny_headers`).
    Any,
}

/// The comma-separated elements of a header value, without surrounding spaces and tabs.
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|e| {
        let start = e
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(e.len());
        let end = e
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(start, |i| i + 1);
        &e[start..end]
    })
}

impl HeaderRule {
    fn accepts(&self, value: &[u8]) -> bool {
        self.values.iter().any(|x| x.as_bytes() == value)
    }

    /// A required header's copy passes when it is an accepted value, or when
    /// every element of it is.
    fn accepts_copy(&self, value: &[u8]) -> bool {
        self.accepts(value) || elements(value).all(|e| self.accepts(e))
    }

    /// A denied header's copy denies when it, or any element of it, matches.
    fn denies_copy(&self, value: &[u8]) -> bool {
        self.accepts(value) || elements(value).any(|e| self.accepts(e))
    }

    /// Judged on a snapshot of the request's headers: every copy of the header is
    /// looked at in place, with no host call and no copy of its own.
    fn matches(&self, headers: &HeaderSnapshot, copies: Copies) -> bool {
        let mut copies_of = headers.get_all(&self.name).peekable();
        if copies_of.peek().is_none() {
            return false;
        }
        if self.values.is_empty() {
            return true;
        }
        match copies {
            Copies::All => copies_of.all(|v| self.accepts_copy(v)),
            Copies::Any => copies_of.any(|v| self.denies_copy(v)),
        }
    }
}

/// An IP network, `10.0.0.0/8` or a single address `192.168.1.7`.
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or an address alone. An IPv4-mapped IPv6
    /// network (`::ffff:10.0.0.0/104`) becomes the IPv4 one (`10.0.0.0/8`),
    /// since sources are compared as IPv4; one wider than the mapped range
    /// (`::ffff:0:0/95`) is refused.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        if let IpAddr::V6(v6) = addr {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return (prefix >= 96).then(|| Cidr {
                    network: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Some(Cidr {
            network: addr,
            prefix,
        })
    }

    /// True when `ip` is inside the network (IPv4-mapped IPv6 addresses count as IPv4).
    /// IPv4 is compared in 32 bits (most sources, and no 128-bit shifts).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let prefix = u32::from(self.prefix);
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => v4_within(net.into(), ip.into(), prefix),
            (IpAddr::V4(net), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|ip| v4_within(net.into(), ip.into(), prefix)),
            (IpAddr::V6(net), IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => {
                let shift = 128 - prefix;
                shift >= 128 || (u128::from(net) >> shift) == (u128::from(ip) >> shift)
            }
            _ => false,
        }
    }
}

/// `ip` in the IPv4 network `net`/`prefix`.
fn v4_within(net: u32, ip: u32, prefix: u32) -> bool {
    let shift = 32 - prefix;
    shift >= 32 || (net >> shift) == (ip >> shift)
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cidr::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "`{text}` is not an IP address or CIDR (like 10.0.0.0/8; an IPv4-mapped one needs a prefix of at least 96)"
            ))
        })
    }
}

const PATH_DENIED: &str = "access_control_path_denied";
/// A path with no canonical form: answered with 400, whatever `deny_status` is.
const PATH_INVALID: &str = "access_control_path_invalid";

/// A path prefix, canonicalized when the configuration is read (`weir::path`).
#[derive(Debug, Clone)]
pub struct PathPrefix(pub String);

impl<'de> serde::Deserialize<'de> for PathPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match weir::path::canonicalize(text.as_bytes()) {
            Ok(c) => Ok(PathPrefix(String::from_utf8_lossy(&c).into_owned())),
            Err(e) => Err(serde::de::Error::custom(format_args!(
                "path prefix `{text}`: {e}"
            ))),
        }
    }
}

/// Why a request was denied (also its `%RESPONSE_CODE_DETAILS%`).
fn verdict(cx: &mut Request<'_, Config>) -> Option<&'static str> {
    let config = cx.config();
    if !config.allow_sources.is_empty() || !config.deny_sources.is_empty() {
        let source = cx.properties().source_address().map(|a| a.ip());
        if let Some(ip) = source {
            if config.deny_sources.iter().any(|c| c.contains(ip)) {
                return Some("access_control_source_denied");
            }
        }
        if !config.allow_sources.is_empty()
            && !source.is_some_and(|ip| config.allow_sources.iter().any(|c| c.contains(ip)))
        {
            return Some("access_control_source_not_allowed");
        }
    }
    // One host call for every header the policy reads, the path included (`:path`
    // is what `request.path` gives, canonicalized the same way).
    let need_path = !config.deny_path_prefixes.is_empty();
    if !need_path && config.deny_headers.is_empty() && config.require_headers.is_empty() {
        return None;
    }
    let headers = cx.headers().snapshot();
    let judged = if config.require_headers.len() <= Judged::MAX_REQUIRED {
        Judged::in_one_pass(config, &headers, need_path)
    } else {
        Judged::rule_by_rule(config, &headers, need_path)
    };
    if need_path {
        // A CONNECT has no path, so no prefix to match.
        if let Some(raw) = judged.path {
            match weir::path::canonicalize(raw) {
                Ok(path) => {
                    if config
                        .deny_path_prefixes
                        .iter()
                        .any(|p| path.starts_with(p.0.as_bytes()))
                    {
                        return Some(PATH_DENIED);
                    }
                }
                Err(_) => return Some(PATH_INVALID),
            }
        }
    }
    if judged.denied {
        return Some("access_control_header_denied");
    }
    if !judged.required {
        return Some("access_control_header_required");
    }
    None
}

/// What the policy's header rules found in a request's headers.
struct Judged<'a> {
    /// The first `:path`, when the path is judged.
    path: Option<&'a [u8]>,
    /// Some `deny_headers` rule matched.
    denied: bool,
    /// Every `require_headers` rule passed.
    required: bool,
}

impl<'a> Judged<'a> {
    /// The most `require_headers` judged in one pass (one bit each).
    const MAX_REQUIRED: usize = 64;

    /// Every rule judged in one walk over the headers: each header is held against
    /// each rule's name (lengths first), instead of one walk per rule.
    fn in_one_pass(config: &Config, headers: &'a HeaderSnapshot, need_path: bool) -> Self {
        let named = |name: &[u8], rule: &HeaderRule| {
            let want = rule.name.as_str().as_bytes();
            name.len() == want.len() && name.eq_ignore_ascii_case(want)
        };
        let mut path = None;
        let mut denied = false;
        // Bit `i`: `require_headers[i]` was present / had a copy it does not accept.
        let (mut present, mut refused) = (0u64, 0u64);
        // Bit `n` (63 for 63 and longer): some name the policy reads has `n` bytes.
        // Most of a request's headers have a length no rule asks for, and are
        // passed over on this one test.
        let bit = |name: &[u8]| 1u64 << name.len().min(63);
        let mut lengths = if need_path { bit(b":path") } else { 0 };
        for rule in config.deny_headers.iter().chain(&config.require_headers) {
            lengths |= bit(rule.name.as_str().as_bytes());
        }
        for (name, value) in headers.iter() {
            if lengths & bit(name) == 0 {
                continue;
            }
            if need_path && path.is_none() && name.eq_ignore_ascii_case(b":path") {
                path = Some(value);
            }
            if !denied {
                denied = config.deny_headers.iter().any(|rule| {
                    named(name, rule) && (rule.values.is_empty() || rule.denies_copy(value))
                });
            }
            for (i, rule) in config.require_headers.iter().enumerate() {
                if named(name, rule) {
                    present |= 1 << i;
                    if !rule.values.is_empty() && !rule.accepts_copy(value) {
                        refused |= 1 << i;
                    }
                }
            }
        }
        let all = match config.require_headers.len() {
            64 => u64::MAX,
            n => (1u64 << n) - 1,
        };
        Judged {
            path,
            denied,
            required: present == all && refused == 0,
        }
    }

    /// Rule by rule, one walk over the headers each (any number of rules).
    fn rule_by_rule(config: &Config, headers: &'a HeaderSnapshot, need_path: bool) -> Self {
        Judged {
            path: if need_path {
                headers.get(":path")
            } else {
                None
            },
            denied: config
                .deny_headers
                .iter()
                .any(|h| h.matches(headers, Copies::Any)),
            required: config
                .require_headers
                .iter()
                .all(|h| h.matches(headers, Copies::All)),
        }
    }
}

/// Denies what the policy denies; lets everything else through untouched.
#[derive(Default)]
pub struct AccessControl;

#[weir::filter]
impl HttpFilter for AccessControl {
    type Config = Config;
    // The `_rules_` pick's `:path` and the policy's headers: one host call.
    const SNAPSHOTS_REQUEST_HEADERS: bool = true;

    fn validate(config: &Config) -> Result<(), ConfigError> {
        if !(200..=599).contains(&config.deny_status) {
            return Err(ConfigError::at(
                "deny_status",
                "must be an HTTP status from 200 to 599",
            ));
        }
        Ok(())
    }

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        match verdict(cx) {
            None => {
                ALLOWED.inc();
                Ok(Action::Continue)
            }
            Some(reason) => {
                DENIED.inc();
                let config = cx.config();
                let status = if reason == PATH_INVALID {
                    400
                } else {
                    config.deny_status
                };
                let mut reply = LocalReply::new(status)
                    .body(config.deny_body.as_bytes())
                    .details(reason);
                let grpc = cx
                    .headers()
                    .get("content-type")
                    .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
                if grpc {
                    reply = reply.grpc_status(GRPC_PERMISSION_DENIED);
                }
                cx.reply(reply)
            }
        }
    }
}

weir::export!(AccessControl);
