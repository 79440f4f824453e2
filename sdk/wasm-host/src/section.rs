//! Reads a module's custom sections, which the interpreter does not keep.

/// The contents of `wasm`'s first custom section called `name`; `None` when it has
/// none, or when the bytes are not a wasm module.
pub fn custom_section<'a>(wasm: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut rest = wasm.strip_prefix(b"\0asm")?.get(4..)?;
    while let Some((&id, after)) = rest.split_first() {
        let (size, after) = leb128(after)?;
        let body = after.get(..size)?;
        rest = &after[size..];
        if id == 0 {
            let (len, named) = leb128(body)?;
            if named.get(..len)? == name.as_bytes() {
                return Some(&named[len..]);
            }
        }
    }
    None
}

/// An unsigned LEB128 number and what follows it.
fn leb128(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_custom_section_by_name_and_survives_garbage() {
        // header, a type section (id 1, empty), then custom "weir.filter" = "a::B".
        let mut wasm = b"\0asm\x01\0\0\0\x01\x01\x00".to_vec();
        wasm.extend_from_slice(b"\x00\x10\x0bweir.filter");
        wasm.extend_from_slice(b"a::B");
        assert_eq!(custom_section(&wasm, "weir.filter"), Some(&b"a::B"[..]));
        assert_eq!(custom_section(&wasm, "weir.hooks"), None);
        for end in 0..wasm.len() {
            let _ = custom_section(&wasm[..end], "weir.filter");
        }
        assert_eq!(custom_section(b"hello", "weir.filter"), None);
    }
}
