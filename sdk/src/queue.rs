//! Shared queues: bytes handed from any request, on any worker, to the one plugin
//! that registered the queue, which [`on_queue_ready`](crate::HttpFilter::on_queue_ready)
//! wakes to take them.
//!
//! A queue belongs to the plugin whose hook first [`register`](Queue::register)s
//! its name in this VM id (registering again returns the same queue); anyone who
//! knows the VM id and the name [`resolve`](Queue::resolve)s it and
//! [`enqueue`](Queue::enqueue)s. Envoy then calls the registrant's
//! `on_queue_ready` once per item, on the registrant's worker.
//!
//! ```
//! use weir::queue::Queue;
//! use weir::{Action, HttpFilter, Request, Tick};
//!
//! #[derive(Default)]
//! struct Audit;
//!
//! #[weir::filter]
//! impl HttpFilter for Audit {
//!     type Config = ();
//!
//!     fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
//!         let queue = Queue::register("audit")?; // the first request's worker will drain it
//!         if let Some(path) = cx.properties().raw_path() {
//!             queue.enqueue(path.as_bytes())?;
//!         }
//!         Ok(Action::Continue)
//!     }
//!
//!     fn on_queue_ready(_cx: &mut Tick<'_, ()>, queue: Queue) {
//!         while let Ok(Some(path)) = queue.dequeue() {
//!             weir::info!("audit: {}", String::from_utf8_lossy(&path));
//!         }
//!     }
//! }
//! ```

use std::fmt;

use crate::host::{self, status};

/// One shared queue, by the token the proxy gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Queue(u32);

/// Why a queue call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// No queue has this token (or none was registered under the name).
    NotFound,
    /// The proxy refused the call (its proxy-wasm status code).
    Refused(u32),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::NotFound => f.write_str(
                "no such shared queue: register it first (Queue::register) in the plugin that drains it",
            ),
            QueueError::Refused(code) => {
                write!(f, "the proxy refused the shared queue call (status {code})")
            }
        }
    }
}

impl std::error::Error for QueueError {}

impl From<QueueError> for crate::Error {
    fn from(e: QueueError) -> Self {
        crate::Error::new(e)
    }
}

fn refused(code: u32) -> QueueError {
    match code {
        status::NOT_FOUND => QueueError::NotFound,
        code => QueueError::Refused(code),
    }
}

impl Queue {
    /// Registers the queue `name` in this VM id, with this plugin as the one
    /// whose `on_queue_ready` runs when something is enqueued; returns the queue
    /// already registered under that name, if any (Envoy keeps the first
    /// registrant). Call it from any hook of the plugin that drains it.
    pub fn register(name: &str) -> Result<Queue, QueueError> {
        host::queue_register(name).map(Queue).map_err(refused)
    }

    /// The queue registered as `name` in the VM `vm_id` (this VM's is
    /// [`crate::vm::id`]), or `None` when nobody registered it (yet).
    pub fn resolve(vm_id: &str, name: &str) -> Option<Queue> {
        host::queue_resolve(vm_id, name).ok().map(Queue)
    }

    /// Adds `bytes` at the back of the queue; its registrant's `on_queue_ready` follows.
    pub fn enqueue(&self, bytes: &[u8]) -> Result<(), QueueError> {
        match host::queue_enqueue(self.0, bytes) {
            status::OK => Ok(()),
            code => Err(refused(code)),
        }
    }

    /// Takes the item at the front of the queue: `Ok(None)` when it is empty.
    pub fn dequeue(&self) -> Result<Option<Vec<u8>>, QueueError> {
        match host::queue_dequeue(self.0) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(status::EMPTY) => Ok(None),
            Err(code) => Err(refused(code)),
        }
    }

    /// The proxy's token for this queue (what `on_queue_ready` is called with).
    pub fn token(&self) -> u32 {
        self.0
    }

    pub(crate) fn from_token(token: u32) -> Queue {
        Queue(token)
    }
}
