//! Buffered bodies: read and replace a whole request or response body in a body hook.

use crate::outcome::Error;
use crate::host::{self, Buffer};

/// The body the hook was handed: all of it, buffered by weir up to
/// [`HttpFilter::BODY_LIMIT`](crate::HttpFilter::BODY_LIMIT).
///
/// Outside a body hook it is empty. When you change a request body's length,
/// remove `content-length` in the headers hook (Envoy does not rewrite it).
#[derive(Debug)]
pub struct Body {
    buffer: Buffer,
    size: usize,
}

impl Body {
    pub(crate) fn new(buffer: Buffer, size: usize) -> Self {
        Body { buffer, size }
    }

    /// The body's length in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// True when there is no body (or this is not a body hook).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The body's bytes (one host call; any bytes, no UTF-8 assumed).
    pub fn read(&self) -> Vec<u8> {
        host::buffer_get(self.buffer, 0, self.size)
    }

    /// Replaces the whole body with `bytes`.
    pub fn replace(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if host::buffer_set(self.buffer, 0, self.size, bytes) {
            self.size = bytes.len();
            Ok(())
        } else {
            Err(Error::from("the proxy refused to replace the body"))
        }
    }
}
