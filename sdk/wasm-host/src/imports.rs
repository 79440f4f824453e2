//! The host calls a module imports: proxy-wasm 0.2.1 (`env`) over a [`Proxy`], and
//! WASI preview 1 reduced to an empty environment with its output handed to the proxy.
//!
//! Pointers and sizes are the module's 32-bit ones; a pointer outside its memory is
//! an error (the call traps), never a panic. Buffers returned to the module come from
//! its own allocator, as Envoy's do. An import this host does not know is a stub of
//! the right type answering `Ok` (`NotFound` for `proxy_get_*` look-ups, `ENOSYS` for WASI).

use std::collections::HashSet;

use wasmi::{Caller, Extern, ExternType, Linker, Memory, Module, Val};

use crate::{deserialize_pairs, serialize_pairs, HttpCall, LocalReply, Proxy};
use crate::{BAD_ARGUMENT, NOT_FOUND, OK};

/// What the store holds: the proxy, and how many proxy-wasm calls the module made.
pub(crate) struct Host<P> {
    pub proxy: P,
    pub calls: u64,
}

type Trap = wasmi::Error;

fn memory<P>(caller: &Caller<'_, Host<P>>) -> Result<Memory, Trap> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(Trap::new("the module exports no memory")),
    }
}

fn read<P>(caller: &Caller<'_, Host<P>>, ptr: i32, len: i32) -> Result<Vec<u8>, Trap> {
    let mem = memory(caller)?;
    let mut buf = vec![0; len as u32 as usize];
    mem.read(caller, ptr as u32 as usize, &mut buf)
        .map_err(|_| Trap::new("the module passed a pointer outside its memory"))?;
    Ok(buf)
}

fn write<P>(caller: &mut Caller<'_, Host<P>>, ptr: i32, bytes: &[u8]) -> Result<(), Trap> {
    let mem = memory(caller)?;
    mem.write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| Trap::new("the module passed a pointer outside its memory"))
}

/// Memory for a buffer handed to the module, from its own allocator, as Envoy does.
fn allocate<P>(caller: &mut Caller<'_, Host<P>>, size: i32) -> Result<i32, Trap> {
    for name in ["proxy_on_memory_allocate", "malloc"] {
        if let Some(Extern::Func(f)) = caller.get_export(name) {
            let alloc = f.typed::<i32, i32>(&*caller)?;
            let ptr = alloc.call(&mut *caller, size)?;
            if ptr == 0 && size > 0 {
                return Err(Trap::new("the module's allocator returned null"));
            }
            return Ok(ptr);
        }
    }
    Err(Trap::new(
        "the module exports neither proxy_on_memory_allocate nor malloc",
    ))
}

/// Hands `bytes` to the module: allocated in its memory, the address written at
/// `data_out` and the size at `size_out`. `None` is `NotFound`.
fn give<P>(
    caller: &mut Caller<'_, Host<P>>,
    bytes: Option<Vec<u8>>,
    data_out: i32,
    size_out: i32,
) -> Result<i32, Trap> {
    let Some(bytes) = bytes else {
        return Ok(NOT_FOUND);
    };
    let ptr = allocate(caller, bytes.len() as i32)?;
    write(caller, ptr, &bytes)?;
    write(caller, data_out, &ptr.to_le_bytes())?;
    write(caller, size_out, &(bytes.len() as u32).to_le_bytes())?;
    Ok(OK)
}

fn status(ok: bool) -> i32 {
    if ok {
        OK
    } else {
        BAD_ARGUMENT
    }
}

/// The proxy, counting the call.
fn proxy<'a, P>(caller: &'a mut Caller<'_, Host<P>>) -> &'a mut P {
    let host = caller.data_mut();
    host.calls += 1;
    &mut host.proxy
}

/// The host calls this module provides by name; every other import is stubbed.
const PROVIDED: &[(&str, &str)] = &[
    ("env", "proxy_log"),
    ("env", "proxy_get_log_level"),
    ("env", "proxy_get_header_map_value"),
    ("env", "proxy_get_header_map_pairs"),
    ("env", "proxy_replace_header_map_value"),
    ("env", "proxy_add_header_map_value"),
    ("env", "proxy_remove_header_map_value"),
    ("env", "proxy_get_buffer_bytes"),
    ("env", "proxy_set_buffer_bytes"),
    ("env", "proxy_send_local_response"),
    ("env", "proxy_get_property"),
    ("env", "proxy_define_metric"),
    ("env", "proxy_increment_metric"),
    ("env", "proxy_record_metric"),
    ("env", "proxy_get_shared_data"),
    ("env", "proxy_set_shared_data"),
    ("env", "proxy_set_tick_period_milliseconds"),
    ("env", "proxy_continue_stream"),
    ("env", "proxy_get_current_time_nanoseconds"),
    ("env", "proxy_http_call"),
    ("env", "proxy_set_effective_context"),
    ("env", "proxy_set_property"),
    ("env", "proxy_call_foreign_function"),
    ("env", "proxy_get_metric"),
    ("env", "proxy_register_shared_queue"),
    ("env", "proxy_resolve_shared_queue"),
    ("env", "proxy_enqueue_shared_queue"),
    ("env", "proxy_dequeue_shared_queue"),
    ("env", "proxy_grpc_call"),
    ("env", "proxy_get_status"),
    ("wasi_snapshot_preview1", "environ_sizes_get"),
    ("wasi_snapshot_preview1", "args_sizes_get"),
    ("wasi_snapshot_preview1", "fd_write"),
    ("wasi_snapshot_preview1", "proc_exit"),
];

/// Defines every import of `module` in `linker`.
pub(crate) fn link<P: Proxy + 'static>(
    linker: &mut Linker<Host<P>>,
    module: &Module,
) -> Result<(), Trap> {
    proxy_calls(linker)?;
    more_proxy_calls(linker)?;
    state_and_queue_calls(linker)?;
    grpc_calls(linker)?;
    wasi(linker)?;
    stubs(linker, module)
}

fn proxy_calls<P: Proxy + 'static>(linker: &mut Linker<Host<P>>) -> Result<(), Trap> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, Host<P>>, level: i32, ptr: i32, len: i32| {
            let message = read(&caller, ptr, len)?;
            proxy(&mut caller).log(level as u32, &message);
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, Host<P>>, out: i32| match proxy(&mut caller).log_level() {
            Some(level) => write(&mut caller, out, &level.to_le_bytes()).map(|()| OK),
            None => Ok(NOT_FOUND),
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, Host<P>>, map: i32, k: i32, kl: i32, out: i32, size: i32| {
            let name = read(&caller, k, kl)?;
            let value = proxy(&mut caller).map_get(map as u32, &name);
            give(&mut caller, value, out, size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, Host<P>>, map: i32, out: i32, size: i32| {
            let pairs = proxy(&mut caller).map_pairs(map as u32);
            give(&mut caller, pairs.map(|p| serialize_pairs(&p)), out, size)
        },
    )?;
    type Edit<P> = fn(&mut P, u32, &[u8], &[u8]) -> bool;
    let edits: [(&str, Edit<P>); 2] = [
        ("proxy_replace_header_map_value", |p, m, k, v| {
            p.map_set(m, k, v)
        }),
        ("proxy_add_header_map_value", |p, m, k, v| {
            p.map_add(m, k, v)
        }),
    ];
    for (name, edit) in edits {
        linker.func_wrap(
            "env",
            name,
            move |mut caller: Caller<'_, Host<P>>, map: i32, k: i32, kl: i32, v: i32, vl: i32| {
                let (key, value) = (read(&caller, k, kl)?, read(&caller, v, vl)?);
                Ok(status(edit(proxy(&mut caller), map as u32, &key, &value)))
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, Host<P>>, map: i32, k: i32, kl: i32| {
            let key = read(&caller, k, kl)?;
            Ok(status(proxy(&mut caller).map_remove(map as u32, &key)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, Host<P>>,
         buffer: i32,
         start: i32,
         max: i32,
         out: i32,
         size: i32| {
            let bytes = proxy(&mut caller).buffer_get(
                buffer as u32,
                start as u32 as usize,
                max as u32 as usize,
            );
            give(&mut caller, bytes, out, size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, Host<P>>,
         buffer: i32,
         start: i32,
         size: i32,
         data: i32,
         len: i32| {
            let bytes = read(&caller, data, len)?;
            let ok = proxy(&mut caller).buffer_set(
                buffer as u32,
                start as u32 as usize,
                size as u32 as usize,
                &bytes,
            );
            Ok(status(ok))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, Host<P>>,
         code: i32,
         details: i32,
         details_len: i32,
         body: i32,
         body_len: i32,
         headers: i32,
         headers_len: i32,
         grpc: i32| {
            let reply = LocalReply {
                status: code as u32,
                details: read(&caller, details, details_len)?,
                body: read(&caller, body, body_len)?,
                headers: deserialize_pairs(&read(&caller, headers, headers_len)?),
                grpc_status: (grpc >= 0).then_some(grpc as u32),
            };
            Ok(status(proxy(&mut caller).send_local_reply(reply)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, Host<P>>, path: i32, len: i32, out: i32, size: i32| {
            let path = read(&caller, path, len)?;
            let segments: Vec<&[u8]> = path.split(|b| *b == 0).collect();
            let value = proxy(&mut caller).property(&segments);
            give(&mut caller, value, out, size)
        },
    )?;
    Ok(())
}

fn more_proxy_calls<P: Proxy + 'static>(linker: &mut Linker<Host<P>>) -> Result<(), Trap> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, Host<P>>, kind: i32, name: i32, len: i32, out: i32| {
            let name = read(&caller, name, len)?;
            match proxy(&mut caller).define_metric(kind as u32, &name) {
                Some(id) => write(&mut caller, out, &id.to_le_bytes()).map(|()| OK),
                None => Ok(BAD_ARGUMENT),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut caller: Caller<'_, Host<P>>, id: i32, delta: i64| {
            Ok(status(
                proxy(&mut caller).increment_metric(id as u32, delta),
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut caller: Caller<'_, Host<P>>, id: i32, value: i64| {
            Ok(status(
                proxy(&mut caller).record_metric(id as u32, value as u64),
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: Caller<'_, Host<P>>, k: i32, kl: i32, out: i32, size: i32, cas: i32| {
            let key = read(&caller, k, kl)?;
            match proxy(&mut caller).shared_get(&key) {
                Some((value, version)) => {
                    write(&mut caller, cas, &version.to_le_bytes())?;
                    give(&mut caller, Some(value), out, size)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut caller: Caller<'_, Host<P>>, k: i32, kl: i32, v: i32, vl: i32, cas: i32| {
            let (key, value) = (read(&caller, k, kl)?, read(&caller, v, vl)?);
            Ok(proxy(&mut caller).shared_set(&key, &value, cas as u32))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, Host<P>>, millis: i32| {
            Ok(status(proxy(&mut caller).set_tick_period(millis as u32)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Caller<'_, Host<P>>, direction: i32| {
            Ok(status(proxy(&mut caller).continue_stream(direction as u32)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, Host<P>>, out: i32| match proxy(&mut caller).now_nanos() {
            Some(nanos) => write(&mut caller, out, &nanos.to_le_bytes()).map(|()| OK),
            None => Ok(NOT_FOUND),
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, Host<P>>,
         up: i32,
         up_len: i32,
         headers: i32,
         headers_len: i32,
         body: i32,
         body_len: i32,
         trailers: i32,
         trailers_len: i32,
         timeout: i32,
         token_out: i32| {
            let call = HttpCall {
                upstream: read(&caller, up, up_len)?,
                headers: deserialize_pairs(&read(&caller, headers, headers_len)?),
                body: read(&caller, body, body_len)?,
                trailers: deserialize_pairs(&read(&caller, trailers, trailers_len)?),
                timeout_millis: timeout as u32,
            };
            match proxy(&mut caller).http_call(call) {
                Some(token) => write(&mut caller, token_out, &token.to_le_bytes()).map(|()| OK),
                None => Ok(INTERNAL_FAILURE),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: Caller<'_, Host<P>>, context: i32| {
            Ok(status(
                proxy(&mut caller).set_effective_context(context as u32),
            ))
        },
    )?;
    Ok(())
}

use crate::INTERNAL_FAILURE;

/// Writes a token the proxy chose at `out`, or returns the refusal's status.
fn token<P>(
    caller: &mut Caller<'_, Host<P>>,
    answer: Result<u32, i32>,
    out: i32,
) -> Result<i32, Trap> {
    match answer {
        Ok(token) => write(caller, out, &token.to_le_bytes()).map(|()| OK),
        Err(status) => Ok(status),
    }
}

/// Properties, filter state (foreign functions), metric reads and shared queues.
fn state_and_queue_calls<P: Proxy + 'static>(linker: &mut Linker<Host<P>>) -> Result<(), Trap> {
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, Host<P>>, path: i32, len: i32, value: i32, value_len: i32| {
            let (path, value) = (read(&caller, path, len)?, read(&caller, value, value_len)?);
            let segments: Vec<&[u8]> = path.split(|b| *b == 0).collect();
            Ok(proxy(&mut caller).set_property(&segments, &value))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut caller: Caller<'_, Host<P>>,
         name: i32,
         name_len: i32,
         args: i32,
         args_len: i32,
         out: i32,
         size: i32| {
            let (name, args) = (
                read(&caller, name, name_len)?,
                read(&caller, args, args_len)?,
            );
            match proxy(&mut caller).call_foreign(&name, &args) {
                Ok(result) => give(&mut caller, Some(result), out, size),
                Err(status) => Ok(status),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, Host<P>>, id: i32, out: i32| match proxy(&mut caller)
            .get_metric(id as u32)
        {
            Some(value) => write(&mut caller, out, &value.to_le_bytes()).map(|()| OK),
            None => Ok(NOT_FOUND),
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: Caller<'_, Host<P>>, name: i32, len: i32, out: i32| {
            let name = read(&caller, name, len)?;
            let answer = proxy(&mut caller).queue_register(&name);
            token(&mut caller, answer, out)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: Caller<'_, Host<P>>, vm: i32, vm_len: i32, name: i32, len: i32, out: i32| {
            let (vm_id, name) = (read(&caller, vm, vm_len)?, read(&caller, name, len)?);
            let answer = proxy(&mut caller).queue_resolve(&vm_id, &name);
            token(&mut caller, answer, out)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut caller: Caller<'_, Host<P>>, queue: i32, data: i32, len: i32| {
            let bytes = read(&caller, data, len)?;
            Ok(proxy(&mut caller).queue_enqueue(queue as u32, &bytes))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: Caller<'_, Host<P>>, queue: i32, out: i32, size: i32| match proxy(&mut caller)
            .queue_dequeue(queue as u32)
        {
            Ok(bytes) => give(&mut caller, Some(bytes), out, size),
            Err(status) => Ok(status),
        },
    )?;
    Ok(())
}

fn grpc_calls<P: Proxy + 'static>(linker: &mut Linker<Host<P>>) -> Result<(), Trap> {
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut caller: Caller<'_, Host<P>>,
         service: i32,
         service_len: i32,
         name: i32,
         name_len: i32,
         method: i32,
         method_len: i32,
         metadata: i32,
         metadata_len: i32,
         message: i32,
         message_len: i32,
         timeout: i32,
         token_out: i32| {
            let call = crate::GrpcCall {
                service: read(&caller, service, service_len)?,
                service_name: read(&caller, name, name_len)?,
                method: read(&caller, method, method_len)?,
                metadata: deserialize_pairs(&read(&caller, metadata, metadata_len)?),
                message: read(&caller, message, message_len)?,
                timeout_millis: timeout as u32,
            };
            match proxy(&mut caller).grpc_call(call) {
                Some(token) => write(&mut caller, token_out, &token.to_le_bytes()).map(|()| OK),
                None => Ok(INTERNAL_FAILURE),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: Caller<'_, Host<P>>, code: i32, out: i32, size: i32| match proxy(&mut caller)
            .status()
        {
            Some((status, message)) => {
                write(&mut caller, code, &status.to_le_bytes())?;
                give(&mut caller, Some(message), out, size)
            }
            None => Ok(NOT_FOUND),
        },
    )?;
    Ok(())
}

/// WASI's `ENOSYS`.
const WASI_NOSYS: i32 = 52;

fn wasi<P: Proxy + 'static>(linker: &mut Linker<Host<P>>) -> Result<(), Trap> {
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            "wasi_snapshot_preview1",
            name,
            |mut caller: Caller<'_, Host<P>>, count: i32, size: i32| {
                write(&mut caller, count, &0u32.to_le_bytes())?;
                write(&mut caller, size, &0u32.to_le_bytes())?;
                Ok(0)
            },
        )?;
    }
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut caller: Caller<'_, Host<P>>, fd: i32, iovs: i32, len: i32, written: i32| {
            let mut total = 0u32;
            let mut text = Vec::new();
            for i in 0..len.max(0) {
                let iov = read(&caller, iovs.wrapping_add(i.wrapping_mul(8)), 8)?;
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let n = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                text.extend(read(&caller, ptr, n)?);
                total = total.wrapping_add(n as u32);
            }
            while text.last().is_some_and(u8::is_ascii_whitespace) {
                text.pop();
            }
            if !text.is_empty() {
                caller.data_mut().proxy.wasi_output(fd as u32, &text);
            }
            write(&mut caller, written, &total.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        |code: i32| -> Result<(), Trap> { Err(Trap::i32_exit(code)) },
    )?;
    Ok(())
}

/// Every other import: a stub of the right type answering `Ok`, `NotFound` for
/// `proxy_get_*` look-ups, `ENOSYS` for WASI (0 for `environ_get`/`args_get`).
fn stubs<P: Proxy + 'static>(linker: &mut Linker<Host<P>>, module: &Module) -> Result<(), Trap> {
    let mut seen = HashSet::new();
    for import in module.imports() {
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let (m, name) = (import.module(), import.name());
        if !seen.insert((m.to_owned(), name.to_owned())) || PROVIDED.contains(&(m, name)) {
            continue;
        }
        let (answer, counted) = if m == "wasi_snapshot_preview1" {
            let ok = matches!(name, "environ_get" | "args_get");
            (if ok { 0 } else { WASI_NOSYS }, false)
        } else if name.starts_with("proxy_get_") {
            (NOT_FOUND, true)
        } else {
            (OK, true)
        };
        let results: Vec<_> = ty.results().to_vec();
        linker.func_new(
            m,
            name,
            ty.clone(),
            move |mut caller: Caller<'_, Host<P>>, _params, out| {
                if counted {
                    caller.data_mut().calls += 1;
                }
                for (slot, t) in out.iter_mut().zip(&results) {
                    *slot = match t {
                        wasmi::ValType::I32 => Val::I32(answer),
                        other => Val::default_for_ty(*other),
                    };
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}
