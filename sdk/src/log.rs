//! Logging at Envoy's levels; the macros tag each line with the filter's name.
//!
//! The macros ([`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn), [`error!`](crate::error), [`critical!`](crate::critical)) take
//! `format!` arguments and format nothing when Envoy would drop the line: they ask the
//! proxy its level first (`proxy_get_log_level`), so a `debug!` in a hot hook costs one
//! host call, not a `String`, while Envoy runs at `info`.
//!
//! ```
//! # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
//! weir::debug!("path {:?}", cx.properties().path()); // `<filter>: path Some(...)`, formatted only at debug
//! weir::warn!("no api key");
//! # Ok(weir::Action::Continue) }
//! ```

use std::cell::Cell;
use std::fmt;

/// Envoy's log levels, in the ABI's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Level {
    /// Finest detail.
    Trace = 0,
    /// Debugging detail.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Something unexpected that the filter handled.
    Warn = 3,
    /// Something failed.
    Error = 4,
    /// The filter cannot go on.
    Critical = 5,
}

thread_local! {
    /// The filter's name, set when the VM starts (natively, by the test harness).
    static FILTER: Cell<&'static str> = const { Cell::new("") };
}

/// Records the filter's name for the lines written from here on.
pub(crate) fn set_filter_name(name: &'static str) {
    let _ = FILTER.try_with(|f| f.set(name));
}

/// The filter's name, as its log lines carry it (empty before the VM started).
///
/// ```
/// let name: &str = weir::log::filter_name();
/// # let _ = name;
/// ```
pub fn filter_name() -> &'static str {
    FILTER.try_with(Cell::get).unwrap_or("")
}

/// True when the proxy writes lines at `level` (one host call; true when the host cannot say).
///
/// ```
/// use weir::log::{enabled, Level};
/// if enabled(Level::Debug) {
///     // build something expensive to log
/// }
/// ```
pub fn enabled(level: Level) -> bool {
    crate::host::log_level().is_none_or(|threshold| level as u32 >= threshold)
}

/// Writes `message` to Envoy's log at `level` (component `wasm`) as it is,
/// untagged; prefer the macros, which put the filter's name first.
///
/// ```
/// weir::log::log(weir::log::Level::Info, "my-filter: configured");
/// ```
pub fn log(level: Level, message: &str) {
    crate::host::log(level as u32, message);
}

/// Formats and writes one line tagged with the filter's name: what the macros call once
/// [`enabled`] said yes.
/// Logs `parts`, joined, as one line tagged with the filter's name (what the
/// macros do, without formatting: for the SDK's own lines).
pub(crate) fn line(level: Level, parts: &[&str]) {
    if !enabled(level) {
        return;
    }
    let name = filter_name();
    let mut line = String::from(name);
    if !name.is_empty() {
        line.push_str(": ");
    }
    for part in parts {
        line.push_str(part);
    }
    crate::host::log(level as u32, &line);
}

/// Logs a panic at critical as `<filter>: filter panicked: panicked at
/// <file>:<line>:<column>:\n<message>`, std's words, written by hand (std's
/// `PanicHookInfo` `Display` links core's padding code).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn panicked(info: &std::panic::PanicHookInfo<'_>) {
    let mut at = String::new();
    if let Some(location) = info.location() {
        at.push_str(location.file());
        for n in [location.line(), location.column()] {
            at.push(':');
            crate::config::json::decimal(&mut at, n.into());
        }
    }
    // As std's: the message only when it is text.
    // `PanicHookInfo::payload_as_str`, which needs Rust 1.91 (weir's MSRV is 1.89).
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    let (colon, message) = match text {
        Some(message) => (":\n", message),
        None => ("", ""),
    };
    line(
        Level::Critical,
        &["filter panicked: panicked at ", &at, colon, message],
    );
}

#[doc(hidden)]
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    // Written into one `String` (no `format!`: its `expect` and `Display`s of `&str`).
    let name = filter_name();
    let mut line = String::from(name);
    if !name.is_empty() {
        line.push_str(": ");
    }
    let _ = fmt::Write::write_fmt(&mut line, args);
    crate::host::log(level as u32, &line);
}

/// Logs at `level` with `format!` arguments, formatting only when the proxy writes that level.
///
/// ```
/// weir::log!(weir::log::Level::Info, "{} rules", 3);
/// ```
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {{
        let level: $crate::log::Level = $level;
        if $crate::log::enabled(level) {
            $crate::log::write(level, ::std::format_args!($($arg)+));
        }
    }};
}

/// Logs at trace level (see [`log!`](crate::log!)).
///
/// ```
/// weir::trace!("chunk of {} bytes", 512);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Trace, $($arg)+) };
}

/// Logs at debug level (see [`log!`](crate::log!)).
///
/// ```
/// weir::debug!("rule {} matched", "api");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Debug, $($arg)+) };
}

/// Logs at info level (see [`log!`](crate::log!)).
///
/// ```
/// weir::info!("configured with {} patterns", 2);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Info, $($arg)+) };
}

/// Logs at warn level (see [`log!`](crate::log!)).
///
/// ```
/// weir::warn!("upstream sent {} bytes more than announced", 10);
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Warn, $($arg)+) };
}

/// Logs at error level (see [`log!`](crate::log!)).
///
/// ```
/// weir::error!("callout to {} failed", "auth");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Error, $($arg)+) };
}

/// Logs at critical level (see [`log!`](crate::log!)).
///
/// ```
/// weir::critical!("state lost");
/// ```
#[macro_export]
macro_rules! critical {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Critical, $($arg)+) };
}
