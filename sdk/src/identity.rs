//! Which filter a module is: the `weir.filter` custom section.
//!
//! [`export!`](crate::export) writes `<crate>::<type>` (the filter crate's library name and
//! the type it exports) into a custom section called `weir.filter`. A test run against a
//! compiled module (`WEIR_TEST_MODULE`) compares it with the filter under test, so another
//! filter's module is refused instead of tested.

/// The custom section's name.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) const SECTION: &str = "weir.filter";

/// `name`'s bytes as an array, for a `#[link_section]` static.
#[doc(hidden)]
pub const fn section<const N: usize>(name: &str) -> [u8; N] {
    let bytes = name.as_bytes();
    let mut out = [0; N];
    let mut i = 0;
    while i < N && i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The identity a module of filter type `type_name` (a `std::any::type_name`) carries:
/// its crate and the type's last path segment.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn of_type(type_name: &str) -> String {
    let path = type_name.split('<').next().unwrap_or(type_name);
    let krate = path.split("::").next().unwrap_or(path);
    let ty = path.rsplit("::").next().unwrap_or(path);
    format!("{krate}::{ty}")
}

/// The identity in a `weir.filter` section, normalized as [`of_type`] does
/// (`stringify!` writes `a :: B` for a path).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn of_section(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    of_type(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_names_the_type_it_was_written_for() {
        const NAME: &str = concat!("add_header", "::", "AddHeader");
        let bytes: [u8; NAME.len()] = section(NAME);
        assert_eq!(of_section(&bytes), of_type("add_header::AddHeader"));
        assert_eq!(
            of_section(b"add_header::filter :: AddHeader"),
            of_type("add_header::AddHeader")
        );
        assert_ne!(
            of_section(b"redact::Redact"),
            of_type("add_header::AddHeader")
        );
        assert_ne!(
            of_section(b"other::AddHeader"),
            of_type("add_header::AddHeader")
        );
    }
}
