//! A filter's configure step, run in-process: does this module accept this configuration?
//!
//! Envoy configures a proxy-wasm plugin by calling `_initialize`,
//! `proxy_on_context_create(root, 0)`, `proxy_on_vm_start` and `proxy_on_configure(root, len)`,
//! answering `proxy_get_buffer_bytes` for the plugin-configuration buffer. This
//! module does the same in `weir-wasm-host` (the `wasmi` interpreter), with every
//! other host call answered by its defaults (nothing found, writes accepted) and WASI
//! reduced to an empty environment and captured output. A `false` from `proxy_on_configure` is a
//! refusal, and the error lines the filter logged are its reason, word for word
//! what Envoy would log. Fuel bounds the run, so a looping module cannot hang `deploy`.

use anyhow::{anyhow, bail, Context, Result};
use weir_wasm_host::{HttpCall, Instance, Proxy, PLUGIN_CONFIGURATION};

/// proxy-wasm's log level for errors; critical is 5.
const LOG_ERROR: i32 = 4;
/// proxy-wasm's log level for warnings.
const LOG_WARN: i32 = 3;
/// Stack for the interpreter's thread.
const STACK: usize = 64 * 1024 * 1024;
/// The root context id Envoy gives the plugin.
const ROOT_CONTEXT: i32 = 1;
/// The ABI's header map of an HTTP callout's answer.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

/// One line the filter logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// proxy-wasm level: 0 trace .. 5 critical.
    pub level: i32,
    /// The text.
    pub message: String,
}

/// What the configure step said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `proxy_on_configure` returned true.
    pub accepted: bool,
    /// Everything the module logged (proxy_log and WASI stdout/stderr), in order.
    pub log: Vec<LogLine>,
}

impl Outcome {
    /// The error and critical lines: why a refused configuration was refused.
    pub fn errors(&self) -> Vec<&str> {
        self.log
            .iter()
            .filter(|l| l.level >= LOG_ERROR)
            .map(|l| l.message.as_str())
            .collect()
    }
}

/// The host for a configure step or a replayed request: the plugin configuration,
/// and the module's log; every other host call answers as `weir_wasm_host::Proxy`'s
/// defaults do (nothing found, writes accepted).
#[derive(Default)]
struct Recorder {
    configuration: Vec<u8>,
    log: Vec<LogLine>,
    /// Replaying requests: HTTP callouts are accepted (their tokens wait in `calls`)
    /// and answered `200` with no body, as an authorization service that allows.
    /// The configure step refuses them, as `Proxy`'s defaults do.
    answer_callouts: bool,
    calls: Vec<u32>,
    tokens: u32,
}

impl Proxy for Recorder {
    fn log(&mut self, level: u32, message: &[u8]) {
        // The module's words are printed (deploy's refusal): escaped and bounded here.
        let message = crate::display::quote(&String::from_utf8_lossy(message), 1000);
        self.log.push(LogLine {
            level: level as i32,
            message,
        });
    }

    fn http_call(&mut self, _call: HttpCall) -> Option<u32> {
        if !self.answer_callouts {
            return None;
        }
        self.tokens = self.tokens.wrapping_add(1);
        self.calls.push(self.tokens);
        Some(self.tokens)
    }

    fn map_pairs(&mut self, map: u32) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        (self.answer_callouts && map == HTTP_CALL_RESPONSE_HEADERS)
            .then(|| vec![(b":status".to_vec(), b"200".to_vec())])
    }

    fn map_get(&mut self, map: u32, name: &[u8]) -> Option<Vec<u8>> {
        (self.answer_callouts && map == HTTP_CALL_RESPONSE_HEADERS && name == b":status")
            .then(|| b"200".to_vec())
    }

    fn buffer_get(&mut self, buffer: u32, start: usize, max: usize) -> Option<Vec<u8>> {
        if buffer != PLUGIN_CONFIGURATION {
            return None;
        }
        let config = &self.configuration;
        let start = start.min(config.len());
        Some(config[start..start.saturating_add(max).min(config.len())].to_vec())
    }
}

/// Runs the module's configure step with `configuration` as the plugin
/// configuration (`None`: no configuration at all, as when Envoy's is unset).
///
/// An error means the module could not be run (not wasm, not proxy-wasm, a trap);
/// a refusal is `Ok` with `accepted: false`.
pub fn run(wasm: &[u8], configuration: Option<&[u8]>) -> Result<Outcome> {
    // The interpreter (unoptimized, in debug builds) needs more stack than a test
    // thread's 2 MiB: run it on a thread of its own with room to spare.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("configure".into())
            .stack_size(STACK)
            .spawn_scoped(scope, || run_here(wasm, configuration))
            .context("cannot start the configure thread")?
            .join()
            .map_err(|_| anyhow!("the configure step panicked"))?
    })
}

/// A module instantiated and configured in the interpreter.
struct Session {
    module: Instance<Recorder>,
}

impl Session {
    /// Instantiates `wasm` and runs its configure step; the bool is the answer.
    fn start(wasm: &[u8], configuration: Option<&[u8]>) -> Result<(Session, Result<bool>)> {
        let host = Recorder {
            configuration: configuration.unwrap_or_default().to_vec(),
            ..Recorder::default()
        };
        let module = Instance::new(wasm, host).map_err(|e| anyhow!("{e}"))?;
        let mut session = Session { module };
        let size = configuration.map_or(0, <[u8]>::len) as i32;
        let answer = (|| -> Result<bool> {
            session.call("_initialize", &[])?;
            session.call("proxy_on_context_create", &[ROOT_CONTEXT, 0])?;
            if session.call("proxy_on_vm_start", &[ROOT_CONTEXT, 0])? == Some(0) {
                return Ok(false);
            }
            let configured = session.call("proxy_on_configure", &[ROOT_CONTEXT, size])?;
            Ok(configured.unwrap_or(1) != 0)
        })();
        Ok((session, answer))
    }

    fn call(&mut self, name: &str, args: &[i32]) -> Result<Option<i32>> {
        self.module.call(name, args).map_err(|e| anyhow!("{e}"))
    }

    fn instructions(&self) -> u64 {
        self.module.instructions()
    }

    fn memory_pages(&self) -> u64 {
        self.module.memory_pages()
    }
}

fn run_here(wasm: &[u8], configuration: Option<&[u8]>) -> Result<Outcome> {
    let (mut session, result) = Session::start(wasm, configuration)?;
    let log = std::mem::take(&mut session.module.proxy_mut().log);
    match result {
        Ok(accepted) => Ok(Outcome { accepted, log }),
        Err(e) => {
            let said: Vec<_> = log.iter().map(|l| l.message.as_str()).collect();
            if said.is_empty() {
                Err(e)
            } else {
                Err(e.context(said.join("; ")))
            }
        }
    }
}

/// What one request costs inside the module, counted in the interpreter: a
/// deterministic view of the work Envoy's VM does per request, free of the
/// noise of a throughput run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RequestCost {
    /// Requests measured (after the warm-up).
    pub requests: u64,
    /// Entries into the module per request (one per exported hook Envoy calls).
    pub entries: f64,
    /// Calls from the module to the host per request.
    pub host_calls: f64,
    /// Wasm instructions executed per request (wasmi fuel).
    pub instructions: f64,
    /// HTTP callouts per request, each answered `200` (an authorization service
    /// that allows), so a filter that asks one is measured on its allow path.
    pub callouts: f64,
    /// Lines logged at warn or above over the measured requests: a module that
    /// logs on every request is measured on an error path, not its usual one.
    pub warnings: u64,
    /// Linear memory (64 KiB pages) after the warm-up.
    pub pages_after_warmup: u64,
    /// Linear memory after all requests: equal when nothing leaks per request.
    pub pages_at_end: u64,
}

/// The hooks Envoy calls, in order, for a GET answered by a direct response
/// with a body: context create first, then each of these the module exports.
const REQUEST_HOOKS: &[(&str, &[i32])] = &[
    ("proxy_on_request_headers", &[6, 1]),
    ("proxy_on_response_headers", &[3, 0]),
    ("proxy_on_response_body", &[3, 1]),
    ("proxy_on_log", &[]),
    ("proxy_on_done", &[]),
    ("proxy_on_delete", &[]),
];

/// Configures `wasm`, sends `warmup` then `requests` requests through it the way
/// Envoy calls a module (skipping hooks it does not export), and reports the
/// per-request entries, host calls and instructions of the measured ones. An HTTP
/// callout made in a hook is answered (`200`, no body) right after that hook returns,
/// through `proxy_on_http_call_response` on the root context, as Envoy does.
pub fn request_cost(
    wasm: &[u8],
    configuration: Option<&[u8]>,
    warmup: u64,
    requests: u64,
) -> Result<RequestCost> {
    replay(wasm, configuration, warmup, requests, true)
}

/// [`request_cost`], with HTTP callouts answered or refused.
fn replay(
    wasm: &[u8],
    configuration: Option<&[u8]>,
    warmup: u64,
    requests: u64,
    answer_callouts: bool,
) -> Result<RequestCost> {
    let run = || -> Result<RequestCost> {
        let (mut session, answer) = Session::start(wasm, configuration)?;
        session.module.proxy_mut().answer_callouts = answer_callouts;
        if !answer? {
            let log = &session.module.proxy_mut().log;
            let said: Vec<_> = log.iter().map(|l| l.message.as_str()).collect();
            bail!(
                "the module refused its configuration{}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {}", said.join("; "))
                }
            );
        }
        let hooks: Vec<(&str, &[i32])> = REQUEST_HOOKS
            .iter()
            .copied()
            .filter(|(name, _)| session.module.exports(name))
            .collect();
        let answers = session.module.exports("proxy_on_http_call_response");
        // One request: context create, then each exported hook, each callout it made
        // answered after it; the entries made and the callouts answered.
        let one = |session: &mut Session, id: i32| -> Result<(u64, u64)> {
            session.call("proxy_on_context_create", &[id, ROOT_CONTEXT])?;
            let (mut entries, mut callouts) = (1 + hooks.len() as u64, 0);
            for (name, extra) in &hooks {
                let mut args = vec![id];
                args.extend_from_slice(extra);
                session.call(name, &args)?;
                let calls = std::mem::take(&mut session.module.proxy_mut().calls);
                for token in calls.into_iter().filter(|_| answers) {
                    session.call(
                        "proxy_on_http_call_response",
                        &[ROOT_CONTEXT, token as i32, 1, 0, 0],
                    )?;
                    entries += 1;
                    callouts += 1;
                }
            }
            Ok((entries, callouts))
        };
        for i in 0..warmup {
            one(&mut session, 2 + i as i32)?;
        }
        let pages_after_warmup = session.memory_pages();
        let (start, calls) = (session.instructions(), session.module.host_calls());
        let logged = session.module.proxy_mut().log.len();
        let (mut entries, mut callouts) = (0, 0);
        for i in 0..requests {
            let (e, c) = one(&mut session, (2 + warmup + i) as i32)?;
            entries += e;
            callouts += c;
        }
        let n = requests.max(1) as f64;
        let warnings = session.module.proxy_mut().log[logged..]
            .iter()
            .filter(|l| l.level >= LOG_WARN)
            .count() as u64;
        Ok(RequestCost {
            requests,
            entries: entries as f64 / n,
            host_calls: (session.module.host_calls() - calls) as f64 / n,
            instructions: (session.instructions() - start) as f64 / n,
            callouts: callouts as f64 / n,
            warnings,
            pages_after_warmup,
            pages_at_end: session.memory_pages(),
        })
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("request-cost".into())
            .stack_size(STACK)
            .spawn_scoped(scope, run)
            .context("cannot start the interpreter thread")?
            .join()
            .map_err(|_| anyhow!("the request-cost run panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_header() -> Vec<u8> {
        let path = crate::build::module_for("add-header").expect("build add-header");
        std::fs::read(path).expect("read add-header")
    }

    /// Counts the header writes of each request (by the effective context).
    #[derive(Default)]
    struct Writes {
        sets: Vec<Vec<u8>>,
    }

    impl Proxy for Writes {
        fn map_set(&mut self, _map: u32, name: &[u8], _value: &[u8]) -> bool {
            self.sets.push(name.to_vec());
            true
        }
    }

    #[test]
    fn requests_created_out_of_order_each_run_and_delete_cleanly() {
        // Envoy hands out increasing ids; the module's stream table stays sorted
        // (and correct) for a host that does not.
        let mut vm = weir_wasm_host::Instance::new(&add_header(), Writes::default()).unwrap();
        vm.call("_initialize", &[]).unwrap();
        vm.call("proxy_on_context_create", &[1, 0]).unwrap();
        assert_eq!(vm.call("proxy_on_configure", &[1, 0]).unwrap(), Some(1));
        let ids = [10, 4, 7, 12, 2];
        for id in ids {
            vm.call("proxy_on_context_create", &[id, 1]).unwrap();
        }
        // A second create of a live id replaces its request.
        vm.call("proxy_on_context_create", &[7, 1]).unwrap();
        for id in ids {
            vm.call("proxy_on_response_headers", &[id, 0, 0]).unwrap();
        }
        assert_eq!(vm.proxy().sets.len(), ids.len(), "one header per request");
        // An unknown id runs nothing.
        vm.call("proxy_on_response_headers", &[5, 0, 0]).unwrap();
        assert_eq!(vm.proxy().sets.len(), ids.len());
        for id in [4, 12, 2, 10, 7] {
            vm.call("proxy_on_delete", &[id]).unwrap();
            vm.call("proxy_on_response_headers", &[id, 0, 0]).unwrap();
        }
        assert_eq!(vm.proxy().sets.len(), ids.len(), "a deleted request ran");
        // An id below every deleted one, created again, runs.
        vm.call("proxy_on_context_create", &[3, 1]).unwrap();
        vm.call("proxy_on_response_headers", &[3, 0, 0]).unwrap();
        assert_eq!(vm.proxy().sets.len(), ids.len() + 1);
    }

    #[test]
    fn add_header_accepts_its_example_config() {
        let example = crate::project::filter("add-header")
            .unwrap()
            .example_config()
            .unwrap();
        let out = run(&add_header(), Some(example.as_bytes())).unwrap();
        assert!(out.accepted, "{:?}", out.log);
        assert!(out.errors().is_empty(), "{:?}", out.log);
    }

    #[test]
    fn add_header_refuses_a_mistyped_field_naming_it() {
        let out = run(&add_header(), Some(br#"{"name": 5, "value": "x"}"#)).unwrap();
        assert!(!out.accepted);
        let errors = out.errors().join("\n");
        assert!(
            errors.contains("configuration refused: field `name`"),
            "{errors}"
        );
    }

    /// ext-authz is measured on its allow path: its callout is answered (`200`), and it
    /// logs nothing. With the callout refused it logs a warning per request, which
    /// `warnings` shows.
    #[test]
    fn a_callout_is_answered_so_ext_authz_is_measured_allowing() {
        let filter = crate::project::filter("ext-authz").unwrap();
        let example = filter.example_config().unwrap();
        let wasm = std::fs::read(crate::build::module_for("ext-authz").unwrap()).unwrap();
        let allowed = replay(&wasm, Some(example.as_bytes()), 10, 100, true).unwrap();
        assert_eq!(
            (allowed.callouts, allowed.warnings),
            (1.0, 0),
            "{allowed:?}"
        );
        let refused = replay(&wasm, Some(example.as_bytes()), 10, 100, false).unwrap();
        assert_eq!(
            (refused.callouts, refused.warnings),
            (0.0, 100),
            "{refused:?}"
        );
        // The allow path answers nothing itself; the refused path sends a local reply.
        assert_ne!(allowed.instructions, refused.instructions);
    }

    /// `bench --work --config`: a refused configuration is an error that says why.
    #[test]
    fn request_cost_with_a_refused_configuration_says_why() {
        let e = request_cost(&add_header(), Some(br#"{"name": 5, "value": "x"}"#), 1, 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("refused its configuration") && e.contains("field `name`"),
            "{e}"
        );
    }

    /// What a module logs is printed by deploy: it is escaped when recorded.
    #[test]
    fn a_modules_log_is_recorded_escaped() {
        let out = run(
            &add_header(),
            Some(br#"{"\u001b]0;pwned\u0007": 1, "name": "n", "value": "x"}"#),
        )
        .unwrap();
        assert!(!out.accepted);
        let errors = out.errors().join("\n");
        assert!(!errors.chars().any(crate::display::is_unsafe), "{errors:?}");
        assert!(
            errors.contains("configuration refused") && errors.contains("\\x1b]0;pwned\\x07"),
            "{errors}"
        );
    }

    #[test]
    fn add_header_with_no_configuration_takes_its_default() {
        let out = run(&add_header(), None).unwrap();
        assert!(out.accepted, "{:?}", out.log);
    }

    #[test]
    fn add_header_enters_three_times_per_request_and_its_memory_stays_flat() {
        let example = crate::project::filter("add-header")
            .unwrap()
            .example_config()
            .unwrap();
        let cost = request_cost(&add_header(), Some(example.as_bytes()), 200, 5_000).unwrap();
        // context create, response headers, delete: the hooks it implements and no others.
        assert_eq!(cost.entries, 3.0, "{cost:?}");
        // One header write; no log line, no look-up.
        assert_eq!(cost.host_calls, 1.0, "{cost:?}");
        assert!(cost.instructions > 0.0, "{cost:?}");
        assert_eq!(
            cost.pages_at_end, cost.pages_after_warmup,
            "linear memory grew: {cost:?}"
        );
    }

    /// Long-lived streams (gRPC streams, websockets) must not make every hook slower:
    /// the stream table is searched in O(log n), not by a scan.
    #[test]
    fn a_hook_on_an_old_stream_stays_cheap_with_thousands_open() {
        let example = crate::project::filter("add-header")
            .unwrap()
            .example_config()
            .unwrap();
        let (mut s, answer) = Session::start(&add_header(), Some(example.as_bytes())).unwrap();
        assert!(answer.unwrap());
        let hook = |s: &mut Session, id: i32| {
            let before = s.instructions();
            s.call("proxy_on_response_headers", &[id, 3, 0]).unwrap();
            s.instructions() - before
        };
        let open = |s: &mut Session, ids: std::ops::Range<i32>| {
            for id in ids {
                s.call("proxy_on_context_create", &[id, ROOT_CONTEXT])
                    .unwrap();
            }
        };
        open(&mut s, 10..20);
        let few = hook(&mut s, 10);
        open(&mut s, 20..3000);
        // The oldest of 2,990 open streams, then short requests coming and going.
        let many = hook(&mut s, 11);
        for id in 3000..3100 {
            open(&mut s, id..id + 1);
            hook(&mut s, id);
            s.call("proxy_on_delete", &[id]).unwrap();
        }
        let after = hook(&mut s, 12);
        assert!(
            many < few + 400,
            "a hook on an old stream cost {many} instructions with 2,990 open, {few} with 10"
        );
        assert!(
            after < few + 400,
            "after churn: {after} instructions, {few} with 10 open"
        );
    }

    #[test]
    fn a_module_that_is_not_proxy_wasm_is_an_error_not_a_refusal() {
        let e = run(b"\0asm\x01\0\0\0", Some(b"{}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a proxy-wasm module"), "{e}");
        let e = run(b"hello", None).unwrap_err().to_string();
        assert!(e.contains("not a valid wasm module"), "{e}");
    }
}
