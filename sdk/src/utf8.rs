//! UTF-8 validation for the SDK's own text: configuration strings, header values
//! and names, properties, callout headers.
//!
//! `core::str::from_utf8` is about 680 bytes of wasm (a word-at-a-time ASCII fast
//! path and its tables); this is about a third of that, which counts in a module
//! whose whole budget is 40 KB. The SDK's text is short (a header value, a
//! configuration string), so the byte-at-a-time loop costs nothing that shows. The
//! tests hold it to `core::str::from_utf8` for every input of up to three bytes,
//! every four-byte sequence a valid lead byte can start, and random text.

/// `bytes` as text, or the offset of the first byte that starts no well-formed
/// UTF-8 sequence (what `Utf8Error::valid_up_to` reports).
pub(crate) fn str(bytes: &[u8]) -> Result<&str, usize> {
    let valid = valid_up_to(bytes);
    if valid < bytes.len() {
        return Err(valid);
    }
    // SAFETY: `valid_up_to` found every byte in a well-formed sequence.
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// [`str`] for an owned buffer, handed back when it is not UTF-8.
pub(crate) fn string(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    if valid_up_to(&bytes) < bytes.len() {
        return Err(bytes);
    }
    // SAFETY: `valid_up_to` found every byte in a well-formed sequence.
    Ok(unsafe { String::from_utf8_unchecked(bytes) })
}

/// The length of the longest prefix of `bytes` made of well-formed sequences: the
/// table of well-formed byte sequences in the Unicode Standard (§3.9, table 3-7),
/// which rules out overlong forms, surrogates and code points past U+10FFFF.
fn valid_up_to(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&lead) = bytes.get(i) {
        if lead < 0x80 {
            i += 1;
            continue;
        }
        if !(0xC2..=0xF4).contains(&lead) {
            return i;
        }
        // How many continuation bytes follow (C2–DF: 1, E0–EF: 2, F0–F4: 3), and the
        // range of the first: narrower after E0 (overlong), ED (surrogates), F0
        // (overlong) and F4 (past U+10FFFF).
        let more = 1 + usize::from(lead >= 0xE0) + usize::from(lead >= 0xF0);
        let mut low = match lead {
            0xE0 => 0xA0,
            0xF0 => 0x90,
            _ => 0x80,
        };
        let mut high = match lead {
            0xED => 0x9F,
            0xF4 => 0x8F,
            _ => 0xBF,
        };
        for k in 1..=more {
            match bytes.get(i + k) {
                Some(&b) if low <= b && b <= high => {}
                _ => return i,
            }
            (low, high) = (0x80, 0xBF);
        }
        i += more + 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_core(bytes: &[u8]) {
        let ours = str(bytes);
        match std::str::from_utf8(bytes) {
            Ok(s) => assert_eq!(ours, Ok(s), "{bytes:02x?}"),
            Err(e) => assert_eq!(ours, Err(e.valid_up_to()), "{bytes:02x?}"),
        }
    }

    #[test]
    fn every_input_of_up_to_three_bytes_is_judged_as_core_judges_it() {
        same_as_core(&[]);
        for a in 0..=255u8 {
            same_as_core(&[a]);
            for b in 0..=255u8 {
                same_as_core(&[a, b]);
                // The third byte matters only after a lead byte: check it whole there.
                if a >= 0xC0 {
                    for c in 0..=255u8 {
                        same_as_core(&[a, b, c]);
                    }
                } else {
                    same_as_core(&[a, b, b'x']);
                    same_as_core(&[a, b, 0x80]);
                }
            }
        }
    }

    #[test]
    fn every_four_byte_sequence_of_a_four_byte_lead_is_judged_as_core_judges_it() {
        for a in 0xF0..=0xF4u8 {
            for b in 0..=255u8 {
                for c in [0x00, 0x7F, 0x80, 0xA5, 0xBF, 0xC0, 0xFF] {
                    for d in 0..=255u8 {
                        same_as_core(&[a, b, c, d]);
                    }
                }
            }
        }
    }

    #[test]
    fn long_text_and_errors_past_its_start_match_core() {
        let text = "héllo wörld ✓ 𝄞 ascii-only tail".as_bytes();
        same_as_core(text);
        for cut in 0..text.len() {
            same_as_core(&text[..cut]);
            let mut broken = text.to_vec();
            broken[cut] = 0xFF;
            same_as_core(&broken);
        }
        assert_eq!(string(b"ok".to_vec()), Ok("ok".to_owned()));
        assert_eq!(string(vec![b'a', 0xC0]), Err(vec![b'a', 0xC0]));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_are_judged_as_core_judges_them(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            same_as_core(&bytes);
        }

        #[test]
        fn random_text_is_text(s in "\\PC{0,40}") {
            proptest::prop_assert_eq!(str(s.as_bytes()), Ok(s.as_str()));
        }
    }
}
