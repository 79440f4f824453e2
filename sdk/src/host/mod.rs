//! The host seam: every call the SDK makes to the proxy goes through here.
//!
//! On `wasm32` these are the proxy-wasm ABI calls (`wasm.rs`); everywhere else they
//! act on an in-memory host that [`crate::testing`] drives (`native.rs`). Both halves
//! expose the same functions, so the filter runtime above them is one piece of code.

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::*;

/// The proxy's header maps, numbered as the ABI numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Map {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    ResponseTrailers = 3,
    HttpCallResponseHeaders = 6,
}

/// The proxy's byte buffers, numbered as the ABI numbers them.
#[allow(clippy::enum_variant_names)] // the ABI's names
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Buffer {
    RequestBody = 0,
    ResponseBody = 1,
    HttpCallResponseBody = 4,
    GrpcReceive = 5,
}

/// Which way a paused stream goes on (the ABI's `StreamType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Direction {
    Request = 0,
    Response = 1,
}

/// The metric kinds, numbered as the ABI numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// What `shared_set` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the native host never fails
pub(crate) enum SetStatus {
    Ok,
    CasMismatch,
    Failed,
}

/// The proxy-wasm status codes the SDK tells apart (the ABI's `WasmResult`).
pub(crate) mod status {
    /// The call did what it was asked.
    pub(crate) const OK: u32 = 0;
    /// Nothing by that name or token (an unknown property, filter-state key or queue).
    pub(crate) const NOT_FOUND: u32 = 1;
    /// The host refused the arguments (e.g. a value it cannot parse, or no request here).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // only the native host says it
    pub(crate) const BAD_ARGUMENT: u32 = 2;
    /// A queue had nothing to dequeue.
    pub(crate) const EMPTY: u32 = 7;
}

/// The `GrpcService` message (`envoy.config.core.v3`) naming Envoy's own gRPC
/// client for `cluster`: `envoy_grpc { cluster_name }`. Envoy would also take the
/// bare name, but only when it does not happen to parse as that message.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn grpc_service(cluster: &str) -> Vec<u8> {
    crate::proto::Writer::new()
        .message(1, |m| m.string(1, cluster))
        .into_bytes()
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
/// Serializes header pairs the way the ABI expects them: a count, the lengths,
/// then each name and value followed by a NUL byte.
pub(crate) fn serialize_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
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

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
/// Parses the ABI's serialized pairs, never panicking: a malformed buffer
/// yields the pairs read before the damage.
pub(crate) fn deserialize_pairs(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
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
    fn pairs_round_trip_with_any_bytes() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"a", b"\xff\x00x"), (b"", b""), (b":path", b"/")];
        let back = deserialize_pairs(&serialize_pairs(&pairs));
        let back: Vec<(&[u8], &[u8])> = back.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(back, pairs);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_deserialize_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = deserialize_pairs(&bytes);
        }

        #[test]
        fn any_pairs_round_trip(pairs in proptest::collection::vec(
            (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)),
            0..10,
        )) {
            let borrowed: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            proptest::prop_assert_eq!(deserialize_pairs(&serialize_pairs(&borrowed)), pairs);
        }
    }

    #[test]
    fn truncated_pairs_do_not_panic() {
        let full = serialize_pairs(&[(b"name", b"value"), (b"k", b"v")]);
        for end in 0..full.len() {
            let _ = deserialize_pairs(&full[..end]);
        }
        assert!(deserialize_pairs(&[0xff, 0xff, 0xff, 0xff]).is_empty());
    }
}
