//! Per-route rules: one configuration with overrides by route name, host or path prefix.
//!
//! The format is Higress's `_rules_`: the top-level object is the global
//! configuration, and each entry of `_rules_` names what it matches and the
//! fields it overrides:
//!
//! ```json
//! {
//!   "deny_header": "x-block",
//!   "_rules_": [
//!     {"_match_route_": ["admin"], "deny_header": "x-admin-block"},
//!     {"_match_domain_": ["*.internal.example.com", "api.example.com"], "deny_header": "x-api-block"},
//!     {"_match_path_prefix_": ["/healthz"], "deny_header": "x-never-sent"}
//!   ]
//! }
//! ```
//!
//! - A rule's configuration is the global object with the rule's own fields
//!   put over it (a shallow merge), parsed and validated like the global one.
//! - `_match_route_` lists Envoy route names (exact); `_match_domain_` lists
//!   hosts, exact or `*.suffix`, compared canonically (ASCII case ignored,
//!   without the port and one trailing `.`: [`canonical_host`]);
//!   `_match_path_prefix_` lists prefixes of the canonical request path
//!   ([`canonicalize`]: `//api`, `/x/../api` and `/%61pi` are all `/api`;
//!   the prefixes are canonicalized too). A rule matches when every list it
//!   gives has a match; the first matching rule wins.
//! - When some rule matches on the path and the request's path has no canonical
//!   form (`%2F`, `\`, `%zz`…), the SDK answers 400 itself before any hook
//!   runs: a rule is never picked on a guess.
//! - When the top-level object holds nothing but `_rules_`, there is no global
//!   configuration, and a request that matches no rule skips the filter.
//! - The rule is picked once per request, on its first hook, reading only the
//!   attributes some rule needs; a configuration without `_rules_` costs nothing.
//!
//! Errors inside `_rules_` name the field (`_rules_[1].deny_header`) and, when
//! the problem is at one place (a value, an unknown key), its line and column; a
//! field missing from a rule's merged object has no place and is named alone.

use serde::de::DeserializeOwned;

use crate::config::json::{self, Entry};
use crate::config::{self, ConfigError};
use crate::header::{keep_picked, Headers};
use crate::host::{self, Map};
use crate::path::{canonical_host, canonicalize, PathError};

const RULES: &str = "_rules_";
const ROUTE: &str = "_match_route_";
const DOMAIN: &str = "_match_domain_";
const PATH_PREFIX: &str = "_match_path_prefix_";

/// A parsed configuration: the global one (if any) and the rules over it.
#[derive(Debug)]
pub(crate) struct RuleSet<C> {
    pub(crate) global: Option<C>,
    rules: Vec<Rule<C>>,
}

#[derive(Debug)]
struct Rule<C> {
    matcher: Matcher,
    config: C,
}

/// What a rule matches, by kind ([`MATCHES`]' order): route names, canonical
/// hosts, canonical path prefixes. An empty list matches everything.
#[derive(Debug, Default)]
struct Matcher {
    lists: [Vec<Vec<u8>>; 3],
}

/// The matcher keys, in [`Matcher::lists`]' order.
const MATCHES: [&str; 3] = [ROUTE, DOMAIN, PATH_PREFIX];
const BY_ROUTE: usize = 0;
const BY_DOMAIN: usize = 1;
const BY_PATH: usize = 2;

/// Which configuration a request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// No rule matched and there is no global configuration: skip the filter.
    Skip,
    Global,
    Rule(usize),
    /// A rule matches on the path, and this one has no canonical form: answer
    /// 400 (`pick` does, and skips the filter).
    Refuse(PathError),
}

impl<C: DeserializeOwned> RuleSet<C> {
    /// A rule set with only a global configuration.
    pub(crate) fn global(config: C) -> Self {
        RuleSet {
            global: Some(config),
            rules: Vec::new(),
        }
    }

    /// Parses `bytes`; `check` validates each configuration (global and per rule).
    ///
    /// Without `_rules_` this is one pass of the configuration reader into `C`.
    /// With it, the objects are split into their entries (keys and where their
    /// values start, no JSON value tree), and each configuration is deserialized
    /// from its merged entries, errors located in the original text. Only that
    /// last step is generic: the splitting and the matchers are read by
    /// non-generic code.
    pub(crate) fn parse(
        bytes: &[u8],
        rules: bool,
        check: impl Fn(&C) -> Result<(), ConfigError>,
    ) -> Result<Self, ConfigError> {
        if !rules || !contains(bytes, b"\"_rules_\"") {
            let config = config::parse::<C>(bytes)?;
            check(&config)?;
            return Ok(Self::global(config));
        }
        let (global, rules) = split(bytes)?;
        let global_config = if global.is_empty() {
            None
        } else {
            let config = merged::<C>(bytes, &global, Vec::new(), "")?;
            check(&config)?;
            Some(config)
        };
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, start) in rules.into_iter().enumerate() {
            let (at, matcher, own) = rule(bytes, i, start)?;
            let config = merged::<C>(bytes, &global, own, &at)?;
            check(&config).map_err(|e| e.under(&at))?;
            parsed.push(Rule { matcher, config });
        }
        Ok(RuleSet {
            global: global_config,
            rules: parsed,
        })
    }
}

/// A reader's error as a configuration error under `at`, located in `whole`.
#[cold]
#[inline(never)]
fn error_under(e: json::Error, whole: &[u8], at: &str) -> ConfigError {
    ConfigError::from_json(e.under(at), whole)
}

/// The top-level object's own entries, and where each rule of `_rules_` starts.
fn split(bytes: &[u8]) -> Result<(Vec<Entry<'_>>, Vec<usize>), ConfigError> {
    let top = json::entries_at(bytes, 0, true).map_err(|e| error_under(e, bytes, ""))?;
    // Plain loops, not `partition` and `collect`: less generic code in every module.
    let mut global = Vec::with_capacity(top.len());
    let mut list = None;
    for entry in top {
        if entry.key == RULES {
            list = Some(entry.value());
        } else {
            global.push(entry);
        }
    }
    let mut rules = Vec::new();
    if let Some(at) = list {
        let items = json::list_at(bytes, at, None).map_err(|e| error_under(e, bytes, RULES))?;
        for item in &items {
            rules.push(item.value());
        }
    }
    Ok((global, rules))
}

/// Rule `i` (its object at `start`): its path, what it matches, its own fields.
fn rule(
    bytes: &[u8],
    i: usize,
    start: usize,
) -> Result<(String, Matcher, Vec<Entry<'_>>), ConfigError> {
    let at = indexed(RULES, i);
    let fields = json::entries_at(bytes, start, false).map_err(|e| error_under(e, bytes, &at))?;
    let mut m = Matcher::default();
    let mut own = Vec::with_capacity(fields.len());
    for entry in fields {
        let key: &str = &entry.key;
        let Some(kind) = MATCHES.iter().position(|&k| k == key) else {
            own.push(entry);
            continue;
        };
        let mut list = Vec::new();
        json::list_at(bytes, entry.value(), Some(&mut list))
            .map_err(|e| error_under(e.under(key), bytes, &at))?;
        for (j, item) in list.iter_mut().enumerate() {
            if kind == BY_DOMAIN {
                *item = canonical_host(item).into_owned();
            } else if kind == BY_PATH {
                match canonicalize(item) {
                    Ok(c) => *item = c.into_owned(),
                    Err(e) => {
                        let mut field = String::from(at.as_str());
                        field.push('.');
                        return Err(ConfigError::at(indexed(&(field + key), j), e.message()));
                    }
                }
            }
        }
        m.lists[kind] = list;
    }
    if m.lists.iter().all(Vec::is_empty) {
        return Err(ConfigError::at(
            at,
            "a rule needs a non-empty `_match_route_`, `_match_domain_` or `_match_path_prefix_`",
        ));
    }
    Ok((at, m, own))
}

/// Deserializes `C` from the object made of `base` with `over` put over it.
fn merged<C: DeserializeOwned>(
    whole: &[u8],
    base: &[Entry<'_>],
    over: Vec<Entry<'_>>,
    at: &str,
) -> Result<C, ConfigError> {
    json::from_entries(whole, merge(base, over)).map_err(|e| error_under(e, whole, at))
}

/// `base`'s entries not in `over`, then `over`'s.
fn merge<'de>(base: &[Entry<'de>], over: Vec<Entry<'de>>) -> Vec<Entry<'de>> {
    let mut entries = Vec::with_capacity(base.len() + over.len());
    for b in base {
        if !over.iter().any(|o| o.key == b.key) {
            entries.push(b.clone());
        }
    }
    entries.extend(over);
    entries
}

impl<C> RuleSet<C> {
    /// Picks the configuration for the current request, reading from the host
    /// only the attributes the rules need.
    ///
    /// With `snapshot` (the filter's
    /// [`SNAPSHOTS_REQUEST_HEADERS`](crate::HttpFilter::SNAPSHOTS_REQUEST_HEADERS)),
    /// `:path` comes from one read of the whole request header map, kept for the
    /// hook's first snapshot; without it, from `request.path`.
    /// (Inlined into its one caller, where `snapshot` is a constant: a filter
    /// without it links none of the snapshot code.)
    #[inline(always)]
    pub(crate) fn pick(&self, snapshot: bool) -> Pick {
        if self.rules.is_empty() {
            return if self.global.is_some() {
                Pick::Global
            } else {
                Pick::Skip
            };
        }
        let route = self
            .need(BY_ROUTE)
            .then(|| host::property_at(b"xds\0route_name"))
            .flatten();
        let host = self
            .need(BY_DOMAIN)
            .then(|| host::property_at(b"request\0host"))
            .flatten();
        let paths = self.need(BY_PATH);
        // `:path` is what `request.path` gives.
        let headers = (snapshot && paths).then(|| Headers::new(Map::RequestHeaders).snapshot());
        let property = (!snapshot && paths)
            .then(|| host::property_at(b"request\0path"))
            .flatten();
        let path = match &headers {
            Some(h) => h.get(":path"),
            None => property.as_deref(),
        };
        let pick = self.pick_for(route.as_deref(), host.as_deref(), path);
        if let Some(headers) = headers {
            keep_picked(headers);
        }
        match pick {
            // Answered here, on the request's first hook; the filter is then
            // skipped for the rest of the request (the local reply included).
            Pick::Refuse(e) => {
                refuse(e);
                Pick::Skip
            }
            pick => pick,
        }
    }

    /// Picks the configuration for a request with these attributes.
    pub(crate) fn pick_for(
        &self,
        route: Option<&[u8]>,
        host: Option<&[u8]>,
        path: Option<&[u8]>,
    ) -> Pick {
        let host = host.map(canonical_host);
        let path = match path.map(canonicalize) {
            Some(Err(e)) if self.need(BY_PATH) => return Pick::Refuse(e),
            Some(Ok(p)) => Some(p),
            _ => None,
        };
        let attributes = [route, host.as_deref(), path.as_deref()];
        for (i, rule) in self.rules.iter().enumerate() {
            let matches = rule.matcher.lists.iter().enumerate().all(|(kind, list)| {
                list.is_empty()
                    || attributes[kind].is_some_and(|a| list.iter().any(|x| matches(kind, x, a)))
            });
            if matches {
                return Pick::Rule(i);
            }
        }
        if self.global.is_some() {
            Pick::Global
        } else {
            Pick::Skip
        }
    }

    /// Whether some rule matches on this kind of attribute.
    fn need(&self, kind: usize) -> bool {
        self.rules.iter().any(|r| !r.matcher.lists[kind].is_empty())
    }

    /// The configuration `pick` chose.
    pub(crate) fn get(&self, pick: Pick) -> Option<&C> {
        match pick {
            Pick::Skip | Pick::Refuse(_) => None,
            Pick::Global => self.global.as_ref(),
            Pick::Rule(i) => self.rules.get(i).map(|r| &r.config),
        }
    }
}

/// Answers a request whose path the rules cannot judge: 400, with the reason
/// as its details. Out of the hook dispatch on purpose: a refusal branch in
/// `Stream::run` cost every request of every filter ~360 wasm instructions
/// (`bench --work`), even when never taken.
#[cold]
#[inline(never)]
fn refuse(e: PathError) {
    // The host call itself, not a `LocalReply`: its builder, header list and
    // formatted error are code this one fixed reply does not need.
    if !host::send_local_reply(400, e.details(), b"invalid path\n", &[], None) {
        crate::log::log(
            crate::log::Level::Warn,
            "cannot refuse a path the rules cannot judge: the proxy refused a local reply with status 400",
        );
    }
}

/// `name[i]`.
fn indexed(name: &str, i: usize) -> String {
    let mut s = String::from(name);
    s.push('[');
    json::decimal(&mut s, i as u64);
    s.push(']');
    s
}

/// Whether `needle` occurs in `haystack`. Not `windows`: its panic for a zero
/// size formats a `&str`, which links core's padding code (~1.4 KB) into the module.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    (0..haystack.len()).any(|i| haystack.get(i..).is_some_and(|h| h.starts_with(needle)))
}

/// Whether `pattern`, a rule's matcher of `kind`, matches the request's attribute.
fn matches(kind: usize, pattern: &[u8], attribute: &[u8]) -> bool {
    match kind {
        BY_ROUTE => pattern == attribute,
        BY_DOMAIN => domain_matches(pattern, attribute),
        _ => attribute.starts_with(pattern),
    }
}

/// `pattern` is lowercase: exact, `*` (any host) or `*.suffix` (any subdomain).
fn domain_matches(pattern: &[u8], host: &[u8]) -> bool {
    match pattern {
        b"*" => true,
        [b'*', suffix @ ..] => {
            host.len() > suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        _ => host.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct C {
        v: u32,
        #[serde(default)]
        w: u32,
    }

    fn set(json: &str) -> RuleSet<C> {
        RuleSet::parse(json.as_bytes(), true, |_| Ok(())).unwrap()
    }

    #[test]
    fn no_rules_is_the_global_config() {
        let s = set(r#"{"v": 1}"#);
        assert_eq!(s.pick(false), Pick::Global);
        assert_eq!(s.get(Pick::Global), Some(&C { v: 1, w: 0 }));
    }

    #[test]
    fn rules_override_fields_and_match_in_order() {
        let s = set(r#"{"v": 1, "w": 9, "_rules_": [
                {"_match_route_": ["admin"], "v": 2},
                {"_match_domain_": ["*.example.com", "api.test"], "v": 3},
                {"_match_path_prefix_": ["/static/"], "v": 4},
                {"_match_domain_": ["both.test"], "_match_path_prefix_": ["/x"], "v": 5}
            ]}"#);
        let v = |route: Option<&str>, host: Option<&str>, path: Option<&str>| {
            let pick = s.pick_for(
                route.map(str::as_bytes),
                host.map(str::as_bytes),
                path.map(str::as_bytes),
            );
            s.get(pick).map(|c| (c.v, c.w))
        };
        assert_eq!(
            v(Some("admin"), Some("a.example.com"), Some("/")),
            Some((2, 9))
        );
        assert_eq!(
            v(Some("other"), Some("A.Example.COM:8080"), Some("/")),
            Some((3, 9))
        );
        assert_eq!(v(None, Some("example.com"), Some("/")), Some((1, 9)));
        assert_eq!(v(None, Some("api.test:443"), None), Some((3, 9)));
        assert_eq!(v(None, Some("x"), Some("/static/a.css")), Some((4, 9)));
        assert_eq!(v(None, Some("both.test"), Some("/y")), Some((1, 9)));
        assert_eq!(v(None, Some("both.test"), Some("/x/1")), Some((5, 9)));
        assert_eq!(v(None, None, None), Some((1, 9)));
    }

    #[test]
    fn rules_only_skips_unmatched_requests() {
        let s = set(r#"{"_rules_": [{"_match_path_prefix_": ["/a"], "v": 7}]}"#);
        assert_eq!(s.pick_for(None, None, Some(b"/a")), Pick::Rule(0));
        assert_eq!(s.pick_for(None, None, Some(b"/b")), Pick::Skip);
    }

    #[test]
    fn rule_errors_name_the_field() {
        let err = |json: &str| {
            RuleSet::<C>::parse(json.as_bytes(), true, |_| Ok(()))
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(r#"{"v": 1, "_rules_": [{"_match_route_": ["a"], "v": "x"}]}"#)
                .starts_with("field `_rules_[0].v`: invalid type: string")
        );
        assert!(err(r#"{"v": 1, "_rules_": [{"v": 2}]}"#).contains("a rule needs"));
        assert_eq!(
            err(r#"{"v": 1, "_rules_": [{"_match_route_": "a"}]}"#),
            "field `_rules_[0]._match_route_`: invalid type: string \"a\", expected a sequence at line 1 column 42"
        );
        assert_eq!(
            err("{\"v\": 1,\n \"_rules_\": [\n  {\"_match_route_\": [\"a\"], \"v\": true}]}"),
            "field `_rules_[0].v`: invalid type: boolean `true`, expected u32 at line 3 column 36"
        );
        assert_eq!(
            err(r#"{"_rules_": [{"_match_route_": ["a"]}]}"#),
            "field `_rules_[0]`: missing field `v`"
        );
        assert_eq!(
            err(r#"{"v": 1, "_rules_": [{"_match_route_": ["a", 5]}]}"#),
            "field `_rules_[0]._match_route_[1]`: invalid type: integer `5`, expected a string at line 1 column 46"
        );
        assert!(err(r#"{"v": 1, "_rules_": {}}"#).starts_with("field `_rules_`"));
        assert_eq!(
            err("{\"v\": 1, \"_rules_\": [\n {\"_match_route_\": [\"a\"], \"x\": 1}]}"),
            "field `_rules_[0].x`: unknown field `x`, expected `v` or `w` at line 2 column 29"
        );
        assert!(err(r#"{"_rules_": [], "v": "1"}"#).starts_with("field `v`"));
        let checked = RuleSet::<C>::parse(
            br#"{"v": 1, "_rules_": [{"_match_route_": ["a"], "v": 0}]}"#,
            true,
            |c| {
                if c.v == 0 {
                    Err(ConfigError::at("v", "must not be 0"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(
            checked.unwrap_err().to_string(),
            "field `_rules_[0].v`: must not be 0"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_refuse(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let mut with_rules = br#"{"v": 1, "_rules_": "#.to_vec();
            with_rules.extend_from_slice(&bytes);
            let _ = RuleSet::<C>::parse(&bytes, true, |_| Ok(()));
            let _ = RuleSet::<C>::parse(&with_rules, true, |_| Ok(()));
        }

        #[test]
        fn any_attributes_pick_without_panic(
            route in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
            host in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
            path in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
        ) {
            let s = set(r#"{"v": 1, "_rules_": [
                {"_match_route_": ["r"], "v": 2},
                {"_match_domain_": ["*.a.test", "*", "[::1]"], "_match_path_prefix_": ["/p", "/"], "v": 3}
            ]}"#);
            let pick = s.pick_for(Some(&route), Some(&host), Some(&path));
            match pick {
                Pick::Refuse(e) => proptest::prop_assert_eq!(canonicalize(&path).err(), Some(e)),
                _ => proptest::prop_assert!(s.get(pick).is_some()),
            }
        }
    }

    #[test]
    fn ports_are_stripped_but_ipv6_kept() {
        let s = set(r#"{"v": 1, "_rules_": [{"_match_domain_": ["[::1]", "a.test"], "v": 2}]}"#);
        for host in [
            "a.test:80",
            "a.test",
            "[::1]:80",
            "[::1]",
            "A.TEST.",
            "a.test.:8080",
        ] {
            assert_eq!(
                s.pick_for(None, Some(host.as_bytes()), None),
                Pick::Rule(0),
                "{host}"
            );
        }
        for host in ["::1", "a.test..", "b.test", "a.test.b"] {
            assert_eq!(
                s.pick_for(None, Some(host.as_bytes()), None),
                Pick::Global,
                "{host}"
            );
        }
    }

    #[test]
    fn paths_match_canonically() {
        let s = set(r#"{"v": 1, "_rules_": [
            {"_match_path_prefix_": ["/api/"], "v": 2},
            {"_match_path_prefix_": ["//%61dmin/./x/.."], "v": 3}
        ]}"#);
        for path in [
            "/api/v1",
            "//api/v1",
            "/./api/v1",
            "/x/../api/v1",
            "/%61pi/v1",
            "/%61%50i/../api/v1",
            "/api;x/v1",
            "/x/..;/api/v1",
            "/x/%2e%2e/api/v1",
            "///api//v1?q",
            "/../api/",
        ] {
            assert_eq!(
                s.pick_for(None, None, Some(path.as_bytes())),
                Pick::Rule(0),
                "{path}"
            );
        }
        // The prefix is `/admin/`.
        for path in ["/admin/", "//admin/users", "/admin/.", "/%61dmin/?x"] {
            assert_eq!(
                s.pick_for(None, None, Some(path.as_bytes())),
                Pick::Rule(1),
                "{path}"
            );
        }
        for path in [
            "/apiv1",
            "/API/v1",
            "/ap",
            "/x/api/v1",
            "/admin",
            "/admin?/",
        ] {
            assert_eq!(
                s.pick_for(None, None, Some(path.as_bytes())),
                Pick::Global,
                "{path}"
            );
        }
        for (path, e) in [
            ("/api%2Fv1", PathError::EncodedSlash),
            ("/api\\v1", PathError::Backslash),
            ("/%zz", PathError::InvalidEscape),
            ("/a%00", PathError::ControlByte),
            ("*", PathError::NotAbsolute),
        ] {
            assert_eq!(
                s.pick_for(None, None, Some(path.as_bytes())),
                Pick::Refuse(e),
                "{path}"
            );
        }
        // Without path rules, a path is never read, let alone refused.
        let hosts = set(r#"{"v": 1, "_rules_": [{"_match_domain_": ["a.test"], "v": 2}]}"#);
        assert_eq!(hosts.pick_for(None, None, Some(b"/%zz")), Pick::Global);
        let err = RuleSet::<C>::parse(
            br#"{"v": 1, "_rules_": [{"_match_path_prefix_": ["/a", "/%2f"], "v": 2}]}"#,
            true,
            |_| Ok(()),
        );
        assert_eq!(err.unwrap_err().to_string(), "field `_rules_[0]._match_path_prefix_[1]`: the path has an encoded `/` or `\\` (%2F, %5C)");
    }

    proptest::proptest! {
        #[test]
        fn a_rule_matches_a_path_exactly_when_it_matches_its_canonical_form(
            raw in proptest::collection::vec(proptest::sample::select(b"/.%2e61aApi;x?".to_vec()), 0..20),
        ) {
            let s = set(r#"{"v": 1, "_rules_": [
                {"_match_path_prefix_": ["/api/"], "v": 2},
                {"_match_path_prefix_": ["/a/"], "v": 3},
                {"_match_path_prefix_": ["/a"], "v": 4}
            ]}"#);
            let mut raw = raw;
            raw.insert(0, b'/');
            let pick = s.pick_for(None, None, Some(&raw));
            match canonicalize(&raw) {
                Ok(c) => {
                    proptest::prop_assert_eq!(pick, s.pick_for(None, None, Some(&c)));
                    let by_hand = ["/api/", "/a/", "/a"].iter().position(|p| c.starts_with(p.as_bytes()));
                    proptest::prop_assert_eq!(pick, by_hand.map_or(Pick::Global, Pick::Rule));
                }
                Err(e) => proptest::prop_assert_eq!(pick, Pick::Refuse(e)),
            }
        }
    }
}
