//! The rest of the proxy-wasm ABI in a real Envoy, through `tests/fixtures/abi`:
//! a property and a filter state object the filter writes, read by Envoy's access
//! log and by a response header Envoy adds (`%FILTER_STATE(...)%`); typed reads of
//! Envoy's attributes (integers, a bool, a timestamp, a duration, a map, a double from route
//! metadata) and a wrong-type read refused; the VM configuration; a shared queue
//! drained by `on_queue_ready`; shared data removed; a counter read back; and
//! header writes Envoy refuses (from the body hook, after the headers went on),
//! reported as `HeaderError::Refused` without a trap. The fixture's own tests run
//! first through its compiled module, in weir's wasm host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use weir_tests::client::{self, Body, RawRequest};
use weir_tests::{bootstrap, vm_failures};
use xtask::build::{self, Options};
use xtask::envoy::{Backend, Code, Envoy, WasmFilter};
use xtask::project::{self, Filter};

const ACCESS_LOG_FORMAT: &str = "user=%FILTER_STATE(wasm.weir_abi_user:PLAIN)% \
     sni=%FILTER_STATE(envoy.network.upstream_server_name:PLAIN)% path=%REQ(:PATH)%\n";
const VM_CONFIGURATION: &str = r#"{"region": "eu-west"}"#;

fn fixture() -> Filter {
    Filter {
        name: "abi".into(),
        dir: project::root().join("tests/fixtures/abi"),
    }
}

fn module() -> PathBuf {
    match build::build(&fixture(), &Options::default()) {
        Ok(built) => built.path,
        Err(e) => panic!("cannot build the abi fixture: {e:#}"),
    }
}

/// Envoy with the fixture in front of an upstream that answers with the request
/// head it received; an access log at `log`, route metadata, a response header
/// read from filter state, and a VM configuration.
fn start(log: &Path) -> Envoy {
    let filter = WasmFilter {
        name: "abi".into(),
        root_id: "abi".into(),
        code: Code::Local(module()),
        configuration: None,
        failure_policy: None,
    };
    let mut b = bootstrap(vec![filter]);
    b.backend = Backend::Upstream(weir_tests::server::serve_requests(|r| {
        weir_tests::server::answer(200, &r.head)
    }));
    let log = log.display().to_string();
    Envoy::start_edited(&b, |config| {
        let manager = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]
            ["filters"][0]["typed_config"];
        manager["access_log"] = json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": log,
                "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
            }
        }]);
        let host = &mut manager["route_config"]["virtual_hosts"][0];
        host["response_headers_to_add"] = json!([{
            "header": {"key": "x-user-from-state", "value": "%FILTER_STATE(wasm.weir_abi_user:PLAIN)%"},
        }]);
        host["routes"][0]["metadata"] =
            json!({"filter_metadata": {"weir": {"ratio": 0.25, "window": "abc"}}});
        manager["http_filters"][0]["typed_config"]["config"]["vm_config"]["configuration"] =
            json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": VM_CONFIGURATION});
    })
    .unwrap()
}

fn get(
    envoy: &Envoy,
    path: &str,
    headers: &[(&str, &[u8])],
) -> (u16, String, Vec<(String, Vec<u8>)>) {
    let r = envoy.get(path, headers).unwrap();
    (
        r.status,
        String::from_utf8_lossy(&r.body).into_owned(),
        r.headers,
    )
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| &v[..])
}

/// The access log's lines once `n` are there (Envoy flushes it every 50 ms).
fn access_log(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_fixtures_tests_pass_through_its_module() {
    let module = module();
    xtask::test::tests_against(&fixture(), &module, "wasm32-wasip1").unwrap();
}

#[test]
fn written_properties_and_filter_state_reach_the_access_log_and_a_response_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let envoy = start(&log);

    let (status, _, headers) = get(&envoy, "/first", &[("x-state", b"backend.internal")]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-user-from-state"), Some(&b"alice"[..]));
    assert_eq!(header(&headers, "x-refused"), Some(&b"state:ok"[..]));
    // `request.duration` (an Envoy duration: int64 nanoseconds), read as a
    // `Duration` in `on_log` and kept in shared data.
    let took = get(&envoy, "/duration", &[]).1;
    assert!(
        took.ends_with('s') && took.starts_with(|c: char| c.is_ascii_digit()),
        "request.duration: {took:?}"
    );

    // A key Envoy has no object factory for is refused, as `UnknownKey`.
    let (status, _, headers) = get(
        &envoy,
        "/second",
        &[("x-state", b"v"), ("x-state-key", b"my.own.key")],
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "x-refused"),
        Some(&b"state:unknown key"[..])
    );

    let lines = access_log(&log, 3);
    assert_eq!(
        lines,
        [
            "user=alice sni=backend.internal path=/first",
            "user=alice sni=- path=/duration",
            "user=alice sni=- path=/second",
        ]
    );
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn typed_reads_vm_configuration_queues_shared_data_and_a_metric_in_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let envoy = start(&dir.path().join("access.log"));

    let (status, typed, _) = get(&envoy, "/typed", &[("x-probe", b"yes")]);
    assert_eq!(status, 200, "{typed}");
    let line = |name: &str| -> String {
        typed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in:\n{typed}"))
            .to_owned()
    };
    assert_eq!(line("destination.port"), envoy.port.to_string(), "{typed}");
    assert!(line("source.port").parse::<i64>().is_ok(), "{typed}");
    assert_eq!(line("connection.mtls"), "false", "{typed}");
    assert!(line("connection_id").parse::<u64>().is_ok(), "{typed}");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let time: u64 = line("request.time").parse().unwrap();
    assert!(time.abs_diff(now) < 60, "request.time {time}, now {now}");
    assert_eq!(line("request.protocol"), "\"HTTP/1.1\"");
    assert_eq!(line("request.headers.x-probe"), "Some(\"yes\")");
    assert_eq!(line("xds.route_metadata.ratio"), "0.25", "{typed}");
    assert_eq!(
        line("xds.route_metadata.window"),
        "error: the property is 3 bytes, expected duration (8 bytes): check the path names an attribute of that type"
    );
    assert!(
        line("path.as_i64").starts_with("error: the property is 6 bytes"),
        "{typed}"
    );
    assert_eq!(line("missing"), "none");

    assert_eq!(get(&envoy, "/vm", &[]).1, VM_CONFIGURATION);
    assert_eq!(get(&envoy, "/vm/region", &[]).1, "eu-west");

    assert_eq!(get(&envoy, "/enqueue/a", &[]).1, "queued");
    assert_eq!(get(&envoy, "/enqueue/b", &[]).1, "queued");
    let start = Instant::now();
    let jobs = loop {
        let jobs = get(&envoy, "/jobs", &[]).1;
        if jobs == "a,b" || start.elapsed() > Duration::from_secs(10) {
            break jobs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(jobs, "a,b", "on_queue_ready did not drain the queue");

    assert_eq!(get(&envoy, "/shared/get", &[]).0, 404);
    assert_eq!(get(&envoy, "/shared/set/v1", &[]).1, "set");
    assert_eq!(get(&envoy, "/shared/get", &[]).1, "v1");
    assert_eq!(get(&envoy, "/shared/remove", &[]).1, "removed");
    assert_eq!(get(&envoy, "/shared/get", &[]).0, 404);

    let read: u64 = get(&envoy, "/metric", &[]).1.parse().unwrap();
    let stat = envoy.stat("wasmcustom.weir_abi_requests").unwrap();
    assert_eq!(
        Some(read),
        stat,
        "the counter read back differs from Envoy's stat"
    );
    assert!(read >= 12, "{read}");
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn header_writes_envoy_refuses_are_reported_and_nothing_traps() {
    let dir = tempfile::tempdir().unwrap();
    let envoy = start(&dir.path().join("access.log"));
    let request =
        RawRequest::post("/upload", Body::Sized(b"hello".to_vec())).header("x-probe", "1");
    let response = client::send(envoy.port, &request)
        .unwrap()
        .expect("an answer");
    let seen = String::from_utf8_lossy(&response.body).into_owned();
    assert_eq!(response.status, 200, "{seen}");
    assert_eq!(
        header(&response.headers, "x-refused"),
        Some(&b"set:refused,add:refused,remove:refused"[..]),
        "{seen}"
    );
    assert!(
        seen.contains("x-probe: 1"),
        "the refused remove removed nothing:\n{seen}"
    );
    assert!(
        !seen.contains("x-late"),
        "a refused write reached the upstream:\n{seen}"
    );
    // The VM lives on: the next request is served by the filter.
    assert_eq!(get(&envoy, "/vm/region", &[]).1, "eu-west");
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}
