//! The proxy-wasm ABI calls, each returning what it found instead of panicking.
//!
//! proxy-wasm's own `hostcalls` panic on an unexpected status and unwrap header
//! names as UTF-8; every call weir makes is declared here instead, so that
//! nothing the host returns can trap the VM.

use super::{Buffer, Direction, Map, MetricKind, SetStatus};
use std::ptr::null_mut;

const OK: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Takes ownership of a buffer the host allocated through our `malloc`.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

pub(crate) fn log(level: u32, message: &str) {
    unsafe {
        proxy_log(level, message.as_ptr(), message.len());
    }
}

/// The lowest level the proxy writes, when it says.
pub(crate) fn log_level() -> Option<u32> {
    let mut level = 0;
    (unsafe { proxy_get_log_level(&mut level) } == 0).then_some(level)
}

pub(crate) fn map_get(map: Map, name: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0);
    unsafe {
        match proxy_get_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            &mut data,
            &mut size,
        ) {
            OK => Some(take(data, size)),
            _ => None,
        }
    }
}

pub(crate) fn map_pairs(map: Map) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (mut data, mut size) = (null_mut(), 0);
    unsafe {
        match proxy_get_header_map_pairs(map as u32, &mut data, &mut size) {
            OK => super::deserialize_pairs(&take(data, size)),
            _ => Vec::new(),
        }
    }
}

/// The whole map as the host serialized it, in one call (empty when there is none).
pub(crate) fn map_pairs_bytes(map: Map) -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0);
    unsafe {
        match proxy_get_header_map_pairs(map as u32, &mut data, &mut size) {
            OK => take(data, size),
            _ => Vec::new(),
        }
    }
}

pub(crate) fn map_set(map: Map, name: &[u8], value: &[u8]) -> bool {
    unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ) == OK
    }
}

pub(crate) fn map_add(map: Map, name: &[u8], value: &[u8]) -> bool {
    unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ) == OK
    }
}

pub(crate) fn map_remove(map: Map, name: &[u8]) -> bool {
    unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) == OK }
}

/// The plugin configuration Envoy passed to `proxy_on_configure`.
pub(crate) fn plugin_configuration(size: usize) -> Vec<u8> {
    const PLUGIN_CONFIGURATION: u32 = 7;
    if size == 0 {
        return Vec::new();
    }
    let (mut data, mut len) = (null_mut(), 0);
    unsafe {
        match proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) {
            OK => take(data, len),
            _ => Vec::new(),
        }
    }
}

pub(crate) fn send_local_reply(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[(&[u8], &[u8])],
    grpc_status: Option<u32>,
) -> bool {
    let headers = super::serialize_pairs(headers);
    let grpc = grpc_status.map_or(-1, |s| s as i32);
    unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc,
        ) == OK
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(nanos: *mut u64) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_millis: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_set_effective_context(context: u32) -> u32;
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_grpc_call(
        service: *const u8,
        service_size: usize,
        service_name: *const u8,
        service_name_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        message: *const u8,
        message_size: usize,
        timeout_millis: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_get_status(code: *mut u32, message: *mut *mut u8, message_size: *mut usize) -> u32;
}

/// The status message of the gRPC call being closed (`proxy_get_status`).
pub(crate) fn status_message() -> Option<Vec<u8>> {
    let (mut code, mut data, mut len) = (0, null_mut(), 0);
    unsafe {
        match proxy_get_status(&mut code, &mut data, &mut len) {
            OK => Some(take(data, len)),
            _ => None,
        }
    }
}

const CAS_MISMATCH: u32 = 8;

pub(crate) fn buffer_get(buffer: Buffer, start: usize, max: usize) -> Vec<u8> {
    if max == 0 {
        return Vec::new();
    }
    let (mut data, mut len) = (null_mut(), 0);
    unsafe {
        match proxy_get_buffer_bytes(buffer as u32, start, max, &mut data, &mut len) {
            OK => take(data, len),
            _ => Vec::new(),
        }
    }
}

pub(crate) fn buffer_set(buffer: Buffer, start: usize, size: usize, bytes: &[u8]) -> bool {
    unsafe { proxy_set_buffer_bytes(buffer as u32, start, size, bytes.as_ptr(), bytes.len()) == OK }
}

/// A property by its ABI key, written out (`b"source\0address"`): no key built
/// per call (an allocation costs more than the rest of the call's work in the module).
pub(crate) fn property_at(key: &'static [u8]) -> Option<Vec<u8>> {
    let (mut data, mut len) = (null_mut(), 0);
    unsafe {
        match proxy_get_property(key.as_ptr(), key.len(), &mut data, &mut len) {
            OK => Some(take(data, len)),
            _ => None,
        }
    }
}

pub(crate) fn property(path: &[&str]) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    let (mut data, mut len) = (null_mut(), 0);
    unsafe {
        match proxy_get_property(key.as_ptr(), key.len(), &mut data, &mut len) {
            OK => Some(take(data, len)),
            _ => None,
        }
    }
}

pub(crate) fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let mut id = 0;
    unsafe {
        (proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) == OK).then_some(id)
    }
}

pub(crate) fn increment_metric(id: u32, delta: i64) -> bool {
    unsafe { proxy_increment_metric(id, delta) == OK }
}

pub(crate) fn record_metric(id: u32, value: u64) -> bool {
    unsafe { proxy_record_metric(id, value) == OK }
}

pub(crate) fn shared_get(key: &str) -> Option<(Vec<u8>, u32)> {
    let (mut data, mut len, mut cas) = (null_mut(), 0, 0);
    unsafe {
        match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut len, &mut cas) {
            OK => Some((take(data, len), cas)),
            _ => None,
        }
    }
}

pub(crate) fn shared_set(key: &str, value: &[u8], cas: u32) -> SetStatus {
    unsafe {
        match proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) {
            OK => SetStatus::Ok,
            CAS_MISMATCH => SetStatus::CasMismatch,
            _ => SetStatus::Failed,
        }
    }
}

pub(crate) fn set_tick_period(millis: u32) -> bool {
    unsafe { proxy_set_tick_period_milliseconds(millis) == OK }
}

pub(crate) fn resume(direction: Direction) -> bool {
    unsafe { proxy_continue_stream(direction as u32) == OK }
}

/// Dispatches an HTTP callout, the headers serialized as the ABI wants them (no
/// copy made); the host answers through `proxy_on_http_call_response`.
pub(crate) fn http_call_serialized(
    upstream: &[u8],
    headers: &[u8],
    body: &[u8],
    timeout: std::time::Duration,
) -> Option<u32> {
    const NO_TRAILERS: [u8; 4] = [0; 4];
    let millis = timeout.as_millis().min(u32::MAX.into()) as u32;
    let mut token = 0;
    unsafe {
        (proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            NO_TRAILERS.as_ptr(),
            NO_TRAILERS.len(),
            millis,
            &mut token,
        ) == OK)
            .then_some(token)
    }
}

/// Dispatches a unary gRPC call, the metadata serialized as the ABI wants it; the
/// host answers through `proxy_on_grpc_receive` (the reply) or `proxy_on_grpc_close`
/// (a failure) with the returned token.
pub(crate) fn grpc_call_serialized(
    cluster: &[u8],
    service: &[u8],
    method: &[u8],
    metadata: &[u8],
    message: &[u8],
    timeout: std::time::Duration,
) -> Option<u32> {
    let upstream = super::grpc_service(std::str::from_utf8(cluster).unwrap_or_default());
    let millis = timeout.as_millis().min(u32::MAX.into()) as u32;
    let mut token = 0;
    unsafe {
        (proxy_grpc_call(
            upstream.as_ptr(),
            upstream.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            message.as_ptr(),
            message.len(),
            millis,
            &mut token,
        ) == OK)
            .then_some(token)
    }
}

/// Makes `context` the one later host calls act on (a callout's answer arrives
/// outside the request's own hooks).
pub(crate) fn set_effective_context(context: u32) -> bool {
    unsafe { proxy_set_effective_context(context) == OK }
}

pub(crate) fn now_nanos() -> Option<u64> {
    let mut nanos = 0;
    unsafe { (proxy_get_current_time_nanoseconds(&mut nanos) == OK).then_some(nanos) }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_get_metric(id: u32, value: *mut u64) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_size: usize, token: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id: *const u8,
        vm_id_size: usize,
        name: *const u8,
        name_size: usize,
        token: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(token: u32, data: *const u8, data_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(token: u32, data: *mut *mut u8, data_size: *mut usize) -> u32;
}

/// The property path as the ABI spells it: segments joined by NUL bytes.
fn property_key(path: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// Writes a property (Envoy keeps it as filter state `wasm.<path>`); the ABI status.
pub(crate) fn set_property(path: &[&str], value: &[u8]) -> u32 {
    let key = property_key(path);
    unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

/// Calls the host's foreign function `name`: what it returned, or the ABI status.
pub(crate) fn call_foreign(name: &str, args: &[u8]) -> Result<Vec<u8>, u32> {
    let (mut data, mut len) = (null_mut(), 0);
    unsafe {
        match proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            args.as_ptr(),
            args.len(),
            &mut data,
            &mut len,
        ) {
            OK => Ok(take(data, len)),
            status => Err(status),
        }
    }
}

/// `vm_config.configuration`, which Envoy keeps readable from any context.
pub(crate) fn vm_configuration() -> Vec<u8> {
    const VM_CONFIGURATION: u32 = 6;
    buffer_get_raw(VM_CONFIGURATION, i32::MAX as usize)
}

fn buffer_get_raw(buffer: u32, max: usize) -> Vec<u8> {
    let (mut data, mut len) = (null_mut(), 0);
    unsafe {
        match proxy_get_buffer_bytes(buffer, 0, max, &mut data, &mut len) {
            OK => take(data, len),
            _ => Vec::new(),
        }
    }
}

/// A counter's or gauge's current value (Envoy reads no histogram back).
pub(crate) fn get_metric(id: u32) -> Option<u64> {
    let mut value = 0;
    unsafe { (proxy_get_metric(id, &mut value) == OK).then_some(value) }
}

pub(crate) fn queue_register(name: &str) -> Result<u32, u32> {
    let mut token = 0;
    match unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut token) } {
        OK => Ok(token),
        status => Err(status),
    }
}

pub(crate) fn queue_resolve(vm_id: &str, name: &str) -> Result<u32, u32> {
    let mut token = 0;
    match unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut token,
        )
    } {
        OK => Ok(token),
        status => Err(status),
    }
}

pub(crate) fn queue_enqueue(token: u32, bytes: &[u8]) -> u32 {
    unsafe { proxy_enqueue_shared_queue(token, bytes.as_ptr(), bytes.len()) }
}

pub(crate) fn queue_dequeue(token: u32) -> Result<Vec<u8>, u32> {
    let (mut data, mut len) = (null_mut(), 0);
    match unsafe { proxy_dequeue_shared_queue(token, &mut data, &mut len) } {
        OK => Ok(unsafe { take(data, len) }),
        status => Err(status),
    }
}
