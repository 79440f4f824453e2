//! The configuration reader: a serde `Deserializer` over JSON bytes made for this one job.
//!
//! It replaces `serde_json` + `serde_path_to_error` in every module (about 30 KB
//! of wasm, and the ~17 KB of float formatting that serde's `Unexpected` pulls in):
//! it tracks the path of the value being read (`rules[2].value`) and the byte
//! offset where a problem was found, and words its messages as `serde_json` does
//! (`invalid type: integer `5`, expected a string`, `expected `:``, …), so an
//! error still names the field, the line and the column. Numbers are never
//! converted to floating point unless the configuration type asks for a float.
//! Nothing here panics on any input: nesting is bounded (128 levels, as
//! `serde_json`), and every read is checked.

use std::borrow::Cow;
use std::fmt::{self, Display, Write as _};

use serde::de::{self, DeserializeSeed, Expected, Unexpected, Visitor};

/// Lowercase hex digits, as `{:x}` writes them.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Nesting deeper than this is refused (as `serde_json` does).
const DEPTH: u16 = 128;

/// Why a configuration could not be read: the message, where (a byte offset
/// into the whole input) and which field (the path from the top-level value).
/// Boxed: every generic `Result<T, Error>` the serde glue moves around stays one word.
#[derive(Debug)]
pub(crate) struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    message: String,
    offset: Option<usize>,
    path: Option<String>,
}

type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The one place an error is made (out of line: every caller is a cold path).
    #[cold]
    #[inline(never)]
    fn new(message: String, offset: Option<usize>) -> Self {
        Error(Box::new(Inner {
            message,
            offset,
            path: None,
        }))
    }

    fn at(message: &str, offset: usize) -> Self {
        Error::new(message.to_owned(), Some(offset))
    }

    /// The path of the field (`a.b[1]`), or `None` for the top-level value.
    pub(crate) fn path(&self) -> Option<&str> {
        self.0.path.as_deref()
    }

    /// The message with ` at line L column C` (counted in `whole`) when the offset is known.
    pub(crate) fn located(&self, whole: &[u8]) -> String {
        let Some(offset) = self.0.offset else {
            return self.0.message.clone();
        };
        let before = whole.get(..offset).unwrap_or(whole);
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
        let mut m = self.0.message.clone();
        m.push_str(" at line ");
        decimal(&mut m, line as u64);
        m.push_str(" column ");
        decimal(&mut m, column as u64);
        m
    }

    /// Puts the error under `prefix` (its path, and the error's own below it).
    pub(crate) fn under(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            let mut path = String::from(prefix);
            if let Some(p) = self.0.path.take() {
                if !p.starts_with('[') {
                    path.push('.');
                }
                path.push_str(&p);
            }
            self.0.path = Some(path);
        }
        self
    }
}

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        // `write!`, not `to_string`: its `expect` links core's padding code.
        let mut m = String::new();
        let _ = write!(m, "{msg}");
        Error::new(m, None)
    }

    // serde's defaults format the name with `{}`; same text, by hand.
    fn missing_field(field: &'static str) -> Self {
        named("missing field `", field)
    }

    fn duplicate_field(field: &'static str) -> Self {
        named("duplicate field `", field)
    }

    // serde's defaults format `Unexpected` with its `Display`, which links
    // core's float formatting (~17 KB) for `Unexpected::Float` alone.
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let mut m = String::from("invalid type: ");
        unexpected(&mut m, &unexp);
        expected(&mut m, exp);
        Error::new(m, None)
    }

    // serde's defaults format the names with `OneOf`'s `Display`; same text, by hand.
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        unknown("field", field, expected)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        unknown("variant", variant, expected)
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let mut m = String::from("invalid value: ");
        unexpected(&mut m, &unexp);
        expected(&mut m, exp);
        Error::new(m, None)
    }
}

/// `, expected <exp>`: the one place a message formats an `Expected`.
#[inline(never)]
fn expected(m: &mut String, exp: &dyn Expected) {
    let _ = write!(m, ", expected {exp}");
}

/// `<what><name>``.
#[cold]
#[inline(never)]
fn named(what: &str, name: &str) -> Error {
    let mut m = String::from(what);
    m.push_str(name);
    m.push('`');
    Error::new(m, None)
}

/// `unknown field `x`, expected one of `a`, `b``, worded as serde words it.
#[cold]
#[inline(never)]
fn unknown(what: &str, name: &str, expected: &[&str]) -> Error {
    let mut m = String::from("unknown ");
    m.push_str(what);
    m.push_str(" `");
    m.push_str(name);
    m.push_str("`, ");
    match expected {
        [] => {
            m.push_str("there are no ");
            m.push_str(what);
            m.push('s');
        }
        [one] => {
            m.push_str("expected `");
            m.push_str(one);
            m.push('`');
        }
        [a, b] => {
            m.push_str("expected `");
            m.push_str(a);
            m.push_str("` or `");
            m.push_str(b);
            m.push('`');
        }
        names => {
            m.push_str("expected one of ");
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    m.push_str(", ");
                }
                m.push('`');
                m.push_str(n);
                m.push('`');
            }
        }
    }
    Error::new(m, None)
}

/// `Unexpected`'s text as serde_json words it, floats without core's float formatting.
fn unexpected(out: &mut String, u: &Unexpected<'_>) {
    let (what, text) = match *u {
        Unexpected::Bool(b) => ("boolean `", if b { "true" } else { "false" }),
        Unexpected::Unsigned(n) => {
            out.push_str("integer `");
            decimal(out, n);
            ("", "`")
        }
        Unexpected::Signed(n) => {
            out.push_str(if n < 0 { "integer `-" } else { "integer `" });
            decimal(out, n.unsigned_abs());
            ("", "`")
        }
        Unexpected::Float(f) => {
            out.push_str("floating point `");
            float(out, f);
            ("", "`")
        }
        Unexpected::Char(c) => {
            out.push_str("character `");
            out.push(c);
            ("", "`")
        }
        Unexpected::Str(s) => {
            out.push_str("string ");
            quoted(out, s);
            return;
        }
        Unexpected::Other(s) => ("", s),
        Unexpected::Bytes(_) => ("byte array", ""),
        Unexpected::Unit => ("null", ""),
        Unexpected::Option => ("Option value", ""),
        Unexpected::NewtypeStruct => ("newtype struct", ""),
        Unexpected::Seq => ("sequence", ""),
        Unexpected::Map => ("map", ""),
        Unexpected::Enum => ("enum", ""),
        Unexpected::UnitVariant => ("unit variant", ""),
        Unexpected::NewtypeVariant => ("newtype variant", ""),
        Unexpected::TupleVariant => ("tuple variant", ""),
        Unexpected::StructVariant => ("struct variant", ""),
    };
    out.push_str(what);
    out.push_str(text);
    if what.ends_with('`') {
        out.push('`');
    }
}

/// `n` in decimal, without core's integer formatting (`u64`'s and `i64`'s
/// `Display` are otherwise linked for this alone).
pub(crate) fn decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// `s` in double quotes as `{:?}` writes it for printable text, without core's
/// Unicode printability tables (about 3 KB): quotes, backslashes and control
/// characters are escaped, everything else is written as it is.
pub(crate) fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            // Control characters are below U+00A0: two hex digits at most.
            c if c.is_control() => {
                let n = c as u32;
                out.push_str("\\u{");
                if n >= 16 {
                    out.push(HEX[(n >> 4) as usize & 15] as char);
                }
                out.push(HEX[n as usize & 15] as char);
                out.push('}');
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `f` to six decimals at most (`1.5`, `-2.0`), with integer arithmetic only.
fn float(out: &mut String, f: f64) {
    let scaled = f * 1e6;
    // NaN too: it is not below anything.
    if scaled.abs().partial_cmp(&9e15) != Some(std::cmp::Ordering::Less) {
        out.push_str(if f.is_nan() {
            "NaN"
        } else {
            "a number out of range"
        });
        return;
    }
    let scaled = (scaled + if f < 0.0 { -0.5 } else { 0.5 }) as i64;
    if scaled < 0 || (scaled == 0 && f.is_sign_negative()) {
        out.push('-');
    }
    let n = scaled.unsigned_abs();
    decimal(out, n / 1_000_000);
    out.push('.');
    // Six digits, trailing zeros dropped but one.
    let mut frac = String::new();
    decimal(&mut frac, 1_000_000 + n % 1_000_000);
    let frac = frac.get(1..).unwrap_or_default().trim_end_matches('0');
    out.push_str(if frac.is_empty() { "0" } else { frac });
}

/// One step of the path to the value being read.
enum Seg<'de> {
    Key(Cow<'de, str>),
    Index(usize),
}

/// A number as written: its text, and its value when it is an integer that fits.
enum Number<'de> {
    Unsigned(u64),
    Signed(i64),
    /// A fraction or exponent, or an integer too large for 64 bits.
    Other {
        text: &'de str,
        float: bool,
    },
}

/// The deserializer: `input` is the whole configuration; reading starts at `index`.
pub(crate) struct Deserializer<'de> {
    input: &'de [u8],
    index: usize,
    depth: u16,
    path: Vec<Seg<'de>>,
    /// An object made of entries found elsewhere in `input` (a rule's fields
    /// over the global ones): the next `deserialize_map` reads it instead of `{`.
    merged: Option<Vec<Entry<'de>>>,
}

/// One entry of an object: its key, where the key ends and where its value starts.
#[derive(Clone, Debug)]
pub(crate) struct Entry<'de> {
    pub(crate) key: Cow<'de, str>,
    key_end: usize,
    value: usize,
}

impl<'de> Deserializer<'de> {
    /// Reads the value starting at byte `start` of `input`; offsets stay relative to `input`.
    pub(crate) fn new(input: &'de [u8], start: usize) -> Self {
        Deserializer {
            input,
            index: start,
            depth: 0,
            path: Vec::new(),
            merged: None,
        }
    }

    /// Fails unless only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.syntax("trailing characters")),
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.input.get(self.index) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.index += 1;
        }
        None
    }

    /// An error at the byte under the cursor (counted as read, as serde_json does).
    fn syntax(&self, message: &'static str) -> Error {
        Error::at(message, (self.index + 1).min(self.input.len()))
    }

    fn eof(&self, message: &'static str) -> Error {
        Error::at(message, self.input.len())
    }

    /// Gives `e` the current offset and path, unless it already has them.
    #[cold]
    #[inline(never)]
    fn locate(&self, mut e: Error) -> Error {
        if e.0.offset.is_none() {
            e.0.offset = Some(self.index);
        }
        if e.0.path.is_none() && !self.path.is_empty() {
            let mut p = String::new();
            for seg in &self.path {
                match seg {
                    Seg::Index(i) => {
                        p.push('[');
                        decimal(&mut p, *i as u64);
                        p.push(']');
                    }
                    Seg::Key(k) => {
                        if !p.is_empty() {
                            p.push('.');
                        }
                        p.push_str(k);
                    }
                }
            }
            e.0.path = Some(p);
        }
        e
    }

    fn fix<T>(&self, r: Result<T>) -> Result<T> {
        r.map_err(|e| self.here(e))
    }

    /// `e`, located at the cursor unless it already has a place.
    #[cold]
    #[inline(never)]
    fn here(&self, mut e: Error) -> Error {
        if e.0.offset.is_none() {
            e.0.offset = Some(self.index);
        }
        e
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth >= DEPTH {
            return Err(self.syntax("recursion limit exceeded"));
        }
        self.index += 1;
        Ok(())
    }

    /// Consumes `word` (the rest of `true`, `false`, `null`).
    fn ident(&mut self, word: &[u8]) -> Result<()> {
        for &w in word {
            match self.input.get(self.index) {
                Some(&b) if b == w => self.index += 1,
                Some(_) => {
                    self.index += 1;
                    return Err(Error::at("expected ident", self.index));
                }
                None => return Err(self.eof("EOF while parsing a value")),
            }
        }
        Ok(())
    }

    /// A string; the cursor is on its opening quote.
    fn string(&mut self) -> Result<Cow<'de, str>> {
        self.index += 1;
        let mut owned: Option<String> = None;
        let mut run = self.index;
        loop {
            let Some(&b) = self.input.get(self.index) else {
                return Err(self.eof("EOF while parsing a string"));
            };
            match b {
                b'"' | b'\\' => {
                    let part = self.utf8(run, self.index)?;
                    self.index += 1;
                    if b == b'"' {
                        return Ok(match owned {
                            None => Cow::Borrowed(part),
                            Some(mut s) => {
                                s.push_str(part);
                                Cow::Owned(s)
                            }
                        });
                    }
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(part);
                    self.escape(s)?;
                    run = self.index;
                }
                0..=0x1f => {
                    return Err(self.syntax(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ))
                }
                _ => self.index += 1,
            }
        }
    }

    fn utf8(&self, from: usize, to: usize) -> Result<&'de str> {
        let bytes = self.input.get(from..to).unwrap_or_default();
        crate::utf8::str(bytes)
            .map_err(|valid| Error::at("invalid unicode code point", (from + valid + 1).min(to)))
    }

    /// One escape after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<()> {
        let Some(&b) = self.input.get(self.index) else {
            return Err(self.eof("EOF while parsing a string"));
        };
        self.index += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\x08',
            b'f' => '\x0c',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    for want in [b'\\', b'u'] {
                        match self.input.get(self.index) {
                            Some(&b) => {
                                self.index += 1;
                                if b != want {
                                    return Err(Error::at(
                                        "unexpected end of hex escape",
                                        self.index,
                                    ));
                                }
                            }
                            None => return Err(self.eof("EOF while parsing a string")),
                        }
                    }
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Error::at(
                            "lone leading surrogate in hex escape",
                            self.index,
                        ));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err(Error::at(
                        "lone leading surrogate in hex escape",
                        self.index,
                    ));
                } else {
                    hi
                };
                char::from_u32(code)
                    .ok_or_else(|| Error::at("invalid unicode code point", self.index))?
            }
            _ => return Err(Error::at("invalid escape", self.index)),
        };
        out.push(c);
        Ok(())
    }

    /// Four hex digits, read at once (an error is located after them, as serde_json does).
    fn hex4(&mut self) -> Result<u32> {
        let Some(digits) = self.input.get(self.index..self.index + 4) else {
            self.index = self.input.len();
            return Err(self.eof("EOF while parsing a string"));
        };
        self.index += 4;
        digits
            .iter()
            .try_fold(0, |n, &b| match (b as char).to_digit(16) {
                Some(d) => Ok(n * 16 + d),
                None => Err(Error::at("invalid escape", self.index)),
            })
    }

    /// A number; the cursor is on its first byte (`-` or a digit).
    fn number(&mut self) -> Result<Number<'de>> {
        let start = self.index;
        let negative = self.input.get(start) == Some(&b'-');
        self.index += usize::from(negative);
        let int = self.index;
        let value = self.digits()?;
        if self.index - int > 1 && self.input.get(int) == Some(&b'0') {
            return Err(Error::at("invalid number", int + 2));
        }
        let mut float = false;
        if self.input.get(self.index) == Some(&b'.') {
            self.index += 1;
            self.digits()?;
            float = true;
        }
        if matches!(self.input.get(self.index), Some(b'e' | b'E')) {
            self.index += 1;
            if matches!(self.input.get(self.index), Some(b'+' | b'-')) {
                self.index += 1;
            }
            self.digits()?;
            float = true;
        }
        // ASCII only: the sign, digits, `.` and exponent just read.
        let text = self.input.get(start..self.index).unwrap_or_default();
        let text = crate::utf8::str(text).unwrap_or_default();
        Ok(match value.filter(|_| !float) {
            Some(n) if !negative => Number::Unsigned(n),
            // serde_json reads `-0` as the float -0.0.
            Some(0) => Number::Other {
                text: "-0.0",
                float: true,
            },
            Some(n) if n <= 1 << 63 => Number::Signed((n as i64).wrapping_neg()),
            _ => Number::Other { text, float },
        })
    }

    /// One or more digits, and their value when it fits in 64 bits.
    fn digits(&mut self) -> Result<Option<u64>> {
        let from = self.index;
        let mut value = Some(0u64);
        while let Some(&b) = self.input.get(self.index) {
            if !b.is_ascii_digit() {
                break;
            }
            value = value.and_then(|n| n.checked_mul(10)?.checked_add(u64::from(b - b'0')));
            self.index += 1;
        }
        if self.index == from {
            return Err(match self.input.get(self.index) {
                Some(_) => self.syntax("invalid number"),
                None => self.eof("EOF while parsing a value"),
            });
        }
        Ok(value)
    }

    /// An object's entries (`object`) or a list's items (as entries without
    /// key), their values skipped (checked as JSON, not read); or (`strings`)
    /// a list's items as strings.
    fn structure(
        &mut self,
        object: bool,
        strings: Option<&mut Vec<Vec<u8>>>,
    ) -> Result<Vec<Entry<'de>>> {
        let (open, what) = if object {
            (b'{', "a JSON object")
        } else {
            (b'[', "a sequence")
        };
        if self.peek() != Some(open) {
            return Err(self.invalid_type(&what));
        }
        let mut out = Vec::new();
        self.walk(Record {
            entries: Some(&mut out),
            strings,
        })?;
        Ok(out)
    }

    /// Skips one value (checked as JSON).
    fn skip(&mut self) -> Result<()> {
        self.walk(Record {
            entries: None,
            strings: None,
        })
    }

    /// Skips one value, recording an object's entries or a list's items in `record`.
    fn walk(&mut self, mut record: Record<'_, 'de>) -> Result<()> {
        let object = match self.peek() {
            Some(b'"') => return self.string().map(drop),
            Some(b'{') => true,
            Some(b'[') => false,
            _ => return self.scalar().map(drop),
        };
        self.enter()?;
        let mut first = true;
        let mut count = 0;
        loop {
            let more = if object {
                self.next_entry(&mut first)?
            } else {
                self.next_item(&mut first)?
            };
            if !more {
                break;
            }
            let (key, key_end) = if object {
                let key = self.string()?;
                let end = self.index;
                self.colon()?;
                (key, end)
            } else {
                (Cow::Borrowed(""), 0)
            };
            self.peek();
            if let Some(entries) = record.entries.as_deref_mut() {
                entries.push(Entry {
                    key,
                    key_end,
                    value: self.index,
                });
            }
            match record.strings.as_deref_mut() {
                Some(strings) => {
                    self.push(Seg::Index(count));
                    if self.peek() != Some(b'"') {
                        return Err(self.invalid_type(&"a string"));
                    }
                    strings.push(self.string()?.into_owned().into_bytes());
                    self.pop();
                }
                None => self.skip()?,
            }
            count += 1;
        }
        self.close(if object { b'}' } else { b']' })
    }

    /// `true`, `false`, `null` or a number, as what serde_json reports for it.
    fn scalar(&mut self) -> Result<Scalar<'de>> {
        match self.peek() {
            Some(b't') => {
                self.index += 1;
                self.ident(b"rue").map(|()| Scalar::Bool(true))
            }
            Some(b'f') => {
                self.index += 1;
                self.ident(b"alse").map(|()| Scalar::Bool(false))
            }
            Some(b'n') => {
                self.index += 1;
                self.ident(b"ull").map(|()| Scalar::Null)
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(Scalar::Number),
            Some(_) => Err(self.syntax("expected value")),
            None => Err(self.eof("EOF while parsing a value")),
        }
    }

    /// Before an object's key: `true` when one follows (after `{` or `,`), `false` at `}`.
    fn next_entry(&mut self, first: &mut bool) -> Result<bool> {
        self.next(first, true)
    }

    /// Before a list's item: `true` when one follows, `false` at `]`.
    fn next_item(&mut self, first: &mut bool) -> Result<bool> {
        self.next(first, false)
    }

    /// `next_entry` (`object`) or `next_item`: one function for both.
    #[inline(never)]
    fn next(&mut self, first: &mut bool, object: bool) -> Result<bool> {
        let close = if object { b'}' } else { b']' };
        match self.peek() {
            Some(b) if b == close => return Ok(false),
            Some(b',') if !*first => {
                self.index += 1;
                if self.peek() == Some(close) {
                    return Err(self.syntax("trailing comma"));
                }
            }
            Some(_) if *first => {}
            Some(_) if object => return Err(self.syntax("expected `,` or `}`")),
            Some(_) => return Err(self.syntax("expected `,` or `]`")),
            None => return Err(self.eof(Self::unclosed(close))),
        }
        *first = false;
        if !object {
            return Ok(true);
        }
        match self.peek() {
            Some(b'"') => Ok(true),
            Some(_) => Err(self.syntax("key must be a string")),
            None => Err(self.eof("EOF while parsing a value")),
        }
    }

    /// The end-of-input message inside an object (`close` is `}`) or a list.
    fn unclosed(close: u8) -> &'static str {
        if close == b'}' {
            "EOF while parsing an object"
        } else {
            "EOF while parsing a list"
        }
    }

    fn colon(&mut self) -> Result<()> {
        match self.peek() {
            Some(b':') => {
                self.index += 1;
                Ok(())
            }
            Some(_) => Err(self.syntax("expected `:`")),
            None => Err(self.eof("EOF while parsing an object")),
        }
    }

    /// The closing `}` or `]` of what `enter` opened.
    fn close(&mut self, end: u8) -> Result<()> {
        self.depth -= 1;
        match self.peek() {
            Some(b) if b == end => {
                self.index += 1;
                Ok(())
            }
            Some(b',') => Err(self.syntax("trailing comma")),
            Some(_) => Err(self.syntax("trailing characters")),
            None => Err(self.eof(Self::unclosed(end))),
        }
    }

    /// Ends what `enter` opened after its visitor ran: an error is located after
    /// the closing bracket when there is one, as serde_json locates it.
    fn closed<T>(&mut self, r: Result<T>, end: u8) -> Result<T> {
        match r {
            Ok(v) => self.close(end).map(|()| v),
            Err(e) => Err(self.close_after(e, end)),
        }
    }

    #[cold]
    #[inline(never)]
    fn close_after(&mut self, e: Error, end: u8) -> Error {
        let _ = self.close(end);
        self.here(e)
    }

    /// The error for a value that is not what `exp` wanted, located after it
    /// (before it for a list or an object, which are not read).
    fn invalid_type(&mut self, exp: &dyn Expected) -> Error {
        let mut m = String::from("invalid type: ");
        let start = self.index;
        let offset = match self.peek() {
            Some(b'[') => {
                m.push_str("sequence");
                self.index
            }
            Some(b'{') => {
                m.push_str("map");
                self.index
            }
            Some(b'"') => match self.string() {
                Ok(s) => {
                    m.push_str("string ");
                    quoted(&mut m, &s);
                    self.index
                }
                Err(e) => return e,
            },
            _ => match self.scalar() {
                Ok(s) => {
                    let text = self.input.get(start..self.index).unwrap_or_default();
                    s.describe(&mut m, text);
                    self.index
                }
                Err(e) => return e,
            },
        };
        expected(&mut m, exp);
        Error::new(m, Some(offset))
    }

    /// An integer for an integer visitor; a float or huge number is refused by its text.
    fn integer<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            _ => return Err(self.invalid_type(&visitor)),
        }
        let r = match self.number()? {
            Number::Unsigned(n) => visitor.visit_u64(n),
            Number::Signed(n) => visitor.visit_i64(n),
            Number::Other { text, float } => return Err(self.not_integer(text, float, &visitor)),
        };
        self.fix(r)
    }

    /// A fraction or an integer too large, given for an integer: refused as written.
    #[cold]
    #[inline(never)]
    fn not_integer(&self, text: &str, float: bool, exp: &dyn Expected) -> Error {
        let kind = if float {
            "type: floating point"
        } else {
            "value: integer"
        };
        let mut m = String::from("invalid ");
        m.push_str(kind);
        m.push_str(" `");
        m.push_str(text);
        m.push('`');
        expected(&mut m, exp);
        Error::new(m, Some(self.index))
    }

    /// A number for a float visitor (the only path that parses floating point).
    fn float<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            _ => return Err(self.invalid_type(&visitor)),
        }
        let r = match self.number()? {
            Number::Unsigned(n) => visitor.visit_u64(n),
            Number::Signed(n) => visitor.visit_i64(n),
            Number::Other { text, .. } => visitor.visit_f64(self.parse_float(text)?),
        };
        self.fix(r)
    }

    fn parse_float(&self, text: &str) -> Result<f64> {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(Error::at("number out of range", self.index)),
        }
    }

    /// Reads a value under `key`, naming it in the error.
    fn value_under<T>(
        &mut self,
        seg: Seg<'de>,
        read: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.push(seg);
        match read(self) {
            Ok(v) => {
                self.pop();
                Ok(v)
            }
            Err(e) => Err(self.pop_locating(e)),
        }
    }

    #[inline(never)]
    fn push(&mut self, seg: Seg<'de>) {
        self.path.push(seg);
    }

    #[inline(never)]
    fn pop(&mut self) {
        self.path.pop();
    }

    #[cold]
    #[inline(never)]
    fn pop_locating(&mut self, e: Error) -> Error {
        let e = self.locate(e);
        self.path.pop();
        e
    }
}

/// What [`Deserializer::walk`] records of the object or list it skips.
struct Record<'a, 'de> {
    entries: Option<&'a mut Vec<Entry<'de>>>,
    strings: Option<&'a mut Vec<Vec<u8>>>,
}

/// A scalar as serde_json reports it in an `invalid type` message.
enum Scalar<'de> {
    Bool(bool),
    Null,
    Number(Number<'de>),
}

impl Scalar<'_> {
    /// Its description; `written` is its text in the input (JSON writes an
    /// integer as its `Display` does: no `+`, no leading zero; `-0` is a float).
    fn describe(&self, out: &mut String, written: &[u8]) {
        let (kind, text) = match self {
            Scalar::Bool(true) => ("boolean", "true"),
            Scalar::Bool(false) => ("boolean", "false"),
            Scalar::Null => return out.push_str("null"),
            Scalar::Number(Number::Other { text, float: true }) => ("floating point", *text),
            Scalar::Number(_) => ("integer", crate::utf8::str(written).unwrap_or_default()),
        };
        out.push_str(kind);
        out.push_str(" `");
        out.push_str(text);
        out.push('`');
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.merged.is_some() {
            return self.deserialize_map(visitor);
        }
        let r = match self.peek() {
            Some(b'"') => match self.string()? {
                Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
                Cow::Owned(s) => visitor.visit_string(s),
            },
            Some(b'[') => return self.deserialize_seq(visitor),
            Some(b'{') => return self.deserialize_map(visitor),
            _ => match self.scalar()? {
                Scalar::Bool(b) => visitor.visit_bool(b),
                Scalar::Null => visitor.visit_unit(),
                Scalar::Number(Number::Unsigned(n)) => visitor.visit_u64(n),
                Scalar::Number(Number::Signed(n)) => visitor.visit_i64(n),
                Scalar::Number(Number::Other { text, .. }) => {
                    visitor.visit_f64(self.parse_float(text)?)
                }
            },
        };
        self.fix(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let b = match self.peek() {
            Some(b't') => true,
            Some(b'f') => false,
            _ => return Err(self.invalid_type(&visitor)),
        };
        self.scalar()?;
        let r = visitor.visit_bool(b);
        self.fix(r)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.integer(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.float(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.float(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek() != Some(b'"') {
            return Err(self.invalid_type(&visitor));
        }
        let r = match self.string()? {
            Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
            Cow::Owned(s) => visitor.visit_string(s),
        };
        self.fix(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'"') => {
                let r = match self.string()? {
                    Cow::Borrowed(s) => visitor.visit_borrowed_bytes(s.as_bytes()),
                    Cow::Owned(s) => visitor.visit_byte_buf(s.into_bytes()),
                };
                self.fix(r)
            }
            _ => self.deserialize_seq(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek() == Some(b'n') {
            self.scalar()?;
            let r = visitor.visit_none();
            return self.fix(r);
        }
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek() != Some(b'n') {
            return Err(self.invalid_type(&visitor));
        }
        self.scalar()?;
        let r = visitor.visit_unit();
        self.fix(r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek() != Some(b'[') {
            return Err(self.invalid_type(&visitor));
        }
        self.enter()?;
        let r = visitor.visit_seq(Seq {
            de: &mut *self,
            first: true,
            count: 0,
        });
        self.closed(r, b']')
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let list = self.merged.take();
        let merged = list.is_some();
        if !merged {
            if self.peek() != Some(b'{') {
                return Err(self.invalid_type(&visitor));
            }
            self.enter()?;
        }
        let r = visitor.visit_map(Map {
            de: &mut *self,
            first: true,
            key: None,
            list: list.map(Vec::into_iter),
            value: 0,
        });
        if merged {
            return r;
        }
        self.closed(r, b'}')
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek() {
            Some(b'"') => {
                let variant = self.string()?;
                let r = visitor.visit_enum(UnitVariant(variant));
                self.fix(r)
            }
            Some(b'{') => {
                self.enter()?;
                let mut first = true;
                if !self.next_entry(&mut first)? {
                    return Err(self.syntax("expected value"));
                }
                let variant = self.string()?;
                self.colon()?;
                let r = visitor.visit_enum(Variant {
                    de: &mut *self,
                    variant,
                });
                self.closed(r, b'}')
            }
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip()?;
        visitor.visit_unit()
    }
}

struct Seq<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
    count: usize,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if !self.de.next_item(&mut self.first)? {
            return Ok(None);
        }
        let at = Seg::Index(self.count);
        self.count += 1;
        self.de.value_under(at, |de| seed.deserialize(de)).map(Some)
    }
}

/// An object being read: from the input, or (`list`) from entries found elsewhere.
struct Map<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
    key: Option<Cow<'de, str>>,
    list: Option<std::vec::IntoIter<Entry<'de>>>,
    /// Where the value of a listed entry starts.
    value: usize,
}

impl<'de> Map<'_, 'de> {
    /// The next key, the cursor after it.
    fn next_key(&mut self) -> Result<Option<Cow<'de, str>>> {
        match &mut self.list {
            Some(list) => Ok(list.next().map(|e| {
                self.de.index = e.key_end;
                self.value = e.value;
                e.key
            })),
            None => match self.de.next_entry(&mut self.first)? {
                true => self.de.string().map(Some),
                false => Ok(None),
            },
        }
    }

    /// The key of the value about to be read, the cursor on that value.
    fn before_value(&mut self) -> Result<Cow<'de, str>> {
        match self.list {
            Some(_) => self.de.index = self.value,
            None => self.de.colon()?,
        }
        Ok(self.key.take().unwrap_or(Cow::Borrowed("?")))
    }
}

impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some(key) = self.next_key()? else {
            return Ok(None);
        };
        match seed.deserialize(Key(key.clone())) {
            Ok(k) => {
                self.key = Some(key);
                Ok(Some(k))
            }
            // Named by the key itself (`unknown field` under its own name), as serde_path_to_error does.
            Err(e) => self.de.value_under(Seg::Key(key), |_| Err(e)),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let key = self.before_value()?;
        self.de
            .value_under(Seg::Key(key), |de| seed.deserialize(de))
    }
}

/// An object's key (or an enum's variant name), given to the key's `Deserialize`.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserializer<'de> for Key<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
            Cow::Owned(s) => visitor.visit_string(s),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(UnitVariant(self.0))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// An enum written as its variant's name: a unit variant.
struct UnitVariant<'de>(Cow<'de, str>);

impl<'de> de::EnumAccess<'de> for UnitVariant<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let v = seed.deserialize(Key(self.0.clone()))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"newtype variant",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"tuple variant",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"struct variant",
        ))
    }
}

/// An enum written as `{"Variant": value}`; the cursor is on the value.
struct Variant<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    variant: Cow<'de, str>,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let v = seed.deserialize(Key(self.variant.clone()))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        let key = Seg::Key(self.variant);
        self.de
            .value_under(key, |de| de::Deserialize::deserialize(de))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        let key = Seg::Key(self.variant);
        self.de.value_under(key, |de| seed.deserialize(de))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        let key = Seg::Key(self.variant);
        self.de
            .value_under(key, |de| de::Deserializer::deserialize_seq(de, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let key = Seg::Key(self.variant);
        self.de
            .value_under(key, |de| de::Deserializer::deserialize_map(de, visitor))
    }
}

/// Reads `T` from `input`; nothing but whitespace may follow it.
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(input: &'de [u8]) -> Result<T> {
    let mut de = Deserializer::new(input, 0);
    let value = T::deserialize(&mut de).map_err(|e| de.locate(e))?;
    de.end()?;
    Ok(value)
}

/// The entries of the object at byte `start` of `input` (`top`: the whole
/// input, nothing may follow it).
pub(crate) fn entries_at(input: &[u8], start: usize, top: bool) -> Result<Vec<Entry<'_>>> {
    structure_at(input, start, true, top, None)
}

/// The list at byte `start` of `input`: its items (where each starts), and
/// (`strings`) each item as a string.
pub(crate) fn list_at<'de>(
    input: &'de [u8],
    start: usize,
    strings: Option<&mut Vec<Vec<u8>>>,
) -> Result<Vec<Entry<'de>>> {
    structure_at(input, start, false, false, strings)
}

/// [`Deserializer::structure`] at byte `start` of `input` (`top`: nothing may follow).
fn structure_at<'de>(
    input: &'de [u8],
    start: usize,
    object: bool,
    top: bool,
    strings: Option<&mut Vec<Vec<u8>>>,
) -> Result<Vec<Entry<'de>>> {
    let mut de = Deserializer::new(input, start);
    let entries = de.structure(object, strings).map_err(|e| de.locate(e))?;
    if top {
        de.end()?;
    }
    Ok(entries)
}

/// Reads `T` from an object made of `entries` (found anywhere in `input`).
/// Errors in a value are located at it; an error about the object itself
/// (a missing field) has no place.
pub(crate) fn from_entries<'de, T: de::Deserialize<'de>>(
    input: &'de [u8],
    entries: Vec<Entry<'de>>,
) -> Result<T> {
    let mut de = Deserializer::new(input, 0);
    de.merged = Some(entries);
    T::deserialize(&mut de)
}

impl Entry<'_> {
    /// Where the entry's value starts.
    pub(crate) fn value(&self) -> usize {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct C {
        name: String,
        #[serde(default)]
        n: u32,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        f: Option<f64>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Inner {
        v: i8,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Open,
        Limit(u32),
        Pair { a: bool },
    }

    fn err(json: &str) -> String {
        let e = from_slice::<C>(json.as_bytes()).unwrap_err();
        match e.path() {
            Some(p) => format!("{p}: {}", e.located(json.as_bytes())),
            None => e.located(json.as_bytes()),
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let c: C = from_slice(
            br#" {"name": "a\"\u00e9\ud83d\ude00", "n": 7, "list": [{"v": -3}, {"v": 4}],
                "f": -1.5e1, "mode": {"limit": 3}} "#,
        )
        .unwrap();
        assert_eq!(c.name, "a\"é😀");
        assert_eq!((c.n, c.f), (7, Some(-15.0)));
        assert_eq!(c.list, vec![Inner { v: -3 }, Inner { v: 4 }]);
        assert_eq!(c.mode, Some(Mode::Limit(3)));
        let m: BTreeMap<String, Vec<Option<bool>>> =
            from_slice(br#"{"x": [true, null, false], "y": []}"#).unwrap();
        assert_eq!(m["x"], vec![Some(true), None, Some(false)]);
        let c: C = from_slice(br#"{"name": "", "mode": "open"}"#).unwrap();
        assert_eq!(c.mode, Some(Mode::Open));
        let c: C = from_slice(br#"{"name": "", "mode": {"pair": {"a": true}}}"#).unwrap();
        assert_eq!(c.mode, Some(Mode::Pair { a: true }));
    }

    /// What `serde_json` + `serde_path_to_error` (the reader this one replaced) say.
    fn theirs(json: &str) -> String {
        let mut de = serde_json::Deserializer::from_str(json);
        let e = match serde_path_to_error::deserialize::<_, C>(&mut de) {
            Ok(_) => match de.end() {
                Ok(()) => return "accepted".into(),
                Err(e) => return e.to_string(),
            },
            Err(e) => e,
        };
        // serde_path_to_error names a syntax error between entries `?`; this reader names the object.
        let path = e.path().to_string();
        let path = path.strip_suffix("?").unwrap_or(&path);
        let path = path.strip_suffix(".").unwrap_or(path);
        match path {
            "" => e.into_inner().to_string(),
            _ => format!("{path}: {}", e.into_inner()),
        }
    }

    #[test]
    fn errors_name_the_field_line_and_column_as_serde_json_does() {
        for json in [
            r#"{"name": 5}"#,
            "{\"name\": \"a\",\n \"list\": [{\"v\": 1}, {\"v\": 300}]}",
            "{\"name\": \"a\",\r\n \"list\": [{\"v\": 1},\n\n {\"v\": true} ]}",
            r#"{"name": "a", "n": -1}"#,
            r#"{"name": "a", "n": 1.5}"#,
            r#"{"name": "a", "x": 1}"#,
            r#"{"n": 1}"#,
            r#"{"list": [{}]}"#,
            "not json",
            r#"{"name": "a",}"#,
            r#"{"name": "a", "list": [{"v": 1},]}"#,
            r#"{"name": "a"} x"#,
            r#"{"name" "a"}"#,
            r#"{"name": "a"#,
            r#"{"name": "a", "#,
            r#"{"name": [1]}"#,
            r#"{"name": {"a": 1}}"#,
            r#"{"name": null}"#,
            r#"{"name": "a", "mode": "shut"}"#,
            r#"{"name": "a", "mode": {"limit": "x"}}"#,
            r#"{"name": "a", "mode": {"pair": {"a": 1}}}"#,
            r#"{"name": "a", "n": 01}"#,
            r#"{"name": "a", "n": 1.}"#,
            r#"{"name": "a", "n": -}"#,
            r#"{"name": "a", "n": 4294967296}"#,
            r#"{"name": -0}"#,
            r#"{"name": -12}"#,
            r#"{"name": 18446744073709551615}"#,
            r#"{"name": -9223372036854775808}"#,
            r#"{"name": "a", "n": -0}"#,
            "{\"name\": \"a\u{1}\"}",
            r#"{"name": "\x"}"#,
            r#"{"name": "\ud800"}"#,
            r#"{"name": "\u12"}"#,
            r#"{1: 2}"#,
            r#"{"name": "a", "list": [1 2]}"#,
            r#"{"name": "a", "list": [{"v": 1}"#,
            r#"{"name": tru}"#,
            "",
            "   ",
        ] {
            assert_eq!(err(json), theirs(json), "{json}");
        }
        // Where serde_json parses a number it then refuses, this reader quotes it as written.
        assert_eq!(
            err(r#"{"name": "a", "n": -0.25e1}"#),
            "n: invalid type: floating point `-0.25e1`, expected u32 at line 1 column 26"
        );
        assert_eq!(
            err(r#"{"name": "a", "n": 99999999999999999999}"#),
            "n: invalid value: integer `99999999999999999999`, expected u32 at line 1 column 39"
        );
        assert_eq!(
            err(&"[".repeat(200)),
            "invalid type: sequence, expected struct C at line 1 column 0"
        );
        let deep = "[".repeat(200);
        let ours = from_slice::<de::IgnoredAny>(deep.as_bytes()).unwrap_err();
        let theirs = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        assert_eq!(ours.located(deep.as_bytes()), theirs.to_string());
        // serde_json also reads a struct from a list of its fields in order; a configuration cannot.
        assert_eq!(
            err(r#"["a"]"#),
            "invalid type: sequence, expected struct C at line 1 column 0"
        );
    }

    #[test]
    fn unknown_names_are_worded_as_serde_words_them() {
        use serde::de::Error as _;
        for names in [&[][..], &["a"], &["a", "b"], &["a", "b", "c"]] {
            let ours = Error::unknown_field("x", names).to_string();
            let theirs = serde_json::Error::unknown_field("x", names).to_string();
            assert_eq!(ours, theirs);
            let ours = Error::unknown_variant("x", names).to_string();
            let theirs = serde_json::Error::unknown_variant("x", names).to_string();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn floats_are_shown_without_core_float_formatting() {
        let f = |x: f64| {
            let mut s = String::new();
            float(&mut s, x);
            s
        };
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(-2.0), "-2.0");
        assert_eq!(f(0.125), "0.125");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(1e300), "a number out of range");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(-12.25), "-12.25");
        assert_eq!(f(1e-7), "0.0");
    }

    #[test]
    fn unexpected_reads_as_serde_words_it() {
        for u in [
            Unexpected::Bool(true),
            Unexpected::Bool(false),
            Unexpected::Unsigned(0),
            Unexpected::Unsigned(u64::MAX),
            Unexpected::Signed(-7),
            Unexpected::Signed(i64::MIN),
            Unexpected::Signed(3),
            Unexpected::Float(-1.5),
            Unexpected::Char('x'),
            Unexpected::Str("a\"b"),
            Unexpected::Bytes(b"x"),
            Unexpected::Unit,
            Unexpected::Option,
            Unexpected::NewtypeStruct,
            Unexpected::Seq,
            Unexpected::Map,
            Unexpected::Enum,
            Unexpected::UnitVariant,
            Unexpected::NewtypeVariant,
            Unexpected::TupleVariant,
            Unexpected::StructVariant,
            Unexpected::Other("something else"),
        ] {
            let mut ours = String::new();
            unexpected(&mut ours, &u);
            // serde says `unit value`; serde_json, whose messages these are, says `null`.
            let theirs = match u {
                Unexpected::Unit => "null".to_owned(),
                u => u.to_string(),
            };
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn strings_are_quoted_as_debug_quotes_them() {
        for s in [
            "plain",
            "a\"b\\c",
            "tab\tnl\ncr\r",
            "nul\0 bell\x07 del\x7f",
            "esc\x1b c1\u{80}\u{9f}",
            "é😀",
        ] {
            let mut out = String::new();
            quoted(&mut out, s);
            assert_eq!(out, format!("{s:?}"));
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let e = from_slice::<String>(b"\"a\xff\"").unwrap_err();
        assert_eq!(
            e.located(b"\"a\xff\""),
            "invalid unicode code point at line 1 column 3"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_or_refuse(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = from_slice::<C>(&bytes);
            let _ = entries_at(&bytes, 0, true);
            let _ = list_at(&bytes, 0, Some(&mut Vec::new()));
        }

        #[test]
        fn agrees_with_serde_json_on_what_it_accepts(
            bytes in proptest::collection::vec(proptest::sample::select(b"{}[]\",:0123456789.-eEtrufalsn \\u\"abn".to_vec()), 0..32)
        ) {
            let ours = from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
            let theirs = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
            proptest::prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
}
