//! Header names, values and maps: checked before the host sees them, never trapping on what it returns.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::host::{self, Map};

/// A header name that is legal on the wire: a non-empty HTTP token, lowercase
/// (Envoy stores names lowercase), or an HTTP/2 pseudo-header such as `:path`.
///
/// Deserializing one from configuration checks it, so a filter whose config
/// holds a `HeaderName` refuses a bad name when it is configured, not per request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(Box<str>);

/// A header value that is legal on the wire: no NUL, CR or LF bytes.
/// It may hold any other byte, including 0x80–0xFF.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderValue(Box<[u8]>);

/// Why a header name or value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidHeader {
    /// The name is empty.
    EmptyName,
    /// The name holds a byte that is not allowed in an HTTP token (or an uppercase letter).
    NameByte {
        /// The offending byte.
        byte: u8,
        /// Its position in the name.
        at: usize,
    },
    /// The value holds NUL, CR or LF.
    ValueByte {
        /// The offending byte.
        byte: u8,
        /// Its position in the value.
        at: usize,
    },
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand: `write!` with a `char` links core's padding code.
        let (start, byte, at, end) = match *self {
            InvalidHeader::EmptyName => return f.write_str("header name is empty"),
            InvalidHeader::NameByte { byte, at } if byte.is_ascii_uppercase() => {
                let mut m = String::from("header name has uppercase '");
                m.push(char::from(byte));
                m.push_str("' at byte ");
                crate::config::json::decimal(&mut m, at as u64);
                m.push_str(": use lowercase names");
                return f.write_str(&m);
            }
            InvalidHeader::NameByte { byte, at } => (
                "header name has byte 0x",
                byte,
                at,
                ", which is not allowed in an HTTP token",
            ),
            InvalidHeader::ValueByte { byte, at } => (
                "header value has byte 0x",
                byte,
                at,
                ": NUL, CR and LF are not allowed",
            ),
        };
        let mut m = String::from(start);
        m.push(hex(byte >> 4));
        m.push(hex(byte & 15));
        m.push_str(" at byte ");
        crate::config::json::decimal(&mut m, at as u64);
        m.push_str(end);
        f.write_str(&m)
    }
}

impl std::error::Error for InvalidHeader {}

/// The lowercase hex digit of `nibble` (0–15): `{:02x}` without core's padded
/// integer formatting.
fn hex(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 15)])
}

/// RFC 9110 `tchar`, restricted to lowercase letters.
fn is_name_byte(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*'
        | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

pub(crate) fn check_name(name: &[u8]) -> Result<(), InvalidHeader> {
    let body = match name {
        [] => return Err(InvalidHeader::EmptyName),
        [b':', rest @ ..] => rest,
        _ => name,
    };
    if body.is_empty() {
        return Err(InvalidHeader::EmptyName);
    }
    let offset = name.len() - body.len();
    match body.iter().position(|&b| !is_name_byte(b)) {
        Some(i) => Err(InvalidHeader::NameByte {
            byte: body[i],
            at: i + offset,
        }),
        None => Ok(()),
    }
}

pub(crate) fn check_value(value: &[u8]) -> Result<(), InvalidHeader> {
    match value.iter().position(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        Some(at) => Err(InvalidHeader::ValueByte {
            byte: value[at],
            at,
        }),
        None => Ok(()),
    }
}

impl HeaderName {
    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, InvalidHeader> {
        check_name(name.as_bytes())?;
        Ok(HeaderName(name.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl HeaderValue {
    /// Checks `value` and wraps it.
    pub fn new(value: impl AsRef<[u8]>) -> Result<Self, InvalidHeader> {
        let value = value.as_ref();
        check_value(value)?;
        Ok(HeaderValue(value.into()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, or `None` when it is not UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        crate::utf8::str(&self.0).ok()
    }
}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl<'de> serde::Deserialize<'de> for HeaderName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // As `fmt::Arguments`: the one `custom` instance serde's own errors use.
        check_name(s.as_bytes()).map_err(|e| serde::de::Error::custom(format_args!("{e}")))?;
        Ok(HeaderName(s.into()))
    }
}

impl<'de> serde::Deserialize<'de> for HeaderValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_value(s.as_bytes()).map_err(|e| serde::de::Error::custom(format_args!("{e}")))?;
        Ok(HeaderValue(s.into_bytes().into()))
    }
}

impl serde::Serialize for HeaderName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl serde::Serialize for HeaderValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Anything usable as a header name, in every [`Headers`] method alike: a
/// checked [`HeaderName`] (no check at request time) or text (checked on each
/// write; a lookup passes it as it is, so an illegal name is simply not found).
///
/// ```
/// # fn hook(cx: &mut weir::Request<'_, weir::HeaderName>) -> weir::Result {
/// let name: &weir::HeaderName = cx.config();
/// let from_config = cx.headers().get(name);        // a HeaderName
/// let literal = cx.headers().get("x-request-id");  // or text
/// # let _ = (from_config, literal); Ok(weir::Action::Continue) }
/// ```
pub trait AsHeaderName {
    /// The name's bytes once checked.
    fn header_name(&self) -> Result<&[u8], InvalidHeader>;

    /// The name's bytes unchecked, for a lookup.
    fn name_bytes(&self) -> &[u8];
}

/// Anything usable as a header value: a checked [`HeaderValue`] or bytes/text
/// (checked on each use).
pub trait AsHeaderValue {
    /// The value's bytes once checked.
    fn header_value(&self) -> Result<&[u8], InvalidHeader>;
}

impl AsHeaderName for HeaderName {
    fn header_name(&self) -> Result<&[u8], InvalidHeader> {
        Ok(self.0.as_bytes())
    }
    fn name_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
impl AsHeaderName for str {
    fn header_name(&self) -> Result<&[u8], InvalidHeader> {
        check_name(self.as_bytes()).map(|()| self.as_bytes())
    }
    fn name_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl AsHeaderName for String {
    fn header_name(&self) -> Result<&[u8], InvalidHeader> {
        self.as_str().header_name()
    }
    fn name_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl<T: AsHeaderName + ?Sized> AsHeaderName for &T {
    fn header_name(&self) -> Result<&[u8], InvalidHeader> {
        (**self).header_name()
    }
    fn name_bytes(&self) -> &[u8] {
        (**self).name_bytes()
    }
}

impl AsHeaderValue for HeaderValue {
    fn header_value(&self) -> Result<&[u8], InvalidHeader> {
        Ok(&self.0)
    }
}
impl AsHeaderValue for [u8] {
    fn header_value(&self) -> Result<&[u8], InvalidHeader> {
        check_value(self).map(|()| self)
    }
}
impl AsHeaderValue for str {
    fn header_value(&self) -> Result<&[u8], InvalidHeader> {
        self.as_bytes().header_value()
    }
}
impl AsHeaderValue for String {
    fn header_value(&self) -> Result<&[u8], InvalidHeader> {
        self.as_bytes().header_value()
    }
}
impl AsHeaderValue for Vec<u8> {
    fn header_value(&self) -> Result<&[u8], InvalidHeader> {
        self.as_slice().header_value()
    }
}
impl<T: AsHeaderValue + ?Sized> AsHeaderValue for &T {
    fn header_value(&self) -> Result<&[u8], InvalidHeader> {
        (**self).header_value()
    }
}

/// A header value as the host returned it: raw bytes, with a UTF-8 view that
/// returns `None` instead of panicking.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(pub(crate) Vec<u8>);

impl Value {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, or `None` when it is not UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        crate::utf8::str(&self.0).ok()
    }

    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}
impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

/// One of the request's or response's header (or trailer) maps.
///
/// Every method takes the name the same way ([`AsHeaderName`]: a
/// [`HeaderName`] or text). Reads never fail on request data: a missing header
/// is `None`, a value that is not UTF-8 is still returned as bytes. Writes check
/// the name and value first, then report a proxy that refuses the write (a map
/// that has already gone on, such as the request headers once the response has
/// started) as `Err`, as [`Body::replace`](crate::Body::replace) does.
///
/// ```
/// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
/// let headers = cx.headers();
/// if let Some(id) = headers.get("x-request-id") {
///     headers.set("x-trace", id.as_bytes())?;   // any bytes but NUL, CR, LF
/// }
/// headers.add("x-seen-by", "weir")?;
/// headers.remove("x-internal")?;
/// # Ok(weir::Action::Continue) }
/// ```
#[derive(Debug)]
pub struct Headers {
    map: Map,
}

impl Headers {
    pub(crate) fn new(map: Map) -> Self {
        Headers { map }
    }

    /// The value of `name` (the first, when it is repeated), or `None`.
    /// Names are looked up case-insensitively by the host; pass them lowercase.
    pub fn get(&self, name: impl AsHeaderName) -> Option<Value> {
        host::map_get(self.map, name.name_bytes()).map(Value)
    }

    /// Every value of `name`, in the order the host holds them: a header sent
    /// several times has several. Check all of them where a repeated header must
    /// not slip past a decision made on its first value ([`get`](Self::get)) —
    /// the upstream may read another one. One host call that copies the whole map.
    pub fn get_all(&self, name: impl AsHeaderName) -> Vec<Value> {
        let name = name.name_bytes();
        host::map_pairs(self.map)
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| Value(v))
            .collect()
    }

    /// True when `name` is present.
    pub fn contains(&self, name: impl AsHeaderName) -> bool {
        self.get(name).is_some()
    }

    /// Every header at once, in one host call, to look up several headers (or every
    /// copy of one) without a host call or a copy each. The snapshot is the map as it
    /// was when taken: writes made after it do not show in it.
    ///
    /// ```
    /// # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
    /// let headers = cx.headers().snapshot();
    /// let key = headers.get("x-api-key");                     // Option<&[u8]>, no copy
    /// let admin = headers.get_all("x-role").any(|v| v == b"admin");
    /// if key != Some(&b"demo-key"[..]) && !admin {
    ///     return cx.reply(weir::LocalReply::new(403));
    /// }
    /// # Ok(weir::Action::Continue) }
    /// ```
    pub fn snapshot(&self) -> HeaderSnapshot {
        if self.map == Map::RequestHeaders && !WRITTEN.load(Ordering::Relaxed) {
            if let Some(bytes) = PICKED.try_with(std::cell::Cell::take).ok().flatten() {
                return HeaderSnapshot { bytes };
            }
        }
        HeaderSnapshot {
            bytes: host::map_pairs_bytes(self.map),
        }
    }

    /// Every header in order, names as the host gives them (lowercase in Envoy).
    pub fn iter(&self) -> impl Iterator<Item = (String, Value)> {
        host::map_pairs(self.map)
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), Value(v)))
    }

    /// Replaces every value of `name` with `value`. `Err` for an illegal name
    /// or value, or when the proxy refuses the write.
    pub fn set(
        &mut self,
        name: impl AsHeaderName,
        value: impl AsHeaderValue,
    ) -> Result<(), HeaderError> {
        let (name, value) = (name.header_name()?, value.header_value()?);
        refused(host::map_set(self.map, name, value), "set", name)
    }

    /// Adds `value` to `name`, keeping any values already there. `Err` for an
    /// illegal name or value, or when the proxy refuses the write.
    pub fn add(
        &mut self,
        name: impl AsHeaderName,
        value: impl AsHeaderValue,
    ) -> Result<(), HeaderError> {
        let (name, value) = (name.header_name()?, value.header_value()?);
        refused(host::map_add(self.map, name, value), "add", name)
    }

    /// Removes every value of `name`; removing a missing header is not an
    /// error, a proxy that refuses the write is.
    pub fn remove(&mut self, name: impl AsHeaderName) -> Result<(), HeaderError> {
        let name = name.name_bytes();
        refused(host::map_remove(self.map, name), "remove", name)
    }
}

thread_local! {
    /// The request headers the `_rules_` pick read in this VM entry to find `:path`
    /// (when the filter sets [`SNAPSHOTS_REQUEST_HEADERS`](crate::HttpFilter::SNAPSHOTS_REQUEST_HEADERS)),
    /// handed to the hook's first request-headers [`Headers::snapshot`] instead of a
    /// second host call; dropped at the end of the entry ([`take_picked`]).
    static PICKED: std::cell::Cell<Option<Vec<u8>>> = const { std::cell::Cell::new(None) };
}

/// Set by every header write, cleared when the pick keeps a snapshot: a kept
/// snapshot is handed over only while no header was written since it was read.
/// (A flag, not the snapshot itself, so that a writing filter links nothing more.)
static WRITTEN: AtomicBool = AtomicBool::new(false);

/// Keeps the request headers the rules pick read, for this VM entry's first
/// request-headers snapshot.
pub(crate) fn keep_picked(snapshot: HeaderSnapshot) {
    WRITTEN.store(false, Ordering::Relaxed);
    let _ = PICKED.try_with(|p| p.set(Some(snapshot.bytes)));
}

/// Drops the kept request headers (the entry ended).
pub(crate) fn take_picked() {
    drop(PICKED.try_with(std::cell::Cell::take));
}

/// `Ok` when the host took a write, else an error naming it. Allocates only on failure.
fn refused(ok: bool, op: &'static str, name: &[u8]) -> Result<(), HeaderError> {
    WRITTEN.store(true, Ordering::Relaxed);
    if ok {
        return Ok(());
    }
    // Not `String::from_utf8_lossy` (1 KB of code for this one error): a name that is
    // not UTF-8 (`remove` takes any bytes) shows each byte past ASCII as U+FFFD.
    let name = match crate::utf8::str(name) {
        Ok(name) => name.into(),
        Err(_) => name
            .iter()
            .map(|&b| match b.is_ascii() {
                true => char::from(b),
                false => char::REPLACEMENT_CHARACTER,
            })
            .collect(),
    };
    Err(HeaderError::Refused { op, name })
}

/// Why a header write failed: the name or value is illegal, or the proxy
/// refused it. `?` in a hook turns it into a [`weir::Error`](crate::Error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The name or value is not legal on the wire; nothing was sent to the proxy.
    Invalid(InvalidHeader),
    /// The proxy refused the write: the map can no longer be changed (its
    /// headers have gone on) or does not exist in this hook.
    Refused {
        /// `set`, `add` or `remove`.
        op: &'static str,
        /// The header's name.
        name: Box<str>,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Invalid(e) => fmt::Display::fmt(e, f),
            HeaderError::Refused { op, name } => {
                // Quoted as `{:?}` would, without core's Unicode tables (config::json::quoted).
                let mut quoted = String::new();
                crate::config::json::quoted(&mut quoted, name);
                for part in [
                    "the proxy refused to ",
                    op,
                    " header ",
                    &quoted,
                    ": this map can no longer be changed here",
                ] {
                    f.write_str(part)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HeaderError {}

impl From<InvalidHeader> for HeaderError {
    fn from(e: InvalidHeader) -> Self {
        HeaderError::Invalid(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_write_names_its_header_lossily_only_when_it_is_not_utf8() {
        assert_eq!(refused(true, "set", b"x-a"), Ok(()));
        let named = |name: &[u8]| match refused(false, "remove", name) {
            Err(HeaderError::Refused { op: "remove", name }) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(&*named("x-é".as_bytes()), "x-é");
        assert_eq!(&*named(b"x-\xff\xfea"), "x-\u{FFFD}\u{FFFD}a");
    }

    #[test]
    fn byte_errors_print_the_byte_as_two_hex_digits() {
        for byte in 0..=255u8 {
            let e = InvalidHeader::ValueByte { byte, at: 7 };
            assert_eq!(
                e.to_string(),
                format!(
                    "header value has byte 0x{byte:02x} at byte 7: NUL, CR and LF are not allowed"
                )
            );
            let e = InvalidHeader::NameByte {
                byte: byte | 0x80,
                at: 0,
            };
            assert!(e
                .to_string()
                .contains(&format!("0x{:02x} at byte 0", byte | 0x80)));
        }
    }

    #[test]
    fn names_follow_the_token_rule() {
        assert!(HeaderName::new("x-demo_1").is_ok());
        assert!(HeaderName::new(":path").is_ok());
        assert_eq!(HeaderName::new(""), Err(InvalidHeader::EmptyName));
        assert_eq!(HeaderName::new(":"), Err(InvalidHeader::EmptyName));
        assert_eq!(
            HeaderName::new("a b"),
            Err(InvalidHeader::NameByte { byte: b' ', at: 1 })
        );
        assert_eq!(
            HeaderName::new("X-Up"),
            Err(InvalidHeader::NameByte { byte: b'X', at: 0 })
        );
        assert!(HeaderName::new("é").is_err());
    }

    #[test]
    fn values_refuse_only_nul_cr_lf() {
        assert!(HeaderValue::new(b"\xff\x80 ok\t").is_ok());
        assert!(HeaderValue::new("").is_ok());
        assert_eq!(
            HeaderValue::new("a\r\nb"),
            Err(InvalidHeader::ValueByte { byte: b'\r', at: 1 })
        );
        assert!(HeaderValue::new(b"\0").is_err());
    }

    #[test]
    fn value_utf8_view_does_not_panic() {
        let v = Value(vec![b'a', 0xff]);
        assert_eq!(v.to_str(), None);
        assert_eq!(v.as_bytes(), b"a\xff");
    }
}

/// Every header of one map, read in one host call ([`Headers::snapshot`]) and looked
/// up in place: names and values are slices of the host's answer, never copied.
/// Names compare case-insensitively. A damaged answer yields the headers before the
/// damage; nothing here panics.
#[derive(Debug, Clone, Default)]
pub struct HeaderSnapshot {
    bytes: Vec<u8>,
}

impl HeaderSnapshot {
    /// A snapshot over `bytes`, a map as the ABI serializes it.
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Self {
        HeaderSnapshot { bytes }
    }

    /// Every header in the host's order, names as the host gives them (lowercase in Envoy).
    pub fn iter(&self) -> SnapshotIter<'_> {
        let count = u32_at(&self.bytes, 0).unwrap_or(0);
        SnapshotIter {
            bytes: &self.bytes,
            index: 0,
            count,
            data: count.saturating_mul(8).saturating_add(4),
        }
    }

    /// The first value of `name`, or `None`.
    pub fn get(&self, name: impl AsHeaderName) -> Option<&[u8]> {
        self.iter().next_named(name.name_bytes())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(
        &'a self,
        name: impl AsHeaderName + 'a,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut pairs = self.iter();
        std::iter::from_fn(move || pairs.next_named(name.name_bytes()))
    }

    /// True when `name` is present.
    pub fn contains(&self, name: impl AsHeaderName) -> bool {
        self.get(name).is_some()
    }
}

/// The pairs of `bytes`, a map as the ABI serializes it, read in place.
pub(crate) fn pairs_in(bytes: &[u8]) -> SnapshotIter<'_> {
    let count = u32_at(bytes, 0).unwrap_or(0);
    SnapshotIter {
        bytes,
        index: 0,
        count,
        data: count.saturating_mul(8).saturating_add(4),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// The headers of a [`HeaderSnapshot`]: `(name, value)` slices.
#[derive(Debug, Clone)]
pub struct SnapshotIter<'a> {
    bytes: &'a [u8],
    index: usize,
    count: usize,
    data: usize,
}

impl<'a> SnapshotIter<'a> {
    /// Steps over the next pair: its name and value. The pair's two sizes, then its
    /// name and value (each followed by a NUL); anything out of bounds ends the
    /// iteration. Each range is checked once, here, with no panic path: every
    /// request looks its headers up here.
    #[inline]
    fn advance(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        if self.index >= self.count {
            return None;
        }
        let bytes = self.bytes;
        let data = self.data;
        let sizes = self.index.wrapping_mul(8).wrapping_add(4);
        let pair = (|| {
            let s = bytes.get(sizes..sizes.checked_add(8)?)?;
            let klen = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
            let vlen = u32::from_le_bytes([s[4], s[5], s[6], s[7]]) as usize;
            let key_end = data.checked_add(klen)?;
            let value_at = key_end.checked_add(1)?;
            let value_end = value_at.checked_add(vlen)?;
            let value = bytes.get(value_at..value_end)?;
            Some((bytes.get(data..key_end)?, value, value_end))
        })();
        let Some((key, value, value_end)) = pair else {
            self.index = self.count;
            return None;
        };
        self.data = value_end.saturating_add(1);
        self.index += 1;
        Some((key, value))
    }

    /// The value of the next pair named `name` (compared case-insensitively, and
    /// only when the lengths agree).
    fn next_named(&mut self, name: &[u8]) -> Option<&'a [u8]> {
        while let Some((key, value)) = self.advance() {
            if key.len() == name.len() && key.eq_ignore_ascii_case(name) {
                return Some(value);
            }
        }
        None
    }
}

impl<'a> Iterator for SnapshotIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.advance()
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::HeaderSnapshot;

    fn snapshot(pairs: &[(&str, &str)]) -> HeaderSnapshot {
        let refs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        HeaderSnapshot {
            bytes: crate::host::serialize_pairs(&refs),
        }
    }

    #[test]
    fn looks_up_names_case_insensitively_and_every_copy_in_order() {
        let s = snapshot(&[
            (":path", "/a"),
            ("x-role", "user"),
            ("X-Role", "admin"),
            ("empty", ""),
        ]);
        assert_eq!(s.get(":path"), Some(&b"/a"[..]));
        assert_eq!(s.get("x-ROLE"), Some(&b"user"[..]));
        assert_eq!(
            s.get_all("x-role").collect::<Vec<_>>(),
            [&b"user"[..], &b"admin"[..]]
        );
        assert_eq!(s.get("empty"), Some(&b""[..]));
        assert!(!s.contains("x-missing"));
        assert_eq!(s.iter().count(), 4);
    }

    #[test]
    fn a_damaged_answer_yields_the_headers_before_the_damage() {
        let whole = snapshot(&[("a", "1"), ("bb", "22"), ("ccc", "333")]).bytes;
        for cut in 0..whole.len() {
            let s = HeaderSnapshot {
                bytes: whole[..cut].to_vec(),
            };
            let seen: Vec<_> = s.iter().collect();
            // Only the last value's closing NUL may go missing without losing it.
            assert_eq!(seen.len() == 3, cut == whole.len() - 1, "cut at {cut}");
            for (i, (k, _)) in seen.iter().enumerate() {
                assert_eq!(k.len(), i + 1, "cut at {cut}");
            }
        }
        // A count far larger than the bytes, and lengths pointing past the end.
        let mut lying = whole.clone();
        lying[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderSnapshot { bytes: lying }.iter().count() <= 3);
        let mut long = whole;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderSnapshot { bytes: long }.iter().count(), 0);
    }
}
