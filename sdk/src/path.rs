//! The canonical request path: the one view of `:path` that `_rules_` and filters match on.
//!
//! Envoy, the upstream and the filter must agree on which resource a request
//! names, however it is spelled. [`canonicalize`] turns every spelling an
//! upstream treats as the same path into one byte string, and refuses the
//! spellings whose meaning depends on the upstream:
//!
//! - the query (`?…`) and fragment (`#…`) are cut off;
//! - `%XX` of an unreserved character (letters, digits, `-._~`) is decoded
//!   (`/%61dmin` is `/admin`, `%2e%2e` is `..`); every other escape is kept,
//!   with uppercase hex (`%c3%a9` is `%C3%A9`);
//! - bytes that may not appear raw in a path (non-ASCII, space, `"<>[]^`{|}`)
//!   are percent-encoded, so raw `é` and `%C3%A9` compare equal;
//! - `;parameters` are removed from every segment (Tomcat and Spring route
//!   `/admin;x/users` to `/admin/users`, and `/..;/` climbs like `/../`);
//! - empty segments are merged (`//admin` is `/admin`), `.` segments removed and
//!   `..` segments remove the one before (RFC 3986 5.2.4); `..` above the root
//!   stays at the root (`/../admin` is `/admin`), as RFC 3986 and Envoy do;
//! - a trailing `/` is kept (`/admin/` is not `/admin`); case is kept.
//!
//! Refused ([`PathError`], answered with 400 by the SDK and the filters):
//! `%2F` and `%5C` (an encoded `/` or `\`: one upstream splits on it, another
//! does not — Envoy's `REJECT_REQUEST`), a raw `\` (Windows servers and some
//! frameworks read it as `/`), an invalid escape (`%zz`, `%4`), `%00`, raw
//! control bytes (0x00–0x1F, 0x7F), and a path that does not start with `/`.
//!
//! A path that is already canonical is returned borrowed: nothing is allocated.

use std::borrow::Cow;
use std::fmt;

/// Why a path has no canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The request has no path (a `CONNECT`).
    Missing,
    /// The path does not start with `/` (`*`, `http://…` after Envoy has split it).
    NotAbsolute,
    /// `%2F` or `%5C`: an encoded `/` or `\`.
    EncodedSlash,
    /// A raw `\`.
    Backslash,
    /// `%` not followed by two hex digits.
    InvalidEscape,
    /// A raw control byte, or `%00`.
    ControlByte,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl PathError {
    /// The `Display` text.
    pub(crate) fn message(self) -> &'static str {
        match self {
            PathError::Missing => "the request has no path",
            PathError::NotAbsolute => "the path does not start with `/`",
            PathError::EncodedSlash => "the path has an encoded `/` or `\\` (%2F, %5C)",
            PathError::Backslash => "the path has a `\\`",
            PathError::InvalidEscape => "the path has a `%` not followed by two hex digits",
            PathError::ControlByte => "the path has a control byte or %00",
        }
    }
}

impl std::error::Error for PathError {}

impl PathError {
    /// The `%RESPONSE_CODE_DETAILS%` of a request refused for this.
    pub fn details(self) -> &'static str {
        match self {
            PathError::Missing => "weir_path_missing",
            PathError::NotAbsolute => "weir_path_not_absolute",
            PathError::EncodedSlash => "weir_path_encoded_slash",
            PathError::Backslash => "weir_path_backslash",
            PathError::InvalidEscape => "weir_path_invalid_escape",
            PathError::ControlByte => "weir_path_control_byte",
        }
    }
}

const fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes allowed raw in a canonical path (RFC 3986 `pchar` and `/`), except `%` and `;`.
const fn plain(b: u8) -> bool {
    unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The path part of `raw` (before `?` or `#`).
fn path_part(raw: &[u8]) -> &[u8] {
    match raw.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => &raw[..i],
        None => raw,
    }
}

/// [`plain`] for every byte: one look-up per byte in the canonical check.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = plain(b as u8);
        b += 1;
    }
    table
};

/// True when `path` (no query) is its own canonical form: only plain bytes and kept
/// escapes (uppercase), and no empty, `.` or `..` segment (the last may be empty).
/// One pass (every request with a path rule or check runs it).
fn is_canonical(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let dots = |s: &[u8]| s == b"." || s == b"..";
    // Where the current segment starts.
    let mut segment = 1;
    let mut i = 1;
    while i < path.len() {
        match path[i] {
            b'/' => {
                let s = &path[segment..i];
                if s.is_empty() || dots(s) {
                    return false;
                }
                i += 1;
                segment = i;
            }
            b'%' => match (path.get(i + 1), path.get(i + 2)) {
                (
                    Some(&h @ (b'0'..=b'9' | b'A'..=b'F')),
                    Some(&l @ (b'0'..=b'9' | b'A'..=b'F')),
                ) => {
                    let c = (hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0);
                    if unreserved(c) || matches!(c, 0 | b'/' | b'\\') {
                        return false;
                    }
                    i += 3;
                }
                _ => return false,
            },
            b if PLAIN[usize::from(b)] => i += 1,
            _ => return false,
        }
    }
    !dots(&path[segment..])
}

/// The canonical form of the request path `raw` (`:path`, query allowed).
///
/// ```
/// use weir::path::{canonicalize, PathError};
/// assert_eq!(&*canonicalize(b"//x/../%61dmin;x/./users?q=1").unwrap(), b"/admin/users");
/// assert_eq!(canonicalize(b"/a%2fb"), Err(PathError::EncodedSlash));
/// ```
pub fn canonicalize(raw: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    let path = path_part(raw);
    if is_canonical(path) {
        return Ok(Cow::Borrowed(path));
    }
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Segments as canonical bytes; `;parameters` dropped, escapes normalized.
    let mut out: Vec<u8> = Vec::with_capacity(path.len() + 8);
    // Where each kept segment starts in `out` (its `/`).
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing = false;
    for segment in path[1..].split(|&b| b == b'/') {
        let start = out.len();
        out.push(b'/');
        let mut i = 0;
        let mut params = false;
        while i < segment.len() {
            let b = segment[i];
            i += 1;
            if params {
                // Still check what the upstream would trip on.
                match b {
                    b'\\' => return Err(PathError::Backslash),
                    0..=0x1F | 0x7F => return Err(PathError::ControlByte),
                    _ => continue,
                }
            }
            match b {
                b';' => params = true,
                b'%' => {
                    let (Some(h), Some(l)) = (
                        segment.get(i).copied().and_then(hex),
                        segment.get(i + 1).copied().and_then(hex),
                    ) else {
                        return Err(PathError::InvalidEscape);
                    };
                    i += 2;
                    let c = h << 4 | l;
                    match c {
                        b'/' | b'\\' => return Err(PathError::EncodedSlash),
                        0 => return Err(PathError::ControlByte),
                        c if unreserved(c) => out.push(c),
                        c => out.extend_from_slice(&[
                            b'%',
                            HEX[usize::from(c >> 4)],
                            HEX[usize::from(c & 15)],
                        ]),
                    }
                }
                b'\\' => return Err(PathError::Backslash),
                0..=0x1F | 0x7F => return Err(PathError::ControlByte),
                b if plain(b) => out.push(b),
                b => out.extend_from_slice(&[
                    b'%',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]),
            }
        }
        match &out[start + 1..] {
            b"" | b"." => {
                out.truncate(start);
                trailing = true;
            }
            b".." => {
                out.truncate(start);
                if let Some(previous) = starts.pop() {
                    out.truncate(previous);
                }
                trailing = true;
            }
            _ => {
                starts.push(start);
                trailing = false;
            }
        }
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Ok(Cow::Owned(out))
}

/// The canonical form of a host (`:authority`): ASCII lowercase, without a
/// `:port` and without one trailing `.` (`API.example.com.:443` is
/// `api.example.com`). IPv6 literals keep their brackets.
pub fn canonical_host(host: &[u8]) -> Cow<'_, [u8]> {
    let host = strip_port(host);
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub(crate) fn strip_port(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(i) if host[i + 1..].iter().all(u8::is_ascii_digit) && !host[..i].ends_with(b":") => {
            if host.first() == Some(&b'[') && host[..i].last() != Some(&b']') {
                host
            } else {
                &host[..i]
            }
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: &str) -> Result<String, PathError> {
        canonicalize(raw.as_bytes()).map(|p| String::from_utf8(p.into_owned()).unwrap())
    }

    #[test]
    fn spellings_of_one_path_are_one_path() {
        for raw in [
            "/admin/users",
            "//admin/users",
            "/admin//users",
            "///admin///users",
            "/./admin/users",
            "/x/../admin/users",
            "/x/y/../../admin/users",
            "/../admin/users",
            "/../../admin/./users",
            "/%61dmin/users",
            "/%61%64%6D%69%6E/users",
            "/admin/%75sers",
            "/%2e/admin/users",
            "/x/%2e%2e/admin/users",
            "/x/%2E%2E/admin/users",
            "/x/.%2e/admin/users",
            "/admin;jsessionid=1/users",
            "/x/..;/admin/users",
            "/admin/users?x=/../y",
            "/admin/users#frag",
            "/admin/users/.",
        ] {
            let want = if raw.ends_with("/.") {
                "/admin/users/"
            } else {
                "/admin/users"
            };
            assert_eq!(c(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn roots_trailing_slashes_and_escapes() {
        assert_eq!(c("/").as_deref(), Ok("/"));
        assert_eq!(c("//").as_deref(), Ok("/"));
        assert_eq!(c("/..").as_deref(), Ok("/"));
        assert_eq!(c("/a/..").as_deref(), Ok("/"));
        assert_eq!(c("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(c("/a/").as_deref(), Ok("/a/"));
        assert_eq!(c("/a//").as_deref(), Ok("/a/"));
        assert_eq!(c("/a%c3%a9").as_deref(), Ok("/a%C3%A9"));
        assert_eq!(
            canonicalize("/aé".as_bytes()).unwrap().as_ref(),
            b"/a%C3%A9"
        );
        assert_eq!(c("/a b").as_deref(), Ok("/a%20b"));
        assert_eq!(c("/a%3Bb").as_deref(), Ok("/a%3Bb"));
        assert_eq!(c("/a%25").as_deref(), Ok("/a%25"));
        assert_eq!(c("/A").as_deref(), Ok("/A"));
        assert_eq!(c("/a.../b").as_deref(), Ok("/a.../b"));
        assert_eq!(c("/...").as_deref(), Ok("/..."));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(c("/a%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(c("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(c("/a%5cb"), Err(PathError::EncodedSlash));
        assert_eq!(c("/a\\b"), Err(PathError::Backslash));
        assert_eq!(c("/a;x\\b"), Err(PathError::Backslash));
        assert_eq!(c("/a%zz"), Err(PathError::InvalidEscape));
        assert_eq!(c("/a%4"), Err(PathError::InvalidEscape));
        assert_eq!(c("/a%"), Err(PathError::InvalidEscape));
        assert_eq!(c("/a%00"), Err(PathError::ControlByte));
        assert_eq!(c("/a\0"), Err(PathError::ControlByte));
        assert_eq!(c("/a\tb"), Err(PathError::ControlByte));
        assert_eq!(c("/a\x7f"), Err(PathError::ControlByte));
        assert_eq!(c("*"), Err(PathError::NotAbsolute));
        assert_eq!(c(""), Err(PathError::NotAbsolute));
        assert_eq!(c("admin"), Err(PathError::NotAbsolute));
        // The query is not part of the path: anything goes there.
        assert_eq!(c("/a?%zz\\").as_deref(), Ok("/a"));
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        assert!(matches!(
            canonicalize(b"/admin/users?x=1"),
            Ok(Cow::Borrowed(b"/admin/users"))
        ));
        assert!(matches!(canonicalize(b"/a/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonicalize(b"/a%C3%A9"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonicalize(b"/a//b"), Ok(Cow::Owned(_))));
        assert!(matches!(canonicalize(b"/a%c3"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn hosts_compare_canonically() {
        assert_eq!(
            &*canonical_host(b"API.Example.com.:443"),
            b"api.example.com"
        );
        assert_eq!(&*canonical_host(b"api.example.com."), b"api.example.com");
        assert_eq!(&*canonical_host(b"api.example.com"), b"api.example.com");
        assert_eq!(&*canonical_host(b"[::1]:80"), b"[::1]");
        assert_eq!(&*canonical_host(b"a.test:"), b"a.test");
        assert_eq!(strip_port(b"::1"), b"::1");
    }

    /// The canonical check as it was written before its one-pass form.
    fn is_canonical_reference(path: &[u8]) -> bool {
        if path.first() != Some(&b'/') {
            return false;
        }
        let mut i = 0;
        while i < path.len() {
            match path[i] {
                b'%' => match (path.get(i + 1), path.get(i + 2)) {
                    (
                        Some(&h @ (b'0'..=b'9' | b'A'..=b'F')),
                        Some(&l @ (b'0'..=b'9' | b'A'..=b'F')),
                    ) => {
                        let c = (hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0);
                        if unreserved(c) || matches!(c, 0 | b'/' | b'\\') {
                            return false;
                        }
                        i += 3;
                    }
                    _ => return false,
                },
                b if plain(b) => i += 1,
                _ => return false,
            }
        }
        let mut segments = path[1..].split(|&b| b == b'/');
        let last = segments.next_back();
        segments.all(|s| !s.is_empty() && s != b"." && s != b"..")
            && last.is_none_or(|s| s != b"." && s != b"..")
    }

    proptest::proptest! {
        #[test]
        fn the_one_pass_check_agrees_with_the_reference(raw in proptest::collection::vec(
            proptest::sample::select(b"/.%2eEfF5cC;a?\\\x00 \xc3~".to_vec()), 0..24)) {
            proptest::prop_assert_eq!(is_canonical(&raw), is_canonical_reference(&raw));
            let mut rooted = raw.clone();
            rooted.insert(0, b'/');
            proptest::prop_assert_eq!(is_canonical(&rooted), is_canonical_reference(&rooted));
        }

        #[test]
        fn canonicalizing_is_idempotent(raw in proptest::collection::vec(
            proptest::sample::select(b"/.%2eEfF5cC;a?\\\x00 \xc3".to_vec()), 0..24)) {
            let mut raw = raw;
            raw.insert(0, b'/');
            if let Ok(once) = canonicalize(&raw) {
                let twice = canonicalize(&once).expect("a canonical path is canonical");
                proptest::prop_assert_eq!(&*once, &*twice);
                proptest::prop_assert!(is_canonical(&once));
            }
        }

        #[test]
        fn any_bytes_canonicalize_or_refuse(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Ok(p) = canonicalize(&raw) {
                proptest::prop_assert!(p.starts_with(b"/"));
                proptest::prop_assert!(!p.windows(2).any(|w| w == b"//"));
            }
        }
    }
}
