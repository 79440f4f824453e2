//! Checks a module against the proxy-wasm ABI the way Envoy's host will load it:
//! the exports it looks up (with their signatures) and the imports it can satisfy.

use anyhow::Result;
use walrus::{ExportItem, ImportKind, Module, ValType};

/// One thing wrong with a module, tied to the export or import it concerns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The export or import (`export proxy_on_configure`, `import env.foo`), or `module`.
    pub subject: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// What the validator found in a module.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AbiReport {
    /// The proxy-wasm ABI versions the module declares (`0_2_1`); valid modules declare one.
    pub abi_versions: Vec<String>,
    /// Every problem found; empty means Envoy can load the module.
    pub problems: Vec<Problem>,
    /// The number of `proxy_on_*` hooks exported.
    pub hooks: usize,
}

impl AbiReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Why a file could not be inspected at all.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// The bytes do not start with the wasm magic number.
    #[error("not a wasm module (no \\0asm header): build it with `cargo xtask build`")]
    NotWasm,
    /// The magic is there but the module does not parse or validate.
    #[error("invalid wasm module: {0}")]
    Invalid(String),
}

const ABI_VERSIONS: [&str; 3] = ["0_2_1", "0_2_0", "0_1_0"];

/// Host functions every ABI version provides (proxy-wasm-cpp-host's `FOR_ALL_HOST_FUNCTIONS`).
const HOST_FUNCTIONS: &[&str] = &[
    "log",
    "get_status",
    "set_property",
    "get_property",
    "send_local_response",
    "get_shared_data",
    "set_shared_data",
    "register_shared_queue",
    "resolve_shared_queue",
    "dequeue_shared_queue",
    "enqueue_shared_queue",
    "get_header_map_value",
    "add_header_map_value",
    "replace_header_map_value",
    "remove_header_map_value",
    "get_header_map_pairs",
    "set_header_map_pairs",
    "get_header_map_size",
    "get_buffer_status",
    "get_buffer_bytes",
    "set_buffer_bytes",
    "http_call",
    "grpc_call",
    "grpc_stream",
    "grpc_close",
    "grpc_cancel",
    "grpc_send",
    "set_tick_period_milliseconds",
    "get_current_time_nanoseconds",
    "define_metric",
    "increment_metric",
    "record_metric",
    "get_metric",
    "set_effective_context",
    "done",
    "call_foreign_function",
];

/// Host functions only some ABI versions provide.
fn version_host_functions(version: &str) -> &'static [&'static str] {
    match version {
        "0_1_0" => &[
            "get_configuration",
            "continue_request",
            "continue_response",
            "clear_route_cache",
        ],
        "0_2_0" => &["continue_stream", "close_stream"],
        _ => &["continue_stream", "close_stream", "get_log_level"],
    }
}

/// The WASI calls Envoy links (`FOR_ALL_WASI_FUNCTIONS`).
const WASI_FUNCTIONS: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "random_get",
    "proc_exit",
    "path_open",
    "fd_prestat_get",
    "fd_prestat_dir_name",
];

/// The module functions the host looks up, with their (params, results) as i32/i64 counts.
/// `None` params means the signature depends on the ABI version (checked separately).
fn export_signature(name: &str, version: &str) -> Option<(&'static [ValType], &'static [ValType])> {
    use ValType::I32;
    const I: &[ValType] = &[I32];
    const II: &[ValType] = &[I32, I32];
    const III: &[ValType] = &[I32, I32, I32];
    const IIIII: &[ValType] = &[I32, I32, I32, I32, I32];
    const NONE: &[ValType] = &[];
    let sig = match name {
        "_initialize" | "_start" => (NONE, NONE),
        "malloc" | "proxy_on_memory_allocate" => (I, I),
        "proxy_on_context_create" => (II, NONE),
        "proxy_on_vm_start" | "proxy_on_configure" => (II, I),
        "proxy_on_done" => (I, I),
        "proxy_on_log" | "proxy_on_delete" | "proxy_on_tick" => (I, NONE),
        "proxy_on_new_connection" => (I, I),
        "proxy_on_downstream_data" | "proxy_on_upstream_data" => (III, I),
        "proxy_on_downstream_connection_close" | "proxy_on_upstream_connection_close" => (II, NONE),
        "proxy_on_request_headers" | "proxy_on_response_headers" if version == "0_1_0" => (II, I),
        "proxy_on_request_headers" | "proxy_on_response_headers" => (III, I),
        "proxy_on_request_body" | "proxy_on_response_body" => (III, I),
        "proxy_on_request_trailers" | "proxy_on_response_trailers" => (II, I),
        "proxy_on_request_metadata" | "proxy_on_response_metadata" => (II, I),
        "proxy_on_queue_ready" => (II, NONE),
        "proxy_on_http_call_response" => (IIIII, NONE),
        "proxy_on_grpc_receive_initial_metadata"
        | "proxy_on_grpc_receive_trailing_metadata"
        | "proxy_on_grpc_receive"
        | "proxy_on_grpc_close" => (III, NONE),
        "proxy_on_foreign_function" => (III, NONE),
        _ => return None,
    };
    Some(sig)
}

/// Parses `bytes` into a walrus module, telling "not wasm" from "broken wasm".
pub fn parse(bytes: &[u8]) -> Result<Module, Unreadable> {
    if !bytes.starts_with(b"\0asm") {
        return Err(Unreadable::NotWasm);
    }
    let mut config = walrus::ModuleConfig::new();
    config.generate_producers_section(false);
    config.parse(bytes).map_err(|e| {
        Unreadable::Invalid(crate::display::quote(
            &format!("{e:#}").replace('\n', " "),
            500,
        ))
    })
}

/// The proxy-wasm ABI versions `bytes` exports (`["0_2_1"]`); empty when it is not a module.
pub fn abi_versions(bytes: &[u8]) -> Vec<String> {
    parse(bytes)
        .map(|m| declared_versions(&m))
        .unwrap_or_default()
}

fn declared_versions(module: &Module) -> Vec<String> {
    module
        .exports
        .iter()
        .filter_map(|e| e.name.strip_prefix("proxy_abi_version_"))
        .map(|v| crate::display::quote(v, 100))
        .collect()
}

/// Checks a module; every problem is reported, not just the first.
pub fn check(bytes: &[u8]) -> Result<AbiReport, Unreadable> {
    let module = parse(bytes)?;
    Ok(check_module(&module))
}

/// Subjects and messages quote the module's own names (exports, imports), which may hold any
/// character: they are escaped here, once, for every output (text and `--json`).
fn problem(subject: impl Into<String>, message: impl Into<String>) -> Problem {
    let safe = |s: String| crate::display::quote(&s, 1000);
    Problem {
        subject: safe(subject.into()),
        message: safe(message.into()),
    }
}

/// Checks an already parsed module.
pub fn check_module(module: &Module) -> AbiReport {
    let mut problems = Vec::new();
    let declared = declared_versions(module);
    let known: Vec<&String> = declared
        .iter()
        .filter(|v| ABI_VERSIONS.contains(&v.as_str()))
        .collect();
    for v in declared
        .iter()
        .filter(|v| !ABI_VERSIONS.contains(&v.as_str()))
    {
        problems.push(problem(
            format!("export proxy_abi_version_{v}"),
            "unknown proxy-wasm ABI version; Envoy knows 0_2_1, 0_2_0 and 0_1_0",
        ));
    }
    let version = match known.as_slice() {
        [one] => one.as_str(),
        [] => {
            problems.push(problem(
                "export proxy_abi_version_*",
                "missing: export exactly one of proxy_abi_version_0_2_1, _0_2_0, _0_1_0 (the proxy-wasm crate does)",
            ));
            "0_2_1"
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|v| format!("proxy_abi_version_{v}"))
                .collect();
            problems.push(problem(
                "export proxy_abi_version_*",
                format!("more than one ABI version: {}", names.join(", ")),
            ));
            many[0].as_str()
        }
    };

    let exported = |name: &str| module.exports.iter().any(|e| e.name == name);
    if !module
        .exports
        .iter()
        .any(|e| matches!(e.item, ExportItem::Memory(_)))
    {
        problems.push(problem(
            "export memory",
            "missing: the host reads and writes the module's memory",
        ));
    }
    for (names, why) in [
        (
            &["malloc", "proxy_on_memory_allocate"][..],
            "the host allocates buffers it hands the module",
        ),
        (
            &["_initialize", "_start"][..],
            "the host starts the module with it; build a cdylib reactor",
        ),
        (
            &["proxy_on_context_create"][..],
            "the host creates every root and HTTP context with it",
        ),
    ] {
        if !names.iter().any(|n| exported(n)) {
            problems.push(problem(
                format!("export {}", names.join(" or ")),
                format!("missing: {why}"),
            ));
        }
    }

    let mut hooks = 0;
    for export in module.exports.iter() {
        if export.name.starts_with("proxy_on_") {
            hooks += 1;
        }
        let Some((params, results)) = export_signature(&export.name, version) else {
            continue;
        };
        let ExportItem::Function(f) = export.item else {
            problems.push(problem(
                format!("export {}", export.name),
                "must be a function",
            ));
            continue;
        };
        let ty = module.types.get(module.funcs.get(f).ty());
        if ty.params() != params || ty.results() != results {
            problems.push(problem(
                format!("export {}", export.name),
                format!(
                    "signature is {:?} -> {:?}, ABI {version} expects {:?} -> {:?}",
                    ty.params(),
                    ty.results(),
                    params,
                    results
                ),
            ));
        }
    }

    let version_specific = version_host_functions(version);
    for import in module.imports.iter() {
        let subject = format!("import {}.{}", import.module, import.name);
        if import.module.starts_with("__wbindgen") || import.name.starts_with("__wbindgen") {
            problems.push(problem(subject, "wasm-bindgen import: proxies do not provide it; build with plain cargo, without wasm-bindgen"));
            continue;
        }
        if !matches!(import.kind, ImportKind::Function(_)) {
            if import.module != "env" {
                problems.push(problem(
                    subject,
                    "only functions (and env memory) may be imported",
                ));
            }
            continue;
        }
        match import.module.as_str() {
            "env" => {
                let known = import
                    .name
                    .strip_prefix("proxy_")
                    .is_some_and(|n| HOST_FUNCTIONS.contains(&n) || version_specific.contains(&n));
                if !known {
                    problems.push(problem(subject, format!("not a host function of proxy-wasm ABI {version}; Envoy will refuse to link it")));
                }
            }
            "wasi_snapshot_preview1" | "wasi_unstable" => {
                if !WASI_FUNCTIONS.contains(&import.name.as_str()) {
                    problems.push(problem(subject, "Envoy does not provide this WASI call"));
                }
            }
            other => problems.push(problem(
                subject,
                format!("imports from `{other}`: only `env` (proxy-wasm) and `wasi_snapshot_preview1` are available in Envoy"),
            )),
        }
    }

    AbiReport {
        abi_versions: declared,
        problems,
        hooks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_not_wasm() {
        assert!(matches!(check(b"hello"), Err(Unreadable::NotWasm)));
    }

    #[test]
    fn truncated_module_is_invalid() {
        let e = check(b"\0asm\x01\x00\x00\x00\x01\x05").unwrap_err();
        assert!(matches!(e, Unreadable::Invalid(_)), "{e}");
    }
}
