//! What a hook returns ([`Action`], [`Result`]) and how it fails ([`Error`]): the types
//! the hook modules share, kept below them all (`filter`, `context`, `body`, `callout`,
//! `reply` import this module; it imports none of them).

use std::fmt;

use crate::header::{HeaderError, InvalidHeader};

/// What the proxy does after a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Pass the request or response on to the next filter.
    Continue,
    /// Hold it here (after a local reply, or until a callout answers).
    Pause,
}

/// What a hook returns.
pub type Result<T = Action, E = Error> = std::result::Result<T, E>;

/// A failure inside a hook: logged with the filter's name, then the request
/// continues unchanged.
pub struct Error(Box<str>);

impl Error {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        // `write!`, not `to_string`: its `expect` links core's padding code.
        let mut text = String::new();
        let _ = fmt::Write::write_fmt(&mut text, format_args!("{message}"));
        Error(text.into())
    }

    /// The message.
    pub(crate) fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<InvalidHeader> for Error {
    fn from(e: InvalidHeader) -> Self {
        Error::new(e)
    }
}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Self {
        Error::new(e)
    }
}

impl From<&str> for Error {
    fn from(e: &str) -> Self {
        Error(e.into())
    }
}

impl From<String> for Error {
    fn from(e: String) -> Self {
        Error(e.into())
    }
}
