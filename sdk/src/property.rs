//! Properties: the request attributes Envoy knows (path, source address, route…),
//! read by name or typed ([`Properties::get_as`]), and written for access logs and
//! later filters ([`Properties::set`], [`Properties::set_filter_state`]).
//!
//! Envoy hands every attribute over as bytes in a fixed encoding: strings and
//! bytes as they are; `int64`, `uint64`, `double`, durations (nanoseconds, `int64`)
//! and timestamps (nanoseconds since the Unix epoch, `int64`) as 8 little-endian
//! bytes; `bool` as one byte; maps and lists as the ABI's serialized pairs.
//! [`FromProperty`] decodes each, and refuses bytes of the wrong size with a
//! [`PropertyError`] instead of guessing.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::header::Value;
use crate::host::{self, status};
use crate::path::{self, PathError};

/// The request's attributes, read from the host on each call (one host call each).
///
/// The method, path and authority are read here and only here:
/// [`method`](Self::method), [`path`](Self::path) (canonical) and
/// [`authority`](Self::authority) (canonical), with [`raw_path`](Self::raw_path)
/// and [`raw_authority`](Self::raw_authority) for the bytes as sent.
///
/// Every getter returns `None` when the host has no such attribute; text comes
/// back as a [`Value`] (bytes with a UTF-8 view), never as a panic.
#[derive(Clone, Copy, Debug)]
pub struct Properties(());

impl Properties {
    pub(crate) fn new() -> Self {
        Properties(())
    }

    /// Any attribute by its path, e.g. `&["connection", "mtls"]`, as the host's bytes.
    pub fn get(&self, path: &[&str]) -> Option<Value> {
        host::property(path).map(Value)
    }

    /// Any attribute by its path, decoded as `T`: `Ok(None)` when the host has no
    /// such attribute, `Err` when its bytes are not a `T` (e.g. 3 bytes for an
    /// `i64`: the path names an attribute of another type). Never panics.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// let props = cx.properties();
    /// let port: Option<i64> = props.get_as(&["destination", "port"])?;
    /// let mtls: Option<bool> = props.get_as(&["connection", "mtls"])?;
    /// let started: Option<SystemTime> = props.get_as(&["request", "time"])?;
    /// let headers: Option<Vec<(weir::Value, weir::Value)>> = props.get_as(&["request", "headers"])?;
    /// # let _ = (port, mtls, started, headers);
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn get_as<T: FromProperty>(&self, path: &[&str]) -> Result<Option<T>, PropertyError> {
        match host::property(path) {
            Some(bytes) => T::from_property(bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the attribute `name` for this request: Envoy keeps it as the
    /// filter state object `wasm.<name>` (bytes), which an access log reads with
    /// `%FILTER_STATE(wasm.<name>:PLAIN)%`, a later Wasm filter with
    /// `get(&[name])`, and CEL as `filter_state["wasm.<name>"]`. Writing it again
    /// replaces it. `Err` outside a request (e.g. in `on_tick`, where Envoy has no
    /// request to keep it on) or when the proxy refuses it.
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// if let Some(tenant) = cx.headers().get("x-tenant") {
    ///     cx.properties().set("tenant", tenant.as_bytes())?; // %FILTER_STATE(wasm.tenant:PLAIN)%
    /// }
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn set(&self, name: &str, value: &[u8]) -> Result<(), PropertyError> {
        match host::set_property(&[name], value) {
            status::OK => Ok(()),
            status::NOT_FOUND => Err(PropertyError::NoRequest),
            code => Err(PropertyError::Refused(code)),
        }
    }

    /// Sets the Envoy filter state object `key` from `value`, through Envoy's
    /// `set_envoy_filter_state` foreign function, for Envoy itself and other
    /// filters to act on (e.g. `envoy.network.upstream_server_name` sets the
    /// upstream SNI). Envoy accepts only keys it has an object factory for (its
    /// "well known filter state" list); any other is
    /// [`PropertyError::UnknownKey`]. An access log reads it with
    /// `%FILTER_STATE(<key>:PLAIN)%`. For data of your own, use [`set`](Self::set).
    ///
    /// ```
    /// use weir::property::LifeSpan;
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// cx.properties()
    ///     .set_filter_state("envoy.network.upstream_server_name", b"backend.internal", LifeSpan::FilterChain)?;
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn set_filter_state(
        &self,
        key: &str,
        value: &[u8],
        span: LifeSpan,
    ) -> Result<(), PropertyError> {
        match host::call_foreign(
            "set_envoy_filter_state",
            &filter_state_arguments(key, value, span),
        ) {
            Ok(_) => Ok(()),
            Err(status::NOT_FOUND) => Err(PropertyError::UnknownKey(key.into())),
            Err(code) => Err(PropertyError::Refused(code)),
        }
    }

    /// The request path in its canonical form, without the query: the one a
    /// filter matches on, as `_rules_` do (see [`crate::path`]): `/a/./b/../c`,
    /// `/a//c` and `/%61/c` are all `/a/c`. `Err` when the request has no path
    /// or a path with no canonical form (an encoded `/`, a NUL, `..` above the
    /// root); a security decision should then refuse the request (400).
    /// Allocates nothing beyond the host's answer when the path is already canonical.
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// let props = cx.properties();
    /// let (Some(method), Ok(path), Some(host)) = (props.method(), props.path(), props.authority()) else {
    ///     return cx.reply(weir::LocalReply::new(400));
    /// };
    /// if method == "DELETE" && path.as_bytes().starts_with(b"/admin/") && host == "api.example.com" {
    ///     return cx.reply(weir::LocalReply::new(403));
    /// }
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn path(&self) -> Result<Value, PathError> {
        let mut raw = host::property(&["request", "path"]).ok_or(PathError::Missing)?;
        let canonical = match path::canonicalize(&raw)? {
            Cow::Borrowed(b) => Err(b.len()),
            Cow::Owned(v) => Ok(v),
        };
        match canonical {
            Ok(owned) => Ok(Value(owned)),
            Err(len) => {
                raw.truncate(len);
                Ok(Value(raw))
            }
        }
    }

    /// The path as the client sent it, with its query (`request.path`): for
    /// logging or forwarding, never for a decision (match on [`path`](Self::path)).
    pub fn raw_path(&self) -> Option<Value> {
        self.get(&["request", "path"])
    }

    /// The request method (`request.method`), e.g. `GET`.
    pub fn method(&self) -> Option<Value> {
        self.get(&["request", "method"])
    }

    /// The host the request is for, in its canonical form: lowercase, without
    /// the port and one trailing `.` (see [`crate::path::canonical_host`]), as
    /// `_match_domain_` compares it.
    pub fn authority(&self) -> Option<Value> {
        let raw = host::property(&["request", "host"])?;
        Some(Value(path::canonical_host(&raw).into_owned()))
    }

    /// The host as the client sent it, with any port (`request.host`).
    pub fn raw_authority(&self) -> Option<Value> {
        self.get(&["request", "host"])
    }

    /// `http` or `https` (`request.scheme`).
    pub fn scheme(&self) -> Option<Value> {
        self.get(&["request", "scheme"])
    }

    /// The downstream peer's address (`source.address`), when it is an IP socket.
    pub fn source_address(&self) -> Option<SocketAddr> {
        socket_address(&host::property_at(b"source\0address")?)
    }

    /// The name of the route the request matched (`xds.route_name`).
    pub fn route_name(&self) -> Option<Value> {
        self.get(&["xds", "route_name"])
    }

    /// The plugin's configured name (`plugin_name`).
    pub fn plugin_name(&self) -> Option<Value> {
        self.get(&["plugin_name"])
    }

    /// The plugin's root id (`plugin_root_id`).
    pub fn root_id(&self) -> Option<Value> {
        self.get(&["plugin_root_id"])
    }
}

/// `bytes` as a socket address, as `SocketAddr`'s parser reads it. The common
/// `a.b.c.d:port` is read in one pass over the bytes (every request of a filter
/// that judges its source reads one); anything else, IPv6 included, goes to the
/// standard parser.
fn socket_address(bytes: &[u8]) -> Option<SocketAddr> {
    match plain_v4(bytes) {
        Some(address) => Some(address),
        None => crate::utf8::str(bytes).ok()?.parse().ok(),
    }
}

/// `a.b.c.d:port` in decimal without leading zeros, or `None` for anything else
/// (which the standard parser then judges): only forms it reads the same way.
fn plain_v4(bytes: &[u8]) -> Option<SocketAddr> {
    let mut octets = [0u8; 4];
    let mut parts = 0;
    let mut value = 0u32;
    let mut digits = 0;
    for &b in bytes {
        match b {
            b'0'..=b'9' => {
                // No leading zero, at most 5 digits (a port).
                if (digits == 1 && value == 0) || digits == 5 {
                    return None;
                }
                value = value * 10 + u32::from(b - b'0');
                digits += 1;
            }
            b'.' | b':' if digits > 0 && value <= 255 => {
                if (b == b':') != (parts == 3) {
                    return None;
                }
                *octets.get_mut(parts)? = value as u8;
                parts += 1;
                (value, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    let port = u16::try_from(value).ok()?;
    (parts == 4 && digits > 0).then(|| SocketAddr::from((octets, port)))
}

/// How long a filter state object lives (Envoy's `LifeSpan`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LifeSpan {
    /// This filter chain: the request as this listener sees it (the default).
    #[default]
    FilterChain = 0,
    /// The downstream request, across internal redirects.
    DownstreamRequest = 1,
    /// The downstream connection: every request on it.
    DownstreamConnection = 2,
}

/// `envoy.source.extensions.common.wasm.SetEnvoyFilterStateArguments` in protobuf's
/// wire format: `path` (1), `value` (2), `span` (3, left out at its default).
fn filter_state_arguments(key: &str, value: &[u8], span: LifeSpan) -> Vec<u8> {
    let mut message = crate::proto::Writer::new().string(1, key).bytes(2, value);
    if span != LifeSpan::FilterChain {
        message = message.uint(3, span as u64);
    }
    message.into_bytes()
}

/// Why a property was not read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyError {
    /// The attribute's bytes are not a value of the type asked for: `expected`
    /// names it, `len` is how many bytes the host gave.
    WrongType {
        /// The type asked for, e.g. `i64 (8 bytes)`.
        expected: &'static str,
        /// The number of bytes the host returned.
        len: usize,
    },
    /// A duration or timestamp outside what `Duration` / `SystemTime` hold (e.g. negative).
    OutOfRange(&'static str),
    /// Written outside a request (no request to keep it on).
    NoRequest,
    /// Envoy has no filter state object factory for this key (Envoy says the same,
    /// `NotFound`, when there is no request to set it on, as in `on_tick`).
    UnknownKey(Box<str>),
    /// The proxy refused the write (its proxy-wasm status code).
    Refused(u32),
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyError::WrongType { expected, len } => write!(
                f,
                "the property is {len} bytes, expected {expected}: check the path names an attribute of that type"
            ),
            PropertyError::OutOfRange(what) => write!(f, "the property's {what} is out of range"),
            PropertyError::NoRequest => {
                f.write_str("no request to write the property on: write it from a request's hook")
            }
            PropertyError::UnknownKey(key) => write!(
                f,
                "the proxy knows no filter state object {key:?} (or there is no request here): use one of Envoy's well-known keys from a request's hook, or `Properties::set` for your own data"
            ),
            PropertyError::Refused(code) => {
                write!(f, "the proxy refused the property write (status {code})")
            }
        }
    }
}

impl std::error::Error for PropertyError {}

impl From<PropertyError> for crate::Error {
    fn from(e: PropertyError) -> Self {
        crate::Error::new(e)
    }
}

/// A type a property's bytes decode to, in Envoy's encoding (see [the module](self)).
pub trait FromProperty: Sized {
    /// Decodes the host's bytes; `Err` when they are not a `Self`.
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError>;
}

fn eight(bytes: &[u8], expected: &'static str) -> Result<[u8; 8], PropertyError> {
    bytes.try_into().map_err(|_| PropertyError::WrongType {
        expected,
        len: bytes.len(),
    })
}

impl FromProperty for i64 {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        eight(&bytes, "i64 (8 bytes)").map(i64::from_le_bytes)
    }
}

impl FromProperty for u64 {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        eight(&bytes, "u64 (8 bytes)").map(u64::from_le_bytes)
    }
}

impl FromProperty for f64 {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        eight(&bytes, "f64 (8 bytes)").map(f64::from_le_bytes)
    }
}

impl FromProperty for bool {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        match bytes[..] {
            [b] => Ok(b != 0),
            _ => Err(PropertyError::WrongType {
                expected: "bool (1 byte)",
                len: bytes.len(),
            }),
        }
    }
}

/// A duration: Envoy's `int64` nanoseconds; a negative one is out of range.
impl FromProperty for Duration {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        let nanos = i64::from_le_bytes(eight(&bytes, "duration (8 bytes)")?);
        u64::try_from(nanos)
            .map(Duration::from_nanos)
            .map_err(|_| PropertyError::OutOfRange("duration"))
    }
}

/// A timestamp: Envoy's `int64` nanoseconds since the Unix epoch.
impl FromProperty for SystemTime {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        let nanos = i64::from_le_bytes(eight(&bytes, "timestamp (8 bytes)")?);
        let offset = Duration::from_nanos(nanos.unsigned_abs());
        let time = if nanos >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(offset)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(offset)
        };
        time.ok_or(PropertyError::OutOfRange("timestamp"))
    }
}

/// Text or bytes, as they came (a [`Value`] has a UTF-8 view).
impl FromProperty for Value {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        Ok(Value(bytes))
    }
}

/// Bytes, as they came.
impl FromProperty for Vec<u8> {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        Ok(bytes)
    }
}

/// Text: `Err` when the bytes are not UTF-8.
impl FromProperty for String {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        let len = bytes.len();
        crate::utf8::string(bytes).map_err(|_| PropertyError::WrongType {
            expected: "UTF-8 string",
            len,
        })
    }
}

/// A map (e.g. `request.headers`), as Envoy serializes it: key and value pairs.
/// Bytes that are not serialized pairs give the pairs read before the damage.
impl FromProperty for Vec<(Value, Value)> {
    fn from_property(bytes: Vec<u8>) -> Result<Self, PropertyError> {
        Ok(host::deserialize_pairs(&bytes)
            .into_iter()
            .map(|(k, v)| (Value(k), Value(v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_parse_as_the_standard_parser_reads_them() {
        for text in [
            "127.0.0.1:40000",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.1.2.3:8080",
            "256.0.0.1:80",
            "1.2.3.4:65536",
            "1.2.3.4:99999",
            "01.2.3.4:80",
            "1.2.3.4:080",
            "1.2.3.4:00",
            "1.2.3.4:",
            "1.2.3.4",
            "1.2.3:80",
            "1.2.3.4.5:80",
            "1.2.3.4:80:1",
            "1.2.3.4:80x",
            " 1.2.3.4:80",
            "1.2.3.4:1000000",
            "1111.2.3.4:80",
            "1..3.4:80",
            "[::1]:443",
            "[::ffff:10.0.0.1]:80",
            "[fe80::1%2]:80",
            "",
            "pipe:/tmp/x",
        ] {
            assert_eq!(
                socket_address(text.as_bytes()),
                text.parse::<SocketAddr>().ok(),
                "{text:?}"
            );
        }
        assert!(plain_v4(b"127.0.0.1:40000").is_some());
        assert_eq!(socket_address(b"\xff1.2.3.4:80"), None);
    }

    #[test]
    fn envoys_encodings_decode_and_wrong_sizes_are_errors() {
        assert_eq!(i64::from_property((-5i64).to_le_bytes().to_vec()), Ok(-5));
        assert_eq!(u64::from_property(7u64.to_le_bytes().to_vec()), Ok(7));
        assert_eq!(f64::from_property(0.25f64.to_le_bytes().to_vec()), Ok(0.25));
        assert_eq!(bool::from_property(vec![1]), Ok(true));
        assert_eq!(bool::from_property(vec![0]), Ok(false));
        assert_eq!(
            Duration::from_property(1_500_000i64.to_le_bytes().to_vec()),
            Ok(Duration::from_micros(1500))
        );
        assert_eq!(
            SystemTime::from_property(1_000_000_000i64.to_le_bytes().to_vec()),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        );
        assert_eq!(
            i64::from_property(vec![1, 2, 3]),
            Err(PropertyError::WrongType {
                expected: "i64 (8 bytes)",
                len: 3
            })
        );
        assert!(bool::from_property(vec![]).is_err());
        assert!(Duration::from_property((-1i64).to_le_bytes().to_vec()).is_err());
        assert!(String::from_property(vec![0xff]).is_err());
        let pairs = host::serialize_pairs(&[(b"a", b"1"), (b"b", b"")]);
        let map = Vec::<(Value, Value)>::from_property(pairs).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[0].0, "a");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_refuse_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let _ = i64::from_property(bytes.clone());
            let _ = u64::from_property(bytes.clone());
            let _ = f64::from_property(bytes.clone());
            let _ = bool::from_property(bytes.clone());
            let _ = Duration::from_property(bytes.clone());
            let _ = SystemTime::from_property(bytes.clone());
            let _ = String::from_property(bytes.clone());
            let _ = Vec::<(Value, Value)>::from_property(bytes);
        }
    }

    #[test]
    fn extreme_timestamps_are_errors_or_times_never_panics() {
        for nanos in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            let _ = SystemTime::from_property(nanos.to_le_bytes().to_vec());
        }
        assert!(Duration::from_property(i64::MIN.to_le_bytes().to_vec()).is_err());
    }

    #[test]
    fn filter_state_arguments_are_envoys_protobuf() {
        // path = "k" (field 1), value = "v1" (field 2), span = DownstreamRequest (field 3).
        assert_eq!(
            filter_state_arguments("k", b"v1", LifeSpan::DownstreamRequest),
            b"\x0a\x01k\x12\x02v1\x18\x01"
        );
        // The default span is protobuf's default value: not written.
        assert_eq!(
            filter_state_arguments("k", b"", LifeSpan::FilterChain),
            b"\x0a\x01k\x12\x00"
        );
        let long = vec![b'x'; 200];
        let encoded = filter_state_arguments("k", &long, LifeSpan::FilterChain);
        assert_eq!(&encoded[3..6], &[0x12, 0xc8, 0x01]);
    }
}
