//! A filter's configure step, run in-process: does this module accept this configuration?
//!
//! Envoy configures a proxy-wasm plugin by calling `_initialize`,
//! `proxy_on_context_create(root, 0)`, `proxy_on_vm_start` and `proxy_on_configure(root, len)`,
//! answering `proxy_get_buffer_bytes` for the plugin-configuration buffer. This
//! module does the same in the `wasmi` interpreter, with every other host call
//! stubbed (`Ok`, or `NotFound` for look-ups) and WASI reduced to an empty
//! environment and captured output. A `false` from `proxy_on_configure` is a
//! refusal, and the error lines the filter logged are its reason, word for word
//! what Envoy would log. Fuel bounds the run, so a looping module cannot hang `deploy`.

use anyhow::{anyhow, bail, Context, Result};
use wasmi::{
    Caller, Config, Engine, Extern, ExternType, Instance, Linker, Memory, Module, Store, Val,
};

/// proxy-wasm's buffer type for the plugin configuration.
const PLUGIN_CONFIGURATION: i32 = 7;
/// proxy-wasm statuses.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
/// proxy-wasm's log level for errors; critical is 5.
const LOG_ERROR: i32 = 4;
/// WASI's `ENOSYS`.
const WASI_NOSYS: i32 = 52;
/// Instructions the whole configure step may run (a weir filter needs well under 1%).
const FUEL: u64 = 2_000_000_000;
/// Stack for the interpreter's thread.
const STACK: usize = 64 * 1024 * 1024;
/// The root context id Envoy gives the plugin.
const ROOT_CONTEXT: i32 = 1;

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

#[derive(Default)]
struct Host {
    configuration: Vec<u8>,
    log: Vec<LogLine>,
    /// Calls the module made to its imports.
    calls: u64,
}

fn memory(caller: &Caller<'_, Host>) -> Result<Memory, wasmi::Error> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmi::Error::new("the module exports no memory")),
    }
}

fn read(caller: &Caller<'_, Host>, ptr: i32, len: i32) -> Result<Vec<u8>, wasmi::Error> {
    let mem = memory(caller)?;
    let mut buf = vec![0; len as u32 as usize];
    mem.read(caller, ptr as u32 as usize, &mut buf)
        .map_err(|_| wasmi::Error::new("the module passed a pointer outside its memory"))?;
    Ok(buf)
}

fn write(caller: &mut Caller<'_, Host>, ptr: i32, bytes: &[u8]) -> Result<(), wasmi::Error> {
    let mem = memory(caller)?;
    mem.write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| wasmi::Error::new("the module passed a pointer outside its memory"))
}

/// Memory for a buffer handed to the module, from its own allocator, as Envoy does.
fn allocate(caller: &mut Caller<'_, Host>, size: i32) -> Result<i32, wasmi::Error> {
    for name in ["proxy_on_memory_allocate", "malloc"] {
        if let Some(Extern::Func(f)) = caller.get_export(name) {
            let alloc = f.typed::<i32, i32>(&*caller)?;
            let ptr = alloc.call(&mut *caller, size)?;
            if ptr == 0 && size > 0 {
                return Err(wasmi::Error::new("the module's allocator returned null"));
            }
            return Ok(ptr);
        }
    }
    Err(wasmi::Error::new(
        "the module exports neither proxy_on_memory_allocate nor malloc",
    ))
}

fn link(linker: &mut Linker<Host>, module: &Module) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |caller: Caller<'_, Host>, level: i32, ptr: i32, len: i32| {
            let bytes = read(&caller, ptr, len)?;
            // The module's words are printed (deploy's refusal): escaped and bounded here.
            let message = crate::display::quote(&String::from_utf8_lossy(&bytes), 1000);
            let mut caller = caller;
            caller.data_mut().calls += 1;
            caller.data_mut().log.push(LogLine { level, message });
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, Host>,
         buffer: i32,
         start: i32,
         max: i32,
         data_out: i32,
         size_out: i32| {
            caller.data_mut().calls += 1;
            if buffer != PLUGIN_CONFIGURATION {
                return Ok(NOT_FOUND);
            }
            let config = &caller.data().configuration;
            let start = (start as u32 as usize).min(config.len());
            let end = start.saturating_add(max as u32 as usize).min(config.len());
            let bytes = config[start..end].to_vec();
            let ptr = allocate(&mut caller, bytes.len() as i32)?;
            write(&mut caller, ptr, &bytes)?;
            write(&mut caller, data_out, &ptr.to_le_bytes())?;
            write(&mut caller, size_out, &(bytes.len() as u32).to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_sizes_get",
        |mut caller: Caller<'_, Host>, count: i32, size: i32| {
            write(&mut caller, count, &0u32.to_le_bytes())?;
            write(&mut caller, size, &0u32.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "args_sizes_get",
        |mut caller: Caller<'_, Host>, count: i32, size: i32| {
            write(&mut caller, count, &0u32.to_le_bytes())?;
            write(&mut caller, size, &0u32.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut caller: Caller<'_, Host>, fd: i32, iovs: i32, len: i32, written: i32| {
            let mut total = 0u32;
            let mut text = Vec::new();
            for i in 0..len.max(0) {
                let iov = read(&caller, iovs + i * 8, 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let n = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                text.extend(read(&caller, ptr, n)?);
                total += n as u32;
            }
            let level = if fd == 2 { LOG_ERROR } else { 2 };
            let message = crate::display::quote(String::from_utf8_lossy(&text).trim_end(), 1000);
            if !message.is_empty() {
                caller.data_mut().log.push(LogLine { level, message });
            }
            write(&mut caller, written, &total.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        |code: i32| -> Result<(), wasmi::Error> { Err(wasmi::Error::i32_exit(code)) },
    )?;
    // Everything else: a stub of the right type returning Ok (NotFound for look-ups).
    let mut seen = std::collections::HashSet::new();
    for import in module.imports() {
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let (m, name) = (import.module(), import.name());
        if !seen.insert((m.to_owned(), name.to_owned()))
            || matches!(
                (m, name),
                ("env", "proxy_log" | "proxy_get_buffer_bytes")
                    | (
                        "wasi_snapshot_preview1",
                        "environ_sizes_get" | "args_sizes_get" | "fd_write" | "proc_exit"
                    )
            )
        {
            continue;
        }
        let status = if m == "wasi_snapshot_preview1" {
            if matches!(name, "environ_get" | "args_get") {
                0
            } else {
                WASI_NOSYS
            }
        } else if name.starts_with("proxy_get_") {
            NOT_FOUND
        } else {
            OK
        };
        let results: Vec<_> = ty.results().to_vec();
        linker.func_new(
            m,
            name,
            ty.clone(),
            move |mut caller: Caller<'_, Host>, _params, out| {
                caller.data_mut().calls += 1;
                for (slot, t) in out.iter_mut().zip(&results) {
                    *slot = match t {
                        wasmi::ValType::I32 => Val::I32(status),
                        other => Val::default_for_ty(*other),
                    };
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}

fn call_i32(
    store: &mut Store<Host>,
    instance: &Instance,
    name: &str,
    args: &[Val],
) -> Result<Option<i32>> {
    let Some(func) = instance.get_func(&*store, name) else {
        return Ok(None);
    };
    let mut out = vec![Val::I32(0); func.ty(&*store).results().len()];
    func.call(&mut *store, args, &mut out)
        .map_err(|e| anyhow!("{name} trapped: {e}"))?;
    Ok(Some(out.first().and_then(Val::i32).unwrap_or(0)))
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
    store: Store<Host>,
    instance: Instance,
}

impl Session {
    /// Instantiates `wasm` and runs its configure step; the bool is the answer.
    fn start(wasm: &[u8], configuration: Option<&[u8]>) -> Result<(Session, Result<bool>)> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module =
            Module::new(&engine, wasm).map_err(|e| anyhow!("not a valid wasm module: {e}"))?;
        if !module
            .exports()
            .any(|e| e.name().starts_with("proxy_abi_version_"))
        {
            bail!("not a proxy-wasm module: it exports no proxy_abi_version_* function");
        }
        let mut linker = Linker::<Host>::new(&engine);
        link(&mut linker, &module).context("cannot provide the module's imports")?;
        let host = Host {
            configuration: configuration.unwrap_or_default().to_vec(),
            ..Host::default()
        };
        let mut store = Store::new(&engine, host);
        store.set_fuel(FUEL).map_err(|e| anyhow!("{e}"))?;
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| anyhow!("cannot instantiate the module: {e}"))?;
        let mut session = Session { store, instance };
        let size = configuration.map_or(0, <[u8]>::len) as i32;
        let answer = (|| -> Result<bool> {
            session.call("_initialize", &[])?;
            session.call(
                "proxy_on_context_create",
                &[Val::I32(ROOT_CONTEXT), Val::I32(0)],
            )?;
            if session.call("proxy_on_vm_start", &[Val::I32(ROOT_CONTEXT), Val::I32(0)])? == Some(0)
            {
                return Ok(false);
            }
            let configured = session.call(
                "proxy_on_configure",
                &[Val::I32(ROOT_CONTEXT), Val::I32(size)],
            )?;
            Ok(configured.unwrap_or(1) != 0)
        })();
        Ok((session, answer))
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Result<Option<i32>> {
        call_i32(&mut self.store, &self.instance, name, args)
    }

    fn fuel(&self) -> u64 {
        self.store.get_fuel().unwrap_or(0)
    }

    fn memory_pages(&self) -> u64 {
        match self.instance.get_export(&self.store, "memory") {
            Some(Extern::Memory(m)) => m.size(&self.store),
            _ => 0,
        }
    }
}

fn run_here(wasm: &[u8], configuration: Option<&[u8]>) -> Result<Outcome> {
    let (mut session, result) = Session::start(wasm, configuration)?;
    let log = std::mem::take(&mut session.store.data_mut().log);
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
/// per-request entries, host calls and instructions of the measured ones.
pub fn request_cost(
    wasm: &[u8],
    configuration: Option<&[u8]>,
    warmup: u64,
    requests: u64,
) -> Result<RequestCost> {
    let run = || -> Result<RequestCost> {
        let (mut session, answer) = Session::start(wasm, configuration)?;
        if !answer? {
            bail!("the module refused its configuration");
        }
        let hooks: Vec<(&str, &[i32])> = REQUEST_HOOKS
            .iter()
            .copied()
            .filter(|(name, _)| session.instance.get_func(&session.store, name).is_some())
            .collect();
        // One request: context create, then each exported hook; the entries made.
        let one = |session: &mut Session, id: i32| -> Result<u64> {
            session.call(
                "proxy_on_context_create",
                &[Val::I32(id), Val::I32(ROOT_CONTEXT)],
            )?;
            for (name, extra) in &hooks {
                let mut args = vec![Val::I32(id)];
                args.extend(extra.iter().map(|v| Val::I32(*v)));
                session.call(name, &args)?;
            }
            Ok(1 + hooks.len() as u64)
        };
        for i in 0..warmup {
            one(&mut session, 2 + i as i32)?;
        }
        let pages_after_warmup = session.memory_pages();
        let (fuel, calls) = (session.fuel(), session.store.data().calls);
        let mut entries = 0;
        for i in 0..requests {
            entries += one(&mut session, (2 + warmup + i) as i32)?;
        }
        let n = requests.max(1) as f64;
        Ok(RequestCost {
            requests,
            entries: entries as f64 / n,
            host_calls: (session.store.data().calls - calls) as f64 / n,
            instructions: fuel.saturating_sub(session.fuel()) as f64 / n,
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
            let before = s.fuel();
            s.call(
                "proxy_on_response_headers",
                &[Val::I32(id), Val::I32(3), Val::I32(0)],
            )
            .unwrap();
            before - s.fuel()
        };
        let open = |s: &mut Session, ids: std::ops::Range<i32>| {
            for id in ids {
                s.call(
                    "proxy_on_context_create",
                    &[Val::I32(id), Val::I32(ROOT_CONTEXT)],
                )
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
            s.call("proxy_on_delete", &[Val::I32(id)]).unwrap();
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
