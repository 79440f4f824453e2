//! Helpers shared by the end-to-end tests: built modules and a real Envoy running them.

pub mod client;
pub mod grpc;
pub mod registry;
pub mod server;

use std::path::PathBuf;

use xtask::envoy::{Bootstrap, Code, Envoy, WasmFilter};

/// The optimized module of `filter` (built by `cargo xtask test`, or built now).
pub fn module(filter: &str) -> PathBuf {
    match xtask::build::module_for(filter) {
        Ok(path) => path,
        Err(e) => panic!("cannot build `{filter}`: {e:#}\n(run the tests with `cargo xtask test`)"),
    }
}

/// The Wasm filter entry for `filter` with this configuration.
pub fn wasm_filter(filter: &str, configuration: Option<&str>) -> WasmFilter {
    WasmFilter {
        name: filter.to_owned(),
        root_id: filter.to_owned(),
        code: Code::Local(module(filter)),
        configuration: configuration.map(str::to_owned),
        failure_policy: None,
    }
}

/// A bootstrap on free ports with these filters in front of a direct 200.
pub fn bootstrap(filters: Vec<WasmFilter>) -> Bootstrap {
    let port = xtask::envoy::free_port().expect("a free port");
    let admin = xtask::envoy::free_port().expect("a free port");
    Bootstrap::new(port, admin, filters)
}

/// Starts a real Envoy (one worker) with `filter` configured as given.
pub fn envoy_with(filter: &str, configuration: Option<&str>) -> anyhow::Result<Envoy> {
    Envoy::start(&bootstrap(vec![wasm_filter(filter, configuration)]))
}

/// Lines of Envoy's log that show a VM trap or a panic.
pub fn vm_failures(envoy: &Envoy) -> Vec<String> {
    // Envoy writes its log file every 50 ms (`Envoy::start`): let the last lines land.
    std::thread::sleep(std::time::Duration::from_millis(200));
    envoy.vm_failures()
}
