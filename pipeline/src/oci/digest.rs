//! Content digests (`sha256:<hex>`): computing them and refusing bytes that do not match.

use anyhow::{bail, Result};
use std::fmt;

/// True when `hex` is a sha256 as registries, Istio and Envoy write it: 64 lowercase hex
/// digits. The one check of that shape (`Digest::parse`, `deploy`'s `--sha256` and image digests).
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A `sha256:<64 hex>` content digest; the only algorithm registries and meshes use for wasm.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", crate::project::sha256_hex(bytes)))
    }

    /// Parses `sha256:<64 lowercase hex>`; any other algorithm or shape is an error.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            bail!("`{text}` is not a digest: expected sha256:<64 hex digits>");
        };
        if algorithm != "sha256" {
            bail!("digest `{text}` uses {algorithm}; weir verifies sha256 digests only");
        }
        if !is_sha256_hex(hex) {
            bail!("`{text}` is not a digest: expected sha256:<64 lowercase hex digits>");
        }
        Ok(Digest(text.to_owned()))
    }

    /// The hex part, which names the blob file in an OCI layout.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(_, h)| h)
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> &str {
        let hex = self.hex();
        &hex[..hex.len().min(12)]
    }

    /// Errors unless `bytes` hash to this digest and (when given) have `size` bytes;
    /// `what` names the content in the message ("wasm layer from 127.0.0.1:5000/x").
    pub fn verify(&self, bytes: &[u8], size: Option<u64>, what: &str) -> Result<()> {
        if let Some(size) = size {
            if bytes.len() as u64 != size {
                bail!("{what} is {} bytes, but its descriptor says {size}: refusing it (truncated or tampered content)", bytes.len());
            }
        }
        let actual = Digest::of(bytes);
        if &actual != self {
            bail!("{what} has digest {actual}, not the {self} it was addressed by: refusing it (corrupted or tampered content)");
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_verifies() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        d.verify(b"abc", Some(3), "x").unwrap();
        let e = d
            .verify(b"abd", None, "the wasm layer")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the wasm layer has digest") && e.contains("refusing"),
            "{e}"
        );
        let e = d.verify(b"ab", Some(3), "x").unwrap_err().to_string();
        assert!(e.contains("is 2 bytes, but its descriptor says 3"), "{e}");
        assert!(Digest::parse("sha512:00")
            .unwrap_err()
            .to_string()
            .contains("sha256 digests only"));
        assert!(Digest::parse("sha256:XYZ").is_err());
    }
}
