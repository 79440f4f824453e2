//! An in-memory host for native tests: header maps, logs and the local reply,
//! with Envoy's semantics (lowercase names, `get` returns the first value,
//! `set` replaces every value). [`crate::testing`] fills and reads it.

use super::Map;
use std::cell::RefCell;

/// A local reply the filter sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SentReply {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub grpc_status: Option<u32>,
}

#[derive(Default)]
pub(crate) struct State {
    pub maps: [Vec<(Vec<u8>, Vec<u8>)>; 8],
    pub logs: Vec<(u32, String)>,
    pub reply: Option<SentReply>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Runs `f` on this thread's host state.
pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

fn lower(name: &[u8]) -> Vec<u8> {
    name.to_ascii_lowercase()
}

pub(crate) fn log(level: u32, message: &str) {
    with(|s| s.logs.push((level, message.to_owned())));
}

pub(crate) fn map_get(map: Map, name: &str) -> Option<Vec<u8>> {
    let name = lower(name.as_bytes());
    with(|s| s.maps[map as usize].iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
}

pub(crate) fn map_pairs(map: Map) -> Vec<(Vec<u8>, Vec<u8>)> {
    with(|s| s.maps[map as usize].clone())
}

pub(crate) fn map_set(map: Map, name: &[u8], value: &[u8]) -> bool {
    let name = lower(name);
    with(|s| {
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
    });
    true
}

pub(crate) fn map_add(map: Map, name: &[u8], value: &[u8]) -> bool {
    let name = lower(name);
    with(|s| s.maps[map as usize].push((name, value.to_vec())));
    true
}

pub(crate) fn map_remove(map: Map, name: &[u8]) -> bool {
    let name = lower(name);
    with(|s| s.maps[map as usize].retain(|(k, _)| *k != name));
    true
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
        headers: headers.iter().map(|(k, v)| (lower(k), v.to_vec())).collect(),
        grpc_status,
    };
    with(|s| s.reply = Some(reply));
    true
}
