//! Callouts in the native harness: several in flight, `Wait::First` with a hook that
//! waits on, a reply dropping later answers, header bytes, gRPC answers, tick callouts
//! without their hook.

use weir::testing::{TestFilter, TestRequest, TestResponse};
use weir::{
    Action, Callback, Callout, CalloutResponse, HttpFilter, LocalReply, Request, Tick, Wait,
};

/// Calls three clusters, waits for the first 200 (a failure waits on); records
/// what it saw.
#[derive(Default)]
struct FirstSuccess {
    seen: Vec<(usize, Option<u16>, usize)>,
}

#[weir::filter]
impl HttpFilter for FirstSuccess {
    type Config = ();
    fn default_config() -> Option<()> {
        Some(())
    }
    fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
        let calls = ["a", "b", "c"].map(|c| Callout::get(c, "/"));
        cx.callouts(Wait::First, calls)
    }
    fn on_callout_response(
        &mut self,
        cx: &mut Callback<'_, ()>,
        r: CalloutResponse,
    ) -> weir::Result {
        self.seen.push((r.index(), r.status(), cx.pending()));
        if r.header_bytes("x-deny").is_some() {
            return cx
                .reply(LocalReply::new(403).body(r.header_bytes("x-deny").unwrap_or_default()));
        }
        let tag = format!("{:?}", self.seen);
        cx.request_headers().set("x-seen", tag.as_str())?;
        Ok(if r.status() == Some(200) {
            Action::Continue
        } else {
            Action::Pause
        })
    }
}

#[test]
fn first_waits_on_while_the_hook_pauses_then_drops_the_rest() {
    let mut f = TestFilter::<FirstSuccess>::configure("").unwrap();
    f.answer_callouts(|c| match c.upstream() {
        "a" => None,
        "b" => Some(TestResponse::new(200)),
        _ => Some(TestResponse::new(200).header("x-late", "yes")),
    });
    let ex = f.send(TestRequest::get("/"));
    assert!(ex.forwarded());
    assert_eq!(ex.callouts().len(), 3);
    // a timed out (Envoy's 504: waits on, 2 still pending), b succeeded (resumes);
    // c's answer came too late.
    assert_eq!(
        ex.upstream_header("x-seen").unwrap(),
        "[(0, Some(504), 2), (1, Some(200), 1)]"
    );
}

#[test]
fn a_reply_drops_the_answers_still_to_come_and_header_values_are_bytes() {
    let mut f = TestFilter::<FirstSuccess>::configure("").unwrap();
    f.answer_callouts(|_| Some(TestResponse::new(500).header("x-deny", b"\xffno")));
    let ex = f.send(TestRequest::get("/"));
    assert_eq!(ex.status(), 403);
    assert_eq!(
        ex.reply_body(),
        Some(&b"\xffno"[..]),
        "non-UTF-8 bytes, intact"
    );
    assert_eq!(
        ex.logs().len(),
        0,
        "the two later answers ran no hook: {:?}",
        ex.logs()
    );
}

#[test]
fn answer_headers_read_as_bytes_str_and_all() {
    let r = {
        #[derive(Default)]
        struct Keep;
        #[weir::filter]
        impl HttpFilter for Keep {
            type Config = ();
            fn default_config() -> Option<()> {
                Some(())
            }
            fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
                cx.callout(Callout::get("a", "/"))
            }
            fn on_callout_response(
                &mut self,
                cx: &mut Callback<'_, ()>,
                r: CalloutResponse,
            ) -> weir::Result {
                let all: Vec<String> = r
                    .header_all("x-v")
                    .iter()
                    .map(|v| format!("{v:?}"))
                    .collect();
                let shown = format!(
                    "{:?}|{:?}|{}",
                    r.header_str("x-v"),
                    r.header_bytes("X-V"),
                    all.join(";")
                );
                cx.request_headers().set("x-shown", shown.as_str())?;
                Ok(Action::Continue)
            }
        }
        let mut f = TestFilter::<Keep>::configure("").unwrap();
        f.answer_callouts(|_| {
            Some(
                TestResponse::new(200)
                    .header("x-v", b"\xfe")
                    .header("x-v", "ok"),
            )
        });
        f.send(TestRequest::get("/"))
    };
    assert_eq!(
        r.upstream_header("x-shown").unwrap(),
        "None|Some([254])|[254];[111, 107]"
    );
}

/// A tick that calls out without `on_tick_callout_response`.
#[derive(Default)]
struct Deaf;

#[weir::filter]
impl HttpFilter for Deaf {
    type Config = ();
    fn default_config() -> Option<()> {
        Some(())
    }
    fn tick_period(_: &()) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(1))
    }
    fn on_tick(cx: &mut Tick<'_, ()>) {
        if let Err(e) = cx.callout(Callout::get("a", "/")) {
            weir::warn!("{e}");
        }
    }
}

#[test]
fn a_tick_callout_without_its_hook_is_an_error() {
    let mut f = TestFilter::<Deaf>::configure("").unwrap();
    let logs = f.tick();
    assert!(
        logs[0]
            .1
            .contains("needs an `on_tick_callout_response` hook"),
        "{logs:?}"
    );
    assert!(f.tick_callouts().is_empty());
}
