//! Typed configuration: the JSON Envoy passes at configure time, parsed once into the filter's type.

use serde::de::DeserializeOwned;
use std::fmt;

pub(crate) mod json;

/// Why a configuration was refused. Its `Display` is the line Envoy logs and
/// the message a native test sees: it names the field, the problem, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: Option<String>,
    message: String,
}

impl ConfigError {
    /// The path of the offending field (`name`, `rules[2].value`), when there is one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What was wrong, with the line and column where the reader found it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// An error not tied to one field.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            field: None,
            message: message.into(),
        }
    }

    /// An error about one field, for checks a filter makes after parsing.
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl ConfigError {
    /// The same error, its field put under `at` (a rule's path).
    pub(crate) fn under(self, at: &str) -> Self {
        if at.is_empty() {
            return self;
        }
        let mut field = String::from(at);
        if let Some(f) = self.field {
            field.push('.');
            field.push_str(&f);
        }
        ConfigError {
            field: Some(field),
            message: self.message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => {
                f.write_str("field `")?;
                f.write_str(field)?;
                f.write_str("`: ")?;
                f.write_str(&self.message)
            }
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses `bytes` as JSON into `C`, naming the field that failed.
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// struct Config { name: weir::HeaderName }
/// let err = weir::config::parse::<Config>(br#"{"name": 5}"#).unwrap_err();
/// assert_eq!(err.field(), Some("name"));
/// assert!(err.to_string().starts_with("field `name`: invalid type: integer `5`"));
/// ```
pub fn parse<C: DeserializeOwned>(bytes: &[u8]) -> Result<C, ConfigError> {
    parse_borrowed(bytes)
}

/// `parse` for types that borrow from `bytes`.
pub(crate) fn parse_borrowed<'de, C: serde::Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<C, ConfigError> {
    json::from_slice(bytes).map_err(|e| ConfigError::from_json(e, bytes))
}

impl ConfigError {
    /// A reader's error as a configuration error: its path, and its message with
    /// the line and column in `whole`.
    pub(crate) fn from_json(e: json::Error, whole: &[u8]) -> Self {
        ConfigError {
            field: e.path().map(str::to_owned),
            message: e.located(whole),
        }
    }
}
