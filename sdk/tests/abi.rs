//! The rest of the ABI in the native harness: queue hooks and their bit, writes
//! outside a request, shared data removed under a stale version, metrics read back.
//! (`tests/fixtures/abi` covers the same through a module and in Envoy.)

use weir::hooks::{QUEUE_READY, REQUEST_HEADERS, TICK};
use weir::metrics::{Counter, Gauge};
use weir::property::PropertyError;
use weir::queue::Queue;
use weir::shared::SharedError;
use weir::testing::{TestFilter, TestRequest};
use weir::{Action, HttpFilter, Request, Tick};

/// Registers `events` on each tick and counts what `on_queue_ready` drains; tries
/// to write a property from the tick, where there is no request.
#[derive(Default)]
struct Drain;

static DRAINED: Counter = Counter::new("abi_drained");
static DEPTH: Gauge = Gauge::new("abi_depth");

#[weir::filter]
impl HttpFilter for Drain {
    type Config = ();

    fn default_config() -> Option<()> {
        Some(())
    }

    fn tick_period(_: &()) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(1))
    }

    fn on_tick(cx: &mut Tick<'_, ()>) {
        if let Err(e) = Queue::register("events") {
            weir::warn!("register: {e}");
        }
        match cx.properties().set("from_tick", b"x") {
            Err(PropertyError::NoRequest) => weir::info!("no request on a tick"),
            other => weir::warn!("unexpected: {other:?}"),
        }
    }

    fn on_queue_ready(_cx: &mut Tick<'_, ()>, queue: Queue) {
        while let Ok(Some(item)) = queue.dequeue() {
            DRAINED.inc();
            weir::info!("drained {}", String::from_utf8_lossy(&item));
        }
        DEPTH.set(0);
    }

    fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
        let vm = weir::vm::id()
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let vm = String::from_utf8(vm).unwrap_or_default();
        match Queue::resolve(&vm, "events") {
            Some(queue) => {
                DEPTH.add(1);
                queue.enqueue(b"hit")?;
            }
            None => cx.headers().set("x-queue", "unregistered")?,
        }
        Ok(Action::Continue)
    }
}

#[test]
fn on_queue_ready_is_a_hook_bit_of_its_own() {
    assert_eq!(Drain::HOOKS, REQUEST_HEADERS | TICK | QUEUE_READY);
    #[derive(Default)]
    struct Plain;
    #[weir::filter]
    impl HttpFilter for Plain {
        type Config = ();
        fn on_request_headers(&mut self, _: &mut Request<'_, ()>) -> weir::Result {
            Ok(Action::Continue)
        }
    }
    assert_eq!(Plain::HOOKS & QUEUE_READY, 0);
    assert_eq!(
        weir::__private::exported_hooks::<Drain>() & QUEUE_READY,
        QUEUE_READY
    );
}

#[test]
fn a_queue_registered_on_a_tick_is_drained_after_each_request() {
    let mut f = TestFilter::<Drain>::configure("").unwrap();
    let ex = f.send(TestRequest::get("/"));
    assert_eq!(ex.upstream_header("x-queue").unwrap(), "unregistered");
    let logs = f.tick();
    assert!(
        logs.iter().any(|(_, l)| l.contains("no request on a tick")),
        "{logs:?}"
    );
    let ex = f.send(TestRequest::get("/"));
    assert_eq!(ex.upstream_header("x-queue"), None);
    f.send(TestRequest::get("/"));
    assert_eq!(f.metric("abi_drained"), Some(2));
    assert_eq!(f.metric("abi_depth"), Some(0));
    assert!(f.enqueue("events", b"from another worker"));
    assert_eq!(f.metric("abi_drained"), Some(3));
    if !f.is_module() {
        assert_eq!(DRAINED.value(), Some(3));
        assert_eq!(DEPTH.value(), Some(0));
    }
}

#[test]
fn removing_under_a_stale_version_conflicts_and_an_empty_value_reads_as_none() {
    let _f = TestFilter::<Drain>::configure("").unwrap();
    weir::shared::set("k", b"v1", None).unwrap();
    let stale = weir::shared::get("k").unwrap().version;
    weir::shared::set("k", b"v2", None).unwrap();
    assert_eq!(
        weir::shared::remove("k", Some(stale)),
        Err(SharedError::Conflict)
    );
    assert_eq!(weir::shared::get("k").unwrap().value, b"v2");
    weir::shared::remove("k", None).unwrap();
    assert_eq!(weir::shared::get("k"), None);
    weir::shared::set("k", b"", None).unwrap();
    assert_eq!(weir::shared::get("k"), None, "an empty value is no value");
}
