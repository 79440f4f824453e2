//! Protocol Buffers' wire format, just enough for gRPC callouts: write a message
//! field by field ([`Writer`]), read one field by field ([`fields`]). No schema,
//! no code generation, no dependency; what a filter does not call is not linked.
//!
//! Field numbers are the `.proto`'s own: keep them identical to the service's.
//!
//! ```
//! use weir::proto::{fields, Writer};
//!
//! // message HealthCheckRequest { string service = 1; }
//! let request = Writer::new().string(1, "authz").into_bytes();
//! assert_eq!(request, b"\x0a\x05authz");
//!
//! // message HealthCheckResponse { ServingStatus status = 1; }  (SERVING = 1)
//! let answer = b"\x08\x01";
//! let status = fields(answer).flatten().find(|f| f.number == 1).and_then(|f| f.as_u64());
//! assert_eq!(status, Some(1));
//! ```

/// Builds one message's bytes, field by field, in the order written.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Writer {
    /// An empty message.
    pub fn new() -> Self {
        Writer::default()
    }

    fn tag(&mut self, field: u32, wire: u8) {
        varint(&mut self.bytes, u64::from(field) << 3 | u64::from(wire));
    }

    /// A varint field: `uint32`, `uint64`, `int32`/`int64` (as their two's complement),
    /// `bool` and enums.
    pub fn uint(mut self, field: u32, value: u64) -> Self {
        self.tag(field, 0);
        varint(&mut self.bytes, value);
        self
    }

    /// A length-delimited field: `bytes`, or an already encoded message.
    pub fn bytes(mut self, field: u32, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        self.tag(field, 2);
        varint(&mut self.bytes, value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    /// A `string` field.
    pub fn string(self, field: u32, value: &str) -> Self {
        self.bytes(field, value)
    }

    /// A message field, written by `build`.
    ///
    /// ```
    /// // message Outer { Inner inner = 2; }  message Inner { string name = 1; }
    /// let bytes = weir::proto::Writer::new().message(2, |m| m.string(1, "x")).into_bytes();
    /// assert_eq!(bytes, b"\x12\x03\x0a\x01x");
    /// ```
    pub fn message(self, field: u32, build: impl FnOnce(Writer) -> Writer) -> Self {
        let inner = build(Writer::new());
        self.bytes(field, inner.bytes)
    }

    /// The message's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// One field as read from the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field number.
    pub number: u32,
    /// The value, by wire type.
    pub value: Wire<'a>,
}

/// A field's value, as its wire type carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire<'a> {
    /// Wire type 0: integers, `bool`, enums.
    Varint(u64),
    /// Wire type 1: `fixed64`, `sfixed64`, `double`.
    Fixed64(u64),
    /// Wire type 2: `string`, `bytes`, messages, packed repeated fields.
    Bytes(&'a [u8]),
    /// Wire type 5: `fixed32`, `sfixed32`, `float`.
    Fixed32(u32),
}

impl<'a> Field<'a> {
    /// The value of a varint or fixed field.
    pub fn as_u64(&self) -> Option<u64> {
        match self.value {
            Wire::Varint(v) | Wire::Fixed64(v) => Some(v),
            Wire::Fixed32(v) => Some(v.into()),
            Wire::Bytes(_) => None,
        }
    }

    /// The bytes of a length-delimited field (a `bytes`, `string` or message).
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Wire::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A `string` field; `None` when it is not UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        crate::utf8::str(self.as_bytes()?).ok()
    }

    /// A message field's own fields.
    pub fn as_message(&self) -> Option<Fields<'a>> {
        self.as_bytes().map(fields)
    }
}

/// Why a message could not be read to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The byte offset where reading stopped.
    pub at: usize,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed protobuf message at byte {}", self.at)
    }
}

impl std::error::Error for Malformed {}

/// The fields of a message, in wire order: an `Err` at the first malformed byte,
/// then nothing. Never panics, whatever the bytes. Groups (wire types 3 and 4,
/// deprecated) are malformed here.
pub fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { bytes, at: 0 }
}

/// The iterator [`fields`] returns.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn field(&mut self) -> Option<Field<'a>> {
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).ok().filter(|n| *n > 0)?;
        let value = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some(Field { number, value })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let start = self.at;
        match self.field() {
            Some(f) => Some(Ok(f)),
            None => {
                self.at = self.bytes.len(); // nothing after damage
                Some(Err(Malformed { at: start }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = Writer::new()
            .uint(1, 300)
            .string(2, "héllo")
            .message(3, |m| m.uint(1, 0).bytes(2, [0xff, 0]))
            .uint(536_870_911, u64::MAX)
            .into_bytes();
        let read: Vec<_> = fields(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(read[0].as_u64(), Some(300));
        assert_eq!(read[1].as_str(), Some("héllo"));
        let inner: Vec<_> = read[2].as_message().unwrap().flatten().collect();
        assert_eq!(inner[1].as_bytes(), Some(&[0xff, 0][..]));
        assert_eq!(
            (read[3].number, read[3].as_u64()),
            (536_870_911, Some(u64::MAX))
        );
    }

    #[test]
    fn fixed_fields_and_damage() {
        let mut bytes = vec![0x09];
        bytes.extend(7u64.to_le_bytes());
        bytes.push(0x15);
        bytes.extend(9u32.to_le_bytes());
        let read: Vec<_> = fields(&bytes).flatten().map(|f| f.as_u64()).collect();
        assert_eq!(read, [Some(7), Some(9)]);
        assert_eq!(
            fields(b"\x0a\x05ab").collect::<Vec<_>>(),
            [Err(Malformed { at: 0 })]
        );
        assert_eq!(fields(b"\x0b").next(), Some(Err(Malformed { at: 0 })));
        assert_eq!(fields(b"\x00\x01").next(), Some(Err(Malformed { at: 0 })));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            for f in fields(&bytes).flatten() {
                if let Some(m) = f.as_message() {
                    let _ = m.count();
                }
            }
        }
    }
}
