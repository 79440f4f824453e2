//! The harness against a compiled module: `WEIR_TEST_MODULE=path/to/filter.wasm`.
//!
//! The module runs in `weir-wasm-host`'s interpreter, and its host calls land in the
//! same in-memory host ([`crate::host::native`]) the native harness fills and reads,
//! so [`TestFilter`](super::TestFilter) drives both the same way and builds the same
//! [`Exchange`](super::Exchange). What differs is what runs: the filter compiled for
//! wasm32, with weir's ABI layer (`runtime::wasm`), hook stripping and 32-bit `usize`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use weir_wasm_host::{GrpcCall, HttpCall, Instance, LocalReply, Proxy, PLUGIN_CONFIGURATION};

use crate::host::native;
use crate::host::{Buffer, Direction, Map, MetricKind, SetStatus};
use crate::outcome::Action;
use crate::ConfigError;

/// The variable naming the module to test through.
pub(crate) const VARIABLE: &str = "WEIR_TEST_MODULE";

/// The root context id Envoy gives the plugin.
const ROOT: i32 = 1;
/// Stack for the interpreter: debug builds of it need more than a test thread's 2 MiB.
const STACK: usize = 64 * 1024 * 1024;

/// What runs on the interpreter's thread: a step with the module's instance (none
/// before it is loaded).
type Job = Box<dyn FnOnce(&mut Option<Instance<NativeProxy>>) + Send>;

/// One thread with room for the interpreter, for the life of one [`Module`]: the
/// instance lives there, and each call carries this thread's native host state
/// there and back, so the module's host calls see (and leave) what the harness put
/// here. Started once per `TestFilter`, not once per call.
struct Interpreter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Interpreter {
    fn start() -> Result<Interpreter, String> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("weir-wasm-host".into())
            .stack_size(STACK)
            .spawn(move || {
                let mut instance = None;
                for job in queue {
                    job(&mut instance);
                }
            })
            .map_err(|e| format!("cannot start the interpreter's thread: {e}"))?;
        Ok(Interpreter {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the interpreter's thread with the host state of this one.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Option<Instance<NativeProxy>>) -> R + Send + 'static,
    ) -> Result<R, String> {
        let state = native::with(std::mem::take);
        let lasting = native::lasting(std::mem::take);
        let log_name = crate::log::filter_name();
        let (done, answer) = mpsc::channel();
        let job: Job = Box::new(move |instance| {
            native::with(|s| *s = state);
            native::lasting(|l| *l = lasting);
            crate::log::set_filter_name(log_name);
            let out = f(instance);
            let _ = done.send((
                out,
                native::with(std::mem::take),
                native::lasting(std::mem::take),
            ));
        });
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        let received = if sent { answer.recv().ok() } else { None };
        let (out, state, lasting) =
            received.ok_or_else(|| "the interpreter's thread panicked".to_owned())?;
        native::with(|s| *s = state);
        native::lasting(|l| *l = lasting);
        Ok(out)
    }
}

impl Drop for Interpreter {
    fn drop(&mut self) {
        drop(self.jobs.take()); // the thread's loop ends with the queue
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The module path `WEIR_TEST_MODULE` names, if set. A relative path is looked up
/// from the current directory and then from each of its parents, since `cargo test`
/// runs a package's tests in the package's directory, not where it was typed.
pub(crate) fn requested() -> Option<PathBuf> {
    let value = std::env::var_os(VARIABLE).filter(|v| !v.is_empty())?;
    let path = PathBuf::from(value);
    if path.is_absolute() || path.exists() {
        return Some(path);
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join(&path))
        .find(|p| p.exists())
        .or(Some(path))
}

/// The proxy-wasm host calls, answered by the native host.
#[derive(Default)]
pub(crate) struct NativeProxy {
    configuration: Vec<u8>,
}

fn map(n: u32) -> Option<Map> {
    [
        Map::RequestHeaders,
        Map::RequestTrailers,
        Map::ResponseHeaders,
        Map::ResponseTrailers,
        Map::HttpCallResponseHeaders,
    ]
    .into_iter()
    .find(|m| *m as u32 == n)
}

fn buffer(n: u32) -> Option<Buffer> {
    [
        Buffer::RequestBody,
        Buffer::ResponseBody,
        Buffer::HttpCallResponseBody,
        Buffer::GrpcReceive,
    ]
    .into_iter()
    .find(|b| *b as u32 == n)
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

impl Proxy for NativeProxy {
    fn log(&mut self, level: u32, message: &[u8]) {
        native::log(level, &String::from_utf8_lossy(message));
    }
    fn log_level(&mut self) -> Option<u32> {
        native::log_level()
    }
    fn map_get(&mut self, n: u32, name: &[u8]) -> Option<Vec<u8>> {
        native::map_get(map(n)?, name)
    }
    fn map_pairs(&mut self, n: u32) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        Some(native::map_pairs(map(n)?))
    }
    fn map_set(&mut self, n: u32, name: &[u8], value: &[u8]) -> bool {
        map(n).is_some_and(|m| native::map_set(m, name, value))
    }
    fn map_add(&mut self, n: u32, name: &[u8], value: &[u8]) -> bool {
        map(n).is_some_and(|m| native::map_add(m, name, value))
    }
    fn map_remove(&mut self, n: u32, name: &[u8]) -> bool {
        map(n).is_some_and(|m| native::map_remove(m, name))
    }
    fn buffer_get(&mut self, n: u32, start: usize, max: usize) -> Option<Vec<u8>> {
        if n == weir_wasm_host::VM_CONFIGURATION {
            let c = native::vm_configuration();
            let start = start.min(c.len());
            return Some(c[start..start.saturating_add(max).min(c.len())].to_vec());
        }
        if n == PLUGIN_CONFIGURATION {
            let c = &self.configuration;
            let start = start.min(c.len());
            return Some(c[start..start.saturating_add(max).min(c.len())].to_vec());
        }
        Some(native::buffer_get(buffer(n)?, start, max))
    }
    fn buffer_set(&mut self, n: u32, start: usize, size: usize, bytes: &[u8]) -> bool {
        buffer(n).is_some_and(|b| native::buffer_set(b, start, size, bytes))
    }
    fn send_local_reply(&mut self, reply: LocalReply) -> bool {
        let headers: Vec<(&[u8], &[u8])> = reply
            .headers
            .iter()
            .map(|(k, v)| (&k[..], &v[..]))
            .collect();
        native::send_local_reply(
            reply.status,
            &String::from_utf8_lossy(&reply.details),
            &reply.body,
            &headers,
            reply.grpc_status,
        )
    }
    fn property(&mut self, path: &[&[u8]]) -> Option<Vec<u8>> {
        let path: Option<Vec<&str>> = path.iter().map(|p| text(p)).collect();
        native::property(&path?)
    }
    fn define_metric(&mut self, kind: u32, name: &[u8]) -> Option<u32> {
        let kind = [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
        ]
        .into_iter()
        .find(|k| *k as u32 == kind)?;
        native::define_metric(kind, text(name)?)
    }
    fn increment_metric(&mut self, id: u32, delta: i64) -> bool {
        native::increment_metric(id, delta)
    }
    fn record_metric(&mut self, id: u32, value: u64) -> bool {
        native::record_metric(id, value)
    }
    fn shared_get(&mut self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        native::shared_get(text(key)?)
    }
    fn shared_set(&mut self, key: &[u8], value: &[u8], cas: u32) -> i32 {
        let Some(key) = text(key) else {
            return weir_wasm_host::BAD_ARGUMENT;
        };
        match native::shared_set(key, value, cas) {
            SetStatus::Ok => weir_wasm_host::OK,
            SetStatus::CasMismatch => weir_wasm_host::CAS_MISMATCH,
            SetStatus::Failed => weir_wasm_host::INTERNAL_FAILURE,
        }
    }
    fn set_tick_period(&mut self, millis: u32) -> bool {
        native::set_tick_period(millis)
    }
    fn continue_stream(&mut self, direction: u32) -> bool {
        match direction {
            0 => native::resume(Direction::Request),
            1 => native::resume(Direction::Response),
            _ => false,
        }
    }
    fn now_nanos(&mut self) -> Option<u64> {
        native::now_nanos()
    }
    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> i32 {
        let path: Option<Vec<&str>> = path.iter().map(|p| text(p)).collect();
        match path {
            Some(path) => native::set_property(&path, value) as i32,
            None => weir_wasm_host::BAD_ARGUMENT,
        }
    }
    fn call_foreign(&mut self, name: &[u8], args: &[u8]) -> Result<Vec<u8>, i32> {
        native::call_foreign(text(name).ok_or(weir_wasm_host::NOT_FOUND)?, args)
            .map_err(|s| s as i32)
    }
    fn get_metric(&mut self, id: u32) -> Option<u64> {
        native::get_metric(id)
    }
    fn queue_register(&mut self, name: &[u8]) -> Result<u32, i32> {
        let name = text(name).ok_or(weir_wasm_host::BAD_ARGUMENT)?;
        native::queue_register(name).map_err(|s| s as i32)
    }
    fn queue_resolve(&mut self, vm_id: &[u8], name: &[u8]) -> Result<u32, i32> {
        let (Some(vm_id), Some(name)) = (text(vm_id), text(name)) else {
            return Err(weir_wasm_host::NOT_FOUND);
        };
        native::queue_resolve(vm_id, name).map_err(|s| s as i32)
    }
    fn queue_enqueue(&mut self, token: u32, bytes: &[u8]) -> i32 {
        native::queue_enqueue(token, bytes) as i32
    }
    fn queue_dequeue(&mut self, token: u32) -> Result<Vec<u8>, i32> {
        native::queue_dequeue(token).map_err(|s| s as i32)
    }
    fn http_call(&mut self, call: HttpCall) -> Option<u32> {
        let headers: Option<Vec<(&str, &str)>> = call
            .headers
            .iter()
            .map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect();
        let timeout = std::time::Duration::from_millis(call.timeout_millis.into());
        native::http_call(text(&call.upstream)?, &headers?, &call.body, timeout)
    }
    fn grpc_call(&mut self, call: GrpcCall) -> Option<u32> {
        let metadata: Option<Vec<(&str, &str)>> = call
            .metadata
            .iter()
            .map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect();
        // The module names the cluster in a `GrpcService` message (envoy_grpc, field 1).
        let cluster = crate::proto::fields(&call.service)
            .flatten()
            .find(|f| f.number == 1)
            .and_then(|f| f.as_message()?.flatten().find(|f| f.number == 1))
            .and_then(|f| f.as_str().map(str::to_owned))
            .or_else(|| text(&call.service).map(str::to_owned))?;
        let timeout = std::time::Duration::from_millis(call.timeout_millis.into());
        native::grpc_call(
            &cluster,
            text(&call.service_name)?,
            text(&call.method)?,
            &metadata?,
            &call.message,
            timeout,
        )
    }
    fn status(&mut self) -> Option<(u32, Vec<u8>)> {
        native::status_message().map(|m| (0, m))
    }
}

/// A filter's compiled module, configured, taking requests.
pub(crate) struct Module {
    interpreter: Interpreter,
    path: PathBuf,
    next_context: i32,
}

impl Module {
    /// Loads the module at `path` for the filter type `type_name`, refusing a module
    /// that is not that filter's, and runs its start-up as Envoy does. `Err` is why it
    /// cannot be tested through (a test failure, not a configuration refusal).
    pub(crate) fn load(path: &Path, type_name: &str) -> Result<Module, String> {
        let shown = path.display();
        let wasm = std::fs::read(path).map_err(|e| {
            format!("{VARIABLE}: cannot read `{shown}`: {e} (build it with `cargo xtask build`)")
        })?;
        let expected = crate::identity::of_type(type_name);
        match weir_wasm_host::custom_section(&wasm, crate::identity::SECTION) {
            Some(section) if crate::identity::of_section(section) == expected => {}
            Some(section) => {
                return Err(format!(
                    "{VARIABLE}: `{shown}` is the module of `{}`, not of `{expected}`: \
                     point it at this filter's module",
                    crate::identity::of_section(section)
                ))
            }
            None => {
                return Err(format!(
                    "{VARIABLE}: `{shown}` has no `{}` section naming its filter, so it cannot \
                     be checked to be `{expected}`'s: build it with this weir's `export!`",
                    crate::identity::SECTION
                ))
            }
        }
        let interpreter = Interpreter::start()?;
        interpreter
            .run(move |instance| {
                *instance = Some(Instance::new(&wasm, NativeProxy::default())?);
                Ok(())
            })?
            .map_err(|e: weir_wasm_host::Error| format!("{VARIABLE}: `{shown}`: {e}"))?;
        let mut module = Module {
            interpreter,
            path: path.to_owned(),
            next_context: ROOT + 1,
        };
        module.call("_initialize", &[])?;
        module.call("proxy_on_context_create", &[ROOT, 0])?;
        if module.call("proxy_on_vm_start", &[ROOT, 0])? == Some(0) {
            return Err(format!("{VARIABLE}: `{shown}` refused to start"));
        }
        Ok(module)
    }

    /// `proxy_on_configure` with `json`; a refusal carries the error the module logged.
    pub(crate) fn configure(&mut self, json: &[u8]) -> Result<(), ConfigError> {
        let configuration = json.to_vec();
        self.interpreter
            .run(move |instance| {
                if let Some(instance) = instance {
                    instance.proxy_mut().configuration = configuration;
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let accepted = self
            .call("proxy_on_configure", &[ROOT, json.len() as i32])
            .unwrap_or_else(|e| panic!("{e}"));
        if accepted != Some(0) {
            return Ok(());
        }
        let said = native::with(|s| {
            s.logs.iter().rev().find_map(|(_, m)| {
                m.split_once("configuration refused: ")
                    .map(|(_, r)| r.to_owned())
            })
        })
        .unwrap_or_else(|| "refused (the module logged no reason)".to_owned());
        Err(
            match said
                .strip_prefix("field `")
                .and_then(|r| r.split_once("`: "))
            {
                Some((field, message)) => ConfigError::at(field, message),
                None => ConfigError::new(said),
            },
        )
    }

    /// Calls an export; a trap is an error naming the module.
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Option<i32>, String> {
        let (name, args) = (name.to_owned(), args.to_vec());
        self.interpreter
            .run(move |instance| match instance {
                Some(instance) => instance.call(&name, &args).map_err(|e| e.to_string()),
                None => Err("not loaded".to_owned()),
            })?
            .map_err(|e| format!("the module `{}`: {e}", self.path.display()))
    }

    /// Calls an export the harness cannot go on without: a trap fails the test.
    fn must(&mut self, name: &str, args: &[i32]) -> Option<i32> {
        self.call(name, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `proxy_on_tick`.
    pub(crate) fn tick(&mut self) {
        self.must("proxy_on_tick", &[ROOT]);
    }

    /// A new request context; its id.
    pub(crate) fn stream(&mut self) -> i32 {
        let id = self.next_context;
        self.next_context += 1;
        self.must("proxy_on_context_create", &[id, ROOT]);
        id
    }

    /// A stream hook (`proxy_on_request_headers`, ...): what it returned. A hook
    /// the module does not export (stripped) continues, as in Envoy.
    pub(crate) fn hook(&mut self, name: &str, args: &[i32]) -> Action {
        match self.must(name, args) {
            Some(1) => Action::Pause,
            _ => Action::Continue,
        }
    }

    /// `proxy_on_queue_ready` for `token` (nothing when the module has no queue hook).
    pub(crate) fn queue_ready(&mut self, token: u32) {
        self.must("proxy_on_queue_ready", &[ROOT, token as i32]);
    }

    /// `proxy_on_http_call_response` for `token`, with the answer in the host.
    pub(crate) fn callout_response(&mut self, token: u32, headers: usize, body: usize) {
        self.must(
            "proxy_on_http_call_response",
            &[ROOT, token as i32, headers as i32, body as i32, 0],
        );
    }

    /// `proxy_on_grpc_receive` for `token`, with the message in the host.
    pub(crate) fn grpc_receive(&mut self, token: u32, size: usize) {
        self.must("proxy_on_grpc_receive", &[ROOT, token as i32, size as i32]);
    }

    /// `proxy_on_grpc_close` for `token` with `status`, its message in the host.
    pub(crate) fn grpc_close(&mut self, token: u32, status: u32) {
        self.must("proxy_on_grpc_close", &[ROOT, token as i32, status as i32]);
    }

    /// `proxy_on_log`, then the context's end (`proxy_on_done`, `proxy_on_delete`).
    pub(crate) fn finish(&mut self, id: i32) {
        self.must("proxy_on_log", &[id]);
        self.must("proxy_on_done", &[id]);
        self.must("proxy_on_delete", &[id]);
    }
}
