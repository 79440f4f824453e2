//! An in-process proxy-wasm host on the `wasmi` interpreter, for tests and tools.
//!
//! [`Instance`] loads a compiled filter module, provides the proxy-wasm 0.2.1 host
//! calls it imports and calls its hooks; [`Proxy`] is what those host calls do.
//! Every [`Proxy`] method has a default (nothing found, every write accepted), so a
//! tool that only runs a configure step implements `log` and `buffer_get`, while
//! `weir::testing` implements all of them over the same in-memory host its native
//! tests use, so a filter's tests see the same host whichever way they run.
//!
//! ```no_run
//! use weir_wasm_host::{Instance, Proxy, PLUGIN_CONFIGURATION};
//!
//! struct Configure(Vec<u8>);
//! impl Proxy for Configure {
//!     fn buffer_get(&mut self, buffer: u32, start: usize, max: usize) -> Option<Vec<u8>> {
//!         let config = (buffer == PLUGIN_CONFIGURATION).then_some(&self.0)?;
//!         let start = start.min(config.len());
//!         Some(config[start..config.len().min(start.saturating_add(max))].to_vec())
//!     }
//! }
//!
//! let wasm = std::fs::read("target/filters/add-header.wasm")?;
//! let config = br#"{"name": "x-hello", "value": "world"}"#.to_vec();
//! let size = config.len() as i32;
//! let mut module = Instance::new(&wasm, Configure(config))?;
//! module.call("_initialize", &[])?;
//! module.call("proxy_on_context_create", &[1, 0])?;
//! let accepted = module.call("proxy_on_configure", &[1, size])? != Some(0);
//! # let _ = accepted;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod imports;
mod instance;
mod section;

pub use instance::Instance;
pub use section::custom_section;

/// proxy-wasm's buffer number for the plugin configuration.
pub const PLUGIN_CONFIGURATION: u32 = 7;
/// proxy-wasm's buffer number for the VM configuration (`vm_config.configuration`).
pub const VM_CONFIGURATION: u32 = 6;

/// proxy-wasm's `Ok` status.
pub const OK: i32 = 0;
/// proxy-wasm's `NotFound` status.
pub const NOT_FOUND: i32 = 1;
/// proxy-wasm's `BadArgument` status.
pub const BAD_ARGUMENT: i32 = 2;
/// proxy-wasm's `Empty` status (a queue with nothing to dequeue).
pub const EMPTY: i32 = 7;
/// proxy-wasm's `CasMismatch` status.
pub const CAS_MISMATCH: i32 = 8;
/// proxy-wasm's `InternalFailure` status.
pub const INTERNAL_FAILURE: i32 = 10;

/// A local reply the module sent (`proxy_send_local_response`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReply {
    /// The HTTP status.
    pub status: u32,
    /// The response-code details.
    pub details: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
    /// The headers, as the module serialized them.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The gRPC status, when the module gave one (it passes -1 for none).
    pub grpc_status: Option<u32>,
}

/// An HTTP callout the module dispatched (`proxy_http_call`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpCall {
    /// The cluster.
    pub upstream: Vec<u8>,
    /// Its headers, pseudo-headers included.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Its body.
    pub body: Vec<u8>,
    /// Its trailers.
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Its timeout in milliseconds.
    pub timeout_millis: u32,
}

/// A unary gRPC call the module dispatched (`proxy_grpc_call`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrpcCall {
    /// The `GrpcService` argument: a serialized `envoy.config.core.v3.GrpcService`
    /// or a bare cluster name (Envoy takes either).
    pub service: Vec<u8>,
    /// The service's full name, e.g. `grpc.health.v1.Health`.
    pub service_name: Vec<u8>,
    /// The method, e.g. `Check`.
    pub method: Vec<u8>,
    /// Its initial metadata.
    pub metadata: Vec<(Vec<u8>, Vec<u8>)>,
    /// The request message.
    pub message: Vec<u8>,
    /// Its timeout in milliseconds.
    pub timeout_millis: u32,
}

/// What the host does for each proxy-wasm call, in the ABI's own numbers
/// (header map and buffer types, metric kinds, stream directions).
///
/// `None` and `false` answers become the ABI's `NotFound` and `BadArgument`.
#[allow(unused_variables)]
pub trait Proxy {
    /// `proxy_log`: a line at `level` (0 trace .. 5 critical).
    fn log(&mut self, level: u32, message: &[u8]) {}
    /// WASI `fd_write` to `fd` (1 stdout, 2 stderr): by default logged, as Envoy
    /// does, at info for stdout and error for stderr.
    fn wasi_output(&mut self, fd: u32, text: &[u8]) {
        self.log(if fd == 2 { 4 } else { 2 }, text);
    }
    /// `proxy_get_log_level`.
    fn log_level(&mut self) -> Option<u32> {
        None
    }
    /// `proxy_get_header_map_value`: the first value of `name`.
    fn map_get(&mut self, map: u32, name: &[u8]) -> Option<Vec<u8>> {
        None
    }
    /// `proxy_get_header_map_pairs`.
    fn map_pairs(&mut self, map: u32) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        None
    }
    /// `proxy_replace_header_map_value`.
    fn map_set(&mut self, map: u32, name: &[u8], value: &[u8]) -> bool {
        true
    }
    /// `proxy_add_header_map_value`.
    fn map_add(&mut self, map: u32, name: &[u8], value: &[u8]) -> bool {
        true
    }
    /// `proxy_remove_header_map_value`.
    fn map_remove(&mut self, map: u32, name: &[u8]) -> bool {
        true
    }
    /// `proxy_get_buffer_bytes`: up to `max` bytes from `start`.
    fn buffer_get(&mut self, buffer: u32, start: usize, max: usize) -> Option<Vec<u8>> {
        None
    }
    /// `proxy_set_buffer_bytes`: replaces `size` bytes at `start` with `bytes`.
    fn buffer_set(&mut self, buffer: u32, start: usize, size: usize, bytes: &[u8]) -> bool {
        true
    }
    /// `proxy_send_local_response`.
    fn send_local_reply(&mut self, reply: LocalReply) -> bool {
        true
    }
    /// `proxy_get_property`: `path` is the property's segments.
    fn property(&mut self, path: &[&[u8]]) -> Option<Vec<u8>> {
        None
    }
    /// `proxy_define_metric`: the metric's id.
    fn define_metric(&mut self, kind: u32, name: &[u8]) -> Option<u32> {
        Some(0)
    }
    /// `proxy_increment_metric`.
    fn increment_metric(&mut self, id: u32, delta: i64) -> bool {
        true
    }
    /// `proxy_record_metric`.
    fn record_metric(&mut self, id: u32, value: u64) -> bool {
        true
    }
    /// `proxy_get_shared_data`: the value and its CAS.
    fn shared_get(&mut self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        None
    }
    /// `proxy_set_shared_data`: the ABI status ([`OK`], [`CAS_MISMATCH`], ...).
    fn shared_set(&mut self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        OK
    }
    /// `proxy_set_tick_period_milliseconds`.
    fn set_tick_period(&mut self, millis: u32) -> bool {
        true
    }
    /// `proxy_continue_stream` (0 request, 1 response).
    fn continue_stream(&mut self, direction: u32) -> bool {
        true
    }
    /// `proxy_get_current_time_nanoseconds`.
    fn now_nanos(&mut self) -> Option<u64> {
        None
    }
    /// `proxy_http_call`: the call's token, `None` when refused.
    fn http_call(&mut self, call: HttpCall) -> Option<u32> {
        None
    }
    /// `proxy_grpc_call`: the call's token, `None` when refused.
    fn grpc_call(&mut self, call: GrpcCall) -> Option<u32> {
        None
    }
    /// `proxy_get_status`: the code and message of the gRPC call being closed.
    fn status(&mut self) -> Option<(u32, Vec<u8>)> {
        None
    }
    /// `proxy_set_effective_context`.
    fn set_effective_context(&mut self, context: u32) -> bool {
        true
    }
    /// `proxy_set_property`: the status (path segments split at NUL).
    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> i32 {
        OK
    }
    /// `proxy_call_foreign_function`: the result, or the status.
    fn call_foreign(&mut self, name: &[u8], args: &[u8]) -> Result<Vec<u8>, i32> {
        Err(NOT_FOUND)
    }
    /// `proxy_get_metric`: a counter's or gauge's value.
    fn get_metric(&mut self, id: u32) -> Option<u64> {
        None
    }
    /// `proxy_register_shared_queue`: the queue's token, or the status.
    fn queue_register(&mut self, name: &[u8]) -> Result<u32, i32> {
        Err(NOT_FOUND)
    }
    /// `proxy_resolve_shared_queue`: the queue's token, or the status.
    fn queue_resolve(&mut self, vm_id: &[u8], name: &[u8]) -> Result<u32, i32> {
        Err(NOT_FOUND)
    }
    /// `proxy_enqueue_shared_queue`: the status.
    fn queue_enqueue(&mut self, token: u32, bytes: &[u8]) -> i32 {
        NOT_FOUND
    }
    /// `proxy_dequeue_shared_queue`: the item, or the status (`EMPTY` when none).
    fn queue_dequeue(&mut self, token: u32) -> Result<Vec<u8>, i32> {
        Err(NOT_FOUND)
    }
}

/// Why a module could not be loaded or a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Serializes header pairs as the ABI does: a count, the lengths, then each
/// name and value followed by a NUL byte.
pub fn serialize_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the ABI's serialized pairs, never panicking: a malformed buffer
/// yields the pairs read before the damage.
pub fn deserialize_pairs(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let Some(count) = u32_at(bytes, 0) else {
        return Vec::new();
    };
    let Some(mut data) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(count.min(bytes.len() / 10));
    for i in 0..count {
        let (Some(klen), Some(vlen)) = (u32_at(bytes, 4 + i * 8), u32_at(bytes, 8 + i * 8)) else {
            break;
        };
        let Some(key) = data.checked_add(klen).and_then(|end| bytes.get(data..end)) else {
            break;
        };
        data += klen + 1;
        let Some(value) = data.checked_add(vlen).and_then(|end| bytes.get(data..end)) else {
            break;
        };
        data += vlen + 1;
        out.push((key.to_vec(), value.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_damage_does_not_panic() {
        let pairs = vec![(b"a".to_vec(), b"\xff\0x".to_vec()), (vec![], vec![])];
        let bytes = serialize_pairs(&pairs);
        assert_eq!(deserialize_pairs(&bytes), pairs);
        for end in 0..bytes.len() {
            let _ = deserialize_pairs(&bytes[..end]);
        }
        assert!(deserialize_pairs(&[0xff; 4]).is_empty());
    }
}
