//! An in-memory host for native tests: header maps, buffers, properties, logs,
//! local replies, callouts, metrics and shared data, with Envoy's semantics
//! (lowercase names, `get` returns the first value, `set` replaces every value).
//! [`crate::testing`] fills and reads it.

use super::{Buffer, Direction, Map, MetricKind, SetStatus};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A local reply the filter sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SentReply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub grpc_status: Option<u32>,
}

/// An HTTP call the filter dispatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentCallout {
    pub token: u32,
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    /// A gRPC call's service and method.
    pub grpc: Option<(String, String)>,
}

/// What one request leaves in the host; reset for every request.
#[derive(Default)]
pub(crate) struct State {
    pub maps: [Vec<(Vec<u8>, Vec<u8>)>; 8],
    pub buffers: [Vec<u8>; 6],
    pub properties: Vec<(String, Vec<u8>)>,
    pub logs: Vec<(u32, String)>,
    pub reply: Option<SentReply>,
    pub callouts: Vec<SentCallout>,
    /// Calls not answered yet, oldest first: token, and whether it is a gRPC call
    /// (gRPC tokens are counted apart, as in Envoy, so the two may be equal).
    pub pending: Vec<(u32, bool)>,
    /// The status message of the gRPC call being closed (`proxy_get_status`).
    pub status_message: Vec<u8>,
    pub resumed: Vec<Direction>,
    pub refuse_callouts: bool,
    /// Maps Envoy no longer shows: a direction's headers once its headers hook
    /// continued (reads find nothing, writes fail), until the access log.
    pub hidden: [bool; 8],
    /// Properties the filter wrote (`set_property`), in order.
    pub written: Vec<(String, Vec<u8>)>,
    /// Filter state the filter set (`set_envoy_filter_state`): key, value, life span.
    pub filter_state: Vec<(String, Vec<u8>, u32)>,
}

/// What outlives one request: metric values, shared data, the tick period.
#[derive(Default)]
pub(crate) struct Lasting {
    pub defined: std::collections::HashSet<u32>,
    pub counters: HashMap<u32, i64>,
    pub histograms: HashMap<u32, Vec<u64>>,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    pub tick_period: Option<Duration>,
    pub next_token: u32,
    /// The last gRPC call token (odd, as Envoy's).
    pub next_grpc_token: u32,
    /// Nanoseconds since the epoch; starts at 2023-11-14T22:13:20Z.
    pub clock: u64,
    /// The lowest level written (`Level as u32`; 0, trace, by default).
    pub log_level: u32,
    /// `vm_config.configuration`.
    pub vm_configuration: Vec<u8>,
    /// Shared queues by token - 1: (vm id, name, items).
    pub queues: Vec<(String, String, std::collections::VecDeque<Vec<u8>>)>,
    /// Queue tokens enqueued to, one per item, whose `on_queue_ready` is due.
    pub ready: Vec<u32>,
    /// A root hook (tick, queue) is running: there is no request to write on.
    pub outside_request: bool,
}

/// Where the native clock starts.
pub(crate) const CLOCK_START: u64 = 1_700_000_000_000_000_000;

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    static LASTING: RefCell<Lasting> = RefCell::new(Lasting::default());
}

/// Metric names by id, shared by every test thread: a metric's handle caches
/// its id in a `static`, so one name must have one id in every thread.
static METRIC_NAMES: Mutex<Vec<(MetricKind, String)>> = Mutex::new(Vec::new());

/// Runs `f` on this thread's per-request host state.
pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Runs `f` on this thread's lasting host state.
pub(crate) fn lasting<R>(f: impl FnOnce(&mut Lasting) -> R) -> R {
    LASTING.with(|s| f(&mut s.borrow_mut()))
}

/// The id of the metric called `name`, if one was defined.
pub(crate) fn metric_id(name: &str) -> Option<(MetricKind, u32)> {
    let names = METRIC_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names
        .iter()
        .position(|(_, n)| n == name)
        .map(|i| (names[i].0, i as u32))
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

pub(crate) fn log(level: u32, message: &str) {
    with(|s| s.logs.push((level, message.to_owned())));
}

pub(crate) fn log_level() -> Option<u32> {
    Some(lasting(|l| l.log_level))
}

pub(crate) fn map_get(map: Map, name: &[u8]) -> Option<Vec<u8>> {
    let name = lower(name);
    with(|s| {
        if s.hidden[map as usize] {
            return None;
        }
        s.maps[map as usize]
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
}

pub(crate) fn map_pairs(map: Map) -> Vec<(Vec<u8>, Vec<u8>)> {
    with(|s| {
        if s.hidden[map as usize] {
            Vec::new()
        } else {
            s.maps[map as usize].clone()
        }
    })
}

/// The whole map serialized as the ABI does it (what `proxy_get_header_map_pairs` returns).
pub(crate) fn map_pairs_bytes(map: Map) -> Vec<u8> {
    let pairs = map_pairs(map);
    let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    super::serialize_pairs(&refs)
}

pub(crate) fn map_set(map: Map, name: &[u8], value: &[u8]) -> bool {
    let name = lower(name);
    with(|s| {
        if s.hidden[map as usize] {
            return false;
        }
        let m = &mut s.maps[map as usize];
        match m.iter().position(|(k, _)| *k == name) {
            Some(first) => {
                m[first].1 = value.to_vec();
                let mut i = 0;
                m.retain(|(k, _)| {
                    i += 1;
                    i - 1 == first || *k != name
                });
            }
            None => m.push((name, value.to_vec())),
        }
        true
    })
}

pub(crate) fn map_add(map: Map, name: &[u8], value: &[u8]) -> bool {
    let name = lower(name);
    with(|s| {
        if !s.hidden[map as usize] {
            s.maps[map as usize].push((name, value.to_vec()));
        }
        !s.hidden[map as usize]
    })
}

pub(crate) fn map_remove(map: Map, name: &[u8]) -> bool {
    let name = lower(name);
    with(|s| {
        if !s.hidden[map as usize] {
            s.maps[map as usize].retain(|(k, _)| *k != name);
        }
        !s.hidden[map as usize]
    })
}

pub(crate) fn send_local_reply(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[(&[u8], &[u8])],
    grpc_status: Option<u32>,
) -> bool {
    let reply = SentReply {
        status,
        details: details.to_owned(),
        body: body.to_vec(),
        headers: headers
            .iter()
            .map(|(k, v)| (lower(k), v.to_vec()))
            .collect(),
        grpc_status,
    };
    with(|s| s.reply = Some(reply));
    true
}

pub(crate) fn buffer_get(buffer: Buffer, start: usize, max: usize) -> Vec<u8> {
    with(|s| {
        let b = &s.buffers[buffer as usize];
        let start = start.min(b.len());
        b[start..start.saturating_add(max).min(b.len())].to_vec()
    })
}

pub(crate) fn buffer_set(buffer: Buffer, start: usize, size: usize, bytes: &[u8]) -> bool {
    with(|s| {
        let b = &mut s.buffers[buffer as usize];
        let start = start.min(b.len());
        let end = start.saturating_add(size).min(b.len());
        b.splice(start..end, bytes.iter().copied());
    });
    true
}

pub(crate) fn property_at(key: &'static [u8]) -> Option<Vec<u8>> {
    let path = String::from_utf8_lossy(key);
    property(&path.split('\0').collect::<Vec<_>>())
}

pub(crate) fn property(path: &[&str]) -> Option<Vec<u8>> {
    let key = path.join(".");
    with(|s| {
        s.properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    })
}

pub(crate) fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let mut names = METRIC_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let id = match names.iter().position(|(_, n)| n == name) {
        Some(i) if names[i].0 == kind => i as u32,
        Some(_) => return None,
        None => {
            names.push((kind, name.to_owned()));
            names.len() as u32 - 1
        }
    };
    lasting(|l| l.defined.insert(id));
    Some(id)
}

pub(crate) fn increment_metric(id: u32, delta: i64) -> bool {
    lasting(|l| {
        l.defined.insert(id);
        *l.counters.entry(id).or_default() += delta
    });
    true
}

pub(crate) fn record_metric(id: u32, value: u64) -> bool {
    let kind = METRIC_NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id as usize)
        .map(|m| m.0);
    lasting(|l| {
        l.defined.insert(id);
        match kind {
            Some(MetricKind::Histogram) => l.histograms.entry(id).or_default().push(value),
            _ => {
                l.counters.insert(id, value as i64);
            }
        }
    });
    true
}

pub(crate) fn shared_get(key: &str) -> Option<(Vec<u8>, u32)> {
    lasting(|l| l.shared.get(key).cloned())
}

pub(crate) fn shared_set(key: &str, value: &[u8], cas: u32) -> SetStatus {
    lasting(|l| {
        let current = l.shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return SetStatus::CasMismatch;
        }
        l.shared
            .insert(key.to_owned(), (value.to_vec(), current + 1));
        SetStatus::Ok
    })
}

pub(crate) fn set_tick_period(millis: u32) -> bool {
    lasting(|l| l.tick_period = (millis > 0).then(|| Duration::from_millis(millis.into())));
    true
}

pub(crate) fn resume(direction: Direction) -> bool {
    with(|s| s.resumed.push(direction));
    true
}

pub(crate) fn http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Option<u32> {
    if with(|s| s.refuse_callouts) {
        return None;
    }
    let token = lasting(|l| {
        l.next_token += 1;
        l.next_token
    });
    let call = SentCallout {
        token,
        upstream: upstream.to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
        timeout,
        grpc: None,
    };
    with(|s| {
        s.callouts.push(call);
        s.pending.push((token, false));
    });
    Some(token)
}

/// The header pairs of `serialized` (the ABI's layout) as text.
fn text_pairs(serialized: &[u8]) -> Vec<(String, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    super::deserialize_pairs(serialized)
        .iter()
        .map(|(k, v)| (text(k), text(v)))
        .collect()
}

/// [`http_call`] with the headers serialized as the ABI wants them.
pub(crate) fn http_call_serialized(
    upstream: &[u8],
    headers: &[u8],
    body: &[u8],
    timeout: Duration,
) -> Option<u32> {
    let pairs = text_pairs(headers);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    http_call(&String::from_utf8_lossy(upstream), &pairs, body, timeout)
}

/// [`grpc_call`] with the metadata serialized as the ABI wants it.
pub(crate) fn grpc_call_serialized(
    cluster: &[u8],
    service: &[u8],
    method: &[u8],
    metadata: &[u8],
    message: &[u8],
    timeout: Duration,
) -> Option<u32> {
    let pairs = text_pairs(metadata);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    grpc_call(
        &text(cluster),
        &text(service),
        &text(method),
        &pairs,
        message,
        timeout,
    )
}

pub(crate) fn grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    metadata: &[(&str, &str)],
    message: &[u8],
    timeout: Duration,
) -> Option<u32> {
    if with(|s| s.refuse_callouts) {
        return None;
    }
    let token = lasting(|l| {
        l.next_grpc_token =
            l.next_grpc_token
                .wrapping_add(if l.next_grpc_token == 0 { 1 } else { 2 });
        l.next_grpc_token
    });
    let call = SentCallout {
        token,
        upstream: cluster.to_owned(),
        headers: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: message.to_vec(),
        timeout,
        grpc: Some((service.to_owned(), method.to_owned())),
    };
    with(|s| {
        s.callouts.push(call);
        s.pending.push((token, true));
    });
    Some(token)
}

pub(crate) fn status_message() -> Option<Vec<u8>> {
    Some(with(|s| s.status_message.clone()))
}

pub(crate) fn now_nanos() -> Option<u64> {
    Some(lasting(
        |l| if l.clock == 0 { CLOCK_START } else { l.clock },
    ))
}

/// The vm id of the native host's plugin (Envoy: `vm_config.vm_id`).
pub(crate) const VM_ID: &str = "weir-test";

/// The filter-state keys the native host accepts, as Envoy accepts only keys it has
/// an object factory for (its "well known filter state" list; any other is `NotFound`).
pub(crate) const FILTER_STATE_KEYS: &[&str] = &[
    "envoy.network.upstream_server_name",
    "envoy.network.application_protocols",
    "envoy.network.upstream_subject_alt_names",
    "envoy.tcp_proxy.cluster",
    "envoy.udp_proxy.cluster",
    "envoy.network.transport_socket.original_dst_address",
    "envoy.filters.listener.original_dst.local_ip",
    "envoy.filters.listener.original_dst.remote_ip",
    "envoy.upstream.dynamic_host",
    "envoy.upstream.dynamic_port",
    "envoy.string",
];

pub(crate) fn set_property(path: &[&str], value: &[u8]) -> u32 {
    if lasting(|l| l.outside_request) {
        return super::status::NOT_FOUND; // Envoy: no stream info outside a request
    }
    let key = path.join(".");
    with(|s| {
        s.properties.retain(|(k, _)| *k != key);
        s.properties.push((key.clone(), value.to_vec()));
        s.written.push((key, value.to_vec()));
    });
    super::status::OK
}

/// The fields of a `SetEnvoyFilterStateArguments` message, as Envoy parses it;
/// `None` for bytes that are not one.
fn filter_state_arguments(mut bytes: &[u8]) -> Option<(String, Vec<u8>, u32)> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let (mut path, mut value, mut span) = (String::new(), Vec::new(), 0);
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        match (tag >> 3, tag & 7) {
            (field @ (1 | 2), 2) => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (data, rest) = (bytes.get(..len)?, bytes.get(len..)?);
                bytes = rest;
                if field == 1 {
                    path = String::from_utf8(data.to_vec()).ok()?;
                } else {
                    value = data.to_vec();
                }
            }
            (3, 0) => span = u32::try_from(varint(&mut bytes)?).ok()?,
            _ => return None,
        }
    }
    Some((path, value, span))
}

pub(crate) fn call_foreign(name: &str, args: &[u8]) -> Result<Vec<u8>, u32> {
    if name != "set_envoy_filter_state" {
        return Err(super::status::NOT_FOUND);
    }
    let (path, value, span) = filter_state_arguments(args).ok_or(super::status::BAD_ARGUMENT)?;
    if !FILTER_STATE_KEYS.contains(&path.as_str()) || lasting(|l| l.outside_request) {
        return Err(super::status::NOT_FOUND);
    }
    with(|s| {
        s.filter_state.retain(|(k, _, _)| *k != path);
        s.filter_state.push((path, value, span));
    });
    Ok(Vec::new())
}

pub(crate) fn vm_configuration() -> Vec<u8> {
    lasting(|l| l.vm_configuration.clone())
}

pub(crate) fn get_metric(id: u32) -> Option<u64> {
    let kind = METRIC_NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id as usize)
        .map(|m| m.0)?;
    if kind == MetricKind::Histogram {
        return None;
    }
    lasting(|l| {
        l.defined
            .contains(&id)
            .then(|| l.counters.get(&id).copied().unwrap_or(0) as u64)
    })
}

pub(crate) fn queue_register(name: &str) -> Result<u32, u32> {
    Ok(lasting(|l| {
        match l
            .queues
            .iter()
            .position(|(v, n, _)| v == VM_ID && n == name)
        {
            Some(i) => i as u32 + 1,
            None => {
                l.queues
                    .push((VM_ID.to_owned(), name.to_owned(), Default::default()));
                l.queues.len() as u32
            }
        }
    }))
}

pub(crate) fn queue_resolve(vm_id: &str, name: &str) -> Result<u32, u32> {
    lasting(|l| {
        l.queues
            .iter()
            .position(|(v, n, _)| v == vm_id && n == name)
            .map(|i| i as u32 + 1)
            .ok_or(super::status::NOT_FOUND)
    })
}

pub(crate) fn queue_enqueue(token: u32, bytes: &[u8]) -> u32 {
    lasting(
        |l| match l.queues.get_mut((token as usize).wrapping_sub(1)) {
            Some((_, _, items)) => {
                items.push_back(bytes.to_vec());
                l.ready.push(token);
                super::status::OK
            }
            None => super::status::NOT_FOUND,
        },
    )
}

pub(crate) fn queue_dequeue(token: u32) -> Result<Vec<u8>, u32> {
    lasting(
        |l| match l.queues.get_mut((token as usize).wrapping_sub(1)) {
            Some((_, _, items)) => items.pop_front().ok_or(super::status::EMPTY),
            None => Err(super::status::NOT_FOUND),
        },
    )
}
