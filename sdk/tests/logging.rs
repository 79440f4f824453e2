//! The logging macros: lines tagged with the filter's name, and nothing formatted below the host's level.

use std::cell::Cell;
use std::fmt;

use weir::log::Level;
use weir::testing::{TestFilter, TestRequest};
use weir::{Action, HttpFilter, Request};

thread_local! {
    static FORMATTED: Cell<usize> = const { Cell::new(0) };
}

/// Counts how often it is formatted.
struct Costly;

impl fmt::Display for Costly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FORMATTED.with(|n| n.set(n.get() + 1));
        f.write_str("costly")
    }
}

#[derive(Default)]
struct Chatty;

#[weir::filter]
impl HttpFilter for Chatty {
    type Config = ();

    fn default_config() -> Option<()> {
        Some(())
    }

    fn on_request_headers(&mut self, _cx: &mut Request<'_, ()>) -> weir::Result {
        weir::debug!("detail {}", Costly);
        weir::info!("request {}", 1);
        weir::log!(Level::Warn, "odd {}", "thing");
        Ok(Action::Continue)
    }
}

#[test]
fn lines_are_tagged_with_the_filter_name_at_their_level() {
    let mut f = TestFilter::<Chatty>::configure("").unwrap();
    let ex = f.send(TestRequest::get("/"));
    assert_eq!(
        ex.logs(),
        [
            (Level::Debug, "weir-sdk: detail costly"),
            (Level::Info, "weir-sdk: request 1"),
            (Level::Warn, "weir-sdk: odd thing"),
        ]
    );
}

#[test]
fn nothing_is_formatted_below_the_hosts_level() {
    let mut f = TestFilter::<Chatty>::configure("").unwrap();
    f.set_log_level(Level::Info);
    FORMATTED.with(|n| n.set(0));
    let ex = f.send(TestRequest::get("/"));
    assert_eq!(
        FORMATTED.with(Cell::get),
        0,
        "the debug line's arguments were formatted"
    );
    assert!(!ex.logged("detail"));
    assert!(ex.logged("weir-sdk: request 1"));
    f.set_log_level(Level::Trace);
    f.send(TestRequest::get("/"));
    assert_eq!(FORMATTED.with(Cell::get), 1);
}

#[test]
fn hook_errors_are_tagged_and_skipped_below_warn() {
    #[derive(Default)]
    struct Failing;
    #[weir::filter]
    impl HttpFilter for Failing {
        type Config = ();
        fn default_config() -> Option<()> {
            Some(())
        }
        fn on_request_headers(&mut self, _cx: &mut Request<'_, ()>) -> weir::Result {
            Err(weir::Error::from("broken"))
        }
    }
    let mut f = TestFilter::<Failing>::configure("").unwrap();
    assert!(f
        .send(TestRequest::get("/"))
        .logged("weir-sdk: on_request_headers: broken"));
    f.set_log_level(Level::Error);
    let ex = f.send(TestRequest::get("/"));
    assert!(ex.logs().is_empty() && ex.forwarded(), "{:?}", ex.logs());
}
