//! The surface a filter author types: one name type for every header method, the
//! host's refusal of a header write as `Err`, method/path/authority from
//! `properties()`, and metrics declared once with `weir::metrics!`.

use weir::testing::{TestFilter, TestRequest, TestResponse};
use weir::{Action, HeaderError, HeaderName, HttpFilter, Request};

weir::metrics! {
    /// Requests seen.
    static SEEN: Counter = "surface_seen";
    /// Never recorded: it must still show, at zero, once configured.
    static IDLE: Gauge = "surface_idle";
}

#[derive(serde::Deserialize)]
struct Config {
    name: HeaderName,
}

#[derive(Default)]
struct Surface;

#[weir::filter]
impl HttpFilter for Surface {
    type Config = Config;

    fn on_request_headers(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        SEEN.inc();
        let name = &cx.config().name;
        let headers = cx.headers();
        // The same calls with a HeaderName and with text.
        let by_name = headers.get(name).map(|v| v.into_bytes());
        let by_text = headers.get(name.as_str()).map(|v| v.into_bytes());
        assert_eq!(by_name, by_text);
        let all = headers.get_all(name).len();
        headers.set("x-copies", all.to_string())?;
        headers.remove(name)?;
        let props = cx.properties();
        let line = format!(
            "{:?} {:?} {:?}",
            props.method().and_then(|v| v.to_str().map(str::to_owned)),
            props
                .path()
                .ok()
                .and_then(|v| v.to_str().map(str::to_owned)),
            props
                .authority()
                .and_then(|v| v.to_str().map(str::to_owned)),
        );
        cx.headers().set("x-line", line)?;
        Ok(Action::Continue)
    }

    fn on_request_body(&mut self, cx: &mut Request<'_, Config>) -> weir::Result {
        let _ = IDLE.metric();
        // The request headers have gone on: the proxy refuses writes to them.
        let verdict: &[u8] = match cx.headers().set("x-late", "1") {
            Err(HeaderError::Refused { op: "set", .. }) => b"refused",
            Err(_) => b"other error",
            Ok(()) => b"accepted",
        };
        cx.body().replace(verdict)?;
        Ok(Action::Continue)
    }
}

fn filter() -> TestFilter<Surface> {
    TestFilter::configure(r#"{"name": "x-secret"}"#).expect("configures")
}

#[test]
fn header_methods_take_a_header_name_or_text_alike() {
    let ex = filter().send(
        TestRequest::get("/")
            .header("x-secret", "a")
            .header("x-secret", "b"),
    );
    assert_eq!(ex.upstream_header("x-copies").unwrap(), "2");
    assert_eq!(
        ex.upstream_header("x-secret"),
        None,
        "removed by HeaderName"
    );
}

#[test]
fn method_path_and_authority_are_read_canonically_from_properties() {
    let ex = filter().send(
        TestRequest::new("DELETE", "/a/./b/../%63?q=1")
            .header(":authority", "API.Example.com.:8443")
            .respond_with(TestResponse::new(200)),
    );
    assert_eq!(
        ex.upstream_header("x-line").unwrap(),
        r#"Some("DELETE") Some("/a/c") Some("api.example.com")"#
    );
}

#[test]
fn a_refused_header_write_is_an_err() {
    let ex = filter().send(TestRequest::new("POST", "/").body("x"));
    assert_eq!(ex.upstream_body(), b"refused");
    assert_eq!(ex.upstream_header("x-late"), None);
}

#[test]
fn metrics_declared_once_are_defined_at_configure() {
    let mut f = filter();
    assert_eq!(
        f.metric("surface_seen"),
        Some(0),
        "defined before any request"
    );
    assert_eq!(
        f.metric("surface_idle"),
        Some(0),
        "defined though never recorded"
    );
    f.send(TestRequest::get("/"));
    assert_eq!(f.metric("surface_seen"), Some(1));
}

mod istio {
    use weir::testing::{TestFilter, TestRequest};
    use weir::{Action, Callback, Callout, CalloutResponse, HttpFilter, Request};

    #[derive(Default)]
    struct AskIstio;

    #[weir::filter]
    impl HttpFilter for AskIstio {
        type Config = ();

        fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
            cx.callout(Callout::istio(
                "GET",
                9000,
                "authz.sec.svc.cluster.local",
                "/check",
            ))
        }

        fn on_callout_response(
            &mut self,
            _cx: &mut Callback<'_, ()>,
            _response: CalloutResponse,
        ) -> weir::Result {
            Ok(Action::Continue)
        }
    }

    #[test]
    fn an_istio_callout_goes_to_the_outbound_cluster_with_the_service_as_authority() {
        let mut f = TestFilter::<AskIstio>::configure("null").expect("configures");
        let ex = f.send(TestRequest::get("/"));
        let call = &ex.callouts()[0];
        assert_eq!(
            call.upstream(),
            "outbound|9000||authz.sec.svc.cluster.local"
        );
        assert_eq!(
            call.header(":authority"),
            Some("authz.sec.svc.cluster.local")
        );
    }
}
