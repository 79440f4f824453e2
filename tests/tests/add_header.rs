//! add-header in a real Envoy 1.40: the seed's behaviour, refusal at configure
//! time, and request bytes that used to take a worker down.

use weir_tests::{envoy_with, vm_failures};

const SEED_PARAMETERS: &str = r#"{"name":"hello","value":"hello details"}"#;

#[test]
fn seed_parameters_add_hello_header() {
    let envoy = envoy_with("add-header", Some(SEED_PARAMETERS)).unwrap();
    let r = envoy.get("/details/123", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header_str("hello").as_deref(), Some("hello details"));
}

#[test]
fn no_configuration_adds_the_seed_header() {
    let envoy = envoy_with("add-header", None).unwrap();
    let r = envoy.get("/", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header_str("resp-header-demo").as_deref(),
        Some("added by our filter")
    );
}

#[test]
fn mistyped_name_is_refused_when_configured() {
    let err = match envoy_with("add-header", Some(r#"{"name": 5}"#)) {
        Ok(envoy) => panic!(
            "envoy accepted the configuration; log:\n{}",
            envoy.log_tail(20)
        ),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("add-header: configuration refused: field `name`: invalid type: integer `5`"),
        "envoy's log does not name the field:\n{err}"
    );
}

#[test]
fn high_bytes_in_header_values_never_trap() {
    let envoy = envoy_with("add-header", Some(SEED_PARAMETERS)).unwrap();
    let hostile: Vec<u8> = (0x80..=0xFF).collect();
    for _ in 0..3 {
        let r = envoy
            .get("/", &[("x-bytes", &hostile), ("x-ff", b"\xff")])
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header_str("hello").as_deref(), Some("hello details"));
    }
    // The worker is still healthy: a plain request after the hostile ones.
    let r = envoy.get("/after", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header_str("hello").as_deref(), Some("hello details"));
    assert_eq!(vm_failures(&envoy), Vec::<String>::new());
}

#[test]
fn the_vm_reports_its_linear_memory_and_it_stays_flat_over_requests() {
    let envoy = envoy_with("add-header", Some(SEED_PARAMETERS)).unwrap();
    let stat = "wasmcustom.weir.add-header.memory_bytes";
    for _ in 0..50 {
        assert_eq!(envoy.get("/", &[]).unwrap().status, 200);
    }
    let warm = envoy
        .stat(stat)
        .unwrap()
        .unwrap_or_else(|| panic!("no {stat} in Envoy's stats"));
    assert!(
        warm > 0 && warm.is_multiple_of(65536),
        "{stat} = {warm}: not a whole number of wasm pages"
    );
    for _ in 0..500 {
        assert_eq!(envoy.get("/", &[]).unwrap().status, 200);
    }
    assert_eq!(
        envoy.stat(stat).unwrap(),
        Some(warm),
        "linear memory grew over 500 requests"
    );
}
