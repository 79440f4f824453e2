//! `cargo xtask bench --quick` runs end to end and writes a complete report.
//! (The benchmark records numbers; this only checks that it can.)

use std::process::Command;

#[test]
fn quick_bench_writes_a_complete_report() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "--quick", "--connections", "4", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "bench failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let variants = report["variants"].as_array().unwrap();
    for name in [
        "envoy, no filter",
        "native response_headers_to_add",
        "raw proxy-wasm add-header",
        "weir add-header",
    ] {
        let v = variants
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variant {name}"));
        assert!(v["rps"].as_f64().unwrap() > 0.0, "{name} measured nothing");
    }
    assert!(report["weir_vs_raw"].as_f64().unwrap() > 0.0);
    assert!(report["weir_vs_native"].as_f64().unwrap() > 0.0);
    let sizes = report["sizes"].as_array().unwrap();
    for target in ["wasm32-wasip1", "wasm32-unknown-unknown"] {
        let s = sizes
            .iter()
            .find(|s| s["module"] == "add-header" && s["target"] == target)
            .unwrap();
        assert!(
            s["bytes"].as_u64().unwrap() < s["raw_bytes"].as_u64().unwrap(),
            "{target}: optimizing did not shrink"
        );
    }
    let svg = std::fs::read_to_string(out.path().join("throughput.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("weir add-header"));
    assert!(std::fs::read_to_string(out.path().join("report.md"))
        .unwrap()
        .contains("| weir add-header |"));
}
