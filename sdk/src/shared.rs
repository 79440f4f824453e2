//! Shared data: bytes under a key, seen by every request and every worker's VM.
//!
//! Writes carry the version they read (compare-and-swap), so two workers
//! updating one key cannot lose an update silently:
//!
//! ```
//! fn bump(key: &str) -> Result<u64, weir::shared::SharedError> {
//!     loop {
//!         let (count, version) = match weir::shared::get(key) {
//!             Some(e) => (e.value.try_into().map(u64::from_le_bytes).unwrap_or(0), Some(e.version)),
//!             None => (0, None),
//!         };
//!         match weir::shared::set(key, &(count + 1).to_le_bytes(), version) {
//!             Err(weir::shared::SharedError::Conflict) => continue,
//!             other => return other.map(|()| count + 1),
//!         }
//!     }
//! }
//! assert_eq!(bump("hits"), Ok(1));
//! assert_eq!(bump("hits"), Ok(2));
//! ```

use std::fmt;

use crate::host::{self, SetStatus};

/// A value and the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The bytes stored.
    pub value: Vec<u8>,
    /// Pass it to [`set`] to write only if nobody wrote in between.
    pub version: u32,
}

/// Why [`set`] did not write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedError {
    /// Someone wrote the key after the version given was read: read again and retry.
    Conflict,
    /// The host refused the write.
    Failed,
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SharedError::Conflict => "shared data changed since it was read",
            SharedError::Failed => "the proxy refused to write shared data",
        })
    }
}

impl std::error::Error for SharedError {}

impl From<SharedError> for crate::Error {
    fn from(e: SharedError) -> Self {
        crate::Error::new(e)
    }
}

/// The value under `key`, or `None` when there is none. An empty value is
/// none: it is what [`remove`] leaves (Envoy cannot delete a key).
pub fn get(key: &str) -> Option<Entry> {
    host::shared_get(key)
        .filter(|(value, _)| !value.is_empty())
        .map(|(value, version)| Entry { value, version })
}

/// Stores `value` under `key`. With `Some(version)`, only if the key is still
/// at that version; with `None`, unconditionally.
pub fn set(key: &str, value: &[u8], version: Option<u32>) -> Result<(), SharedError> {
    match host::shared_set(key, value, version.unwrap_or(0)) {
        SetStatus::Ok => Ok(()),
        SetStatus::CasMismatch => Err(SharedError::Conflict),
        SetStatus::Failed => Err(SharedError::Failed),
    }
}

/// Removes the value under `key`: with `Some(version)`, only if nobody wrote it
/// since that version was read ([`SharedError::Conflict`] otherwise).
///
/// Envoy's proxy-wasm ABI has no call that deletes shared data (its host library
/// can, but Envoy does not expose it to Wasm), so this writes an empty value, which
/// [`get`] reports as `None`; the key itself stays in the proxy's memory until the
/// VM id's last VM goes away. Storing an empty value is therefore the same as
/// removing it. Keys that come and go without bound (one per client, say) should
/// be reused rather than removed.
///
/// ```
/// weir::shared::set("session", b"abc", None).unwrap();
/// let entry = weir::shared::get("session").unwrap();
/// weir::shared::remove("session", Some(entry.version)).unwrap();
/// assert_eq!(weir::shared::get("session"), None);
/// ```
pub fn remove(key: &str, version: Option<u32>) -> Result<(), SharedError> {
    set(key, &[], version)
}
