//! Logging at Envoy's levels, tagged with the filter's name.

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

/// Writes `message` to Envoy's log at `level` (component `wasm`).
pub fn log(level: Level, message: &str) {
    crate::host::log(level as u32, message);
}
