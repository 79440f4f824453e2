//! Shrinks a validated module: drops the hook exports the filter never implements
//! (so Envoy never enters the VM for them), then runs Binaryen's `-Oz` in-process.

use anyhow::{Context, Result};
use std::path::Path;
use wasm_opt::{Feature, OptimizationOptions, Pass};

/// The custom section in which the weir SDK records which hooks a filter implements.
pub const HOOKS_SECTION: &str = weir::hooks::SECTION;

/// Exports an HTTP filter never needs: network-filter, gRPC-stream metadata and
/// foreign-function hooks. Removed whenever the module carries a `weir.hooks` section.
/// (`proxy_on_grpc_receive` and `proxy_on_grpc_close` answer gRPC callouts: the
/// section's `GRPC_RESPONSE` bit keeps them.)
const NEVER_NEEDED: &[&str] = &[
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_connection_close",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_foreign_function",
    "proxy_on_request_metadata",
    "proxy_on_response_metadata",
];

/// C allocation functions the SDK defines on `wasm32-wasip1` so that wasi-libc links
/// no allocator of its own (`weir`'s `heap.rs`); rustc exports them, nothing calls
/// them from outside. `malloc` is the host's allocation export on
/// `wasm32-unknown-unknown`: it goes only where `proxy_on_memory_allocate` is there.
const LIBC_ALLOCATOR: &[&str] = &[
    "calloc",
    "realloc",
    "free",
    "aligned_alloc",
    "posix_memalign",
    "malloc_usable_size",
];

/// Removes the exports of hooks the module's `weir.hooks` section says are unused,
/// and the section itself. Returns the removed export names; a module without
/// the section (not built on weir, or an SDK that does not know its hooks) is left whole.
/// Also removes, unreported, the C allocator exports of a weir module ([`LIBC_ALLOCATOR`]).
pub fn strip_unused_hooks(module: &mut walrus::Module) -> Vec<String> {
    let Some(section) = module.customs.remove_raw(HOOKS_SECTION) else {
        return Vec::new();
    };
    let Ok(bytes) = <[u8; 4]>::try_from(&section.data[..]) else {
        return Vec::new();
    };
    let mask = u32::from_le_bytes(bytes);
    let unused: Vec<&str> = weir::hooks::EXPORTS
        .iter()
        .filter(|(bit, _)| mask & bit == 0)
        .map(|(_, name)| *name)
        .chain(NEVER_NEEDED.iter().copied())
        .collect();
    let doomed: Vec<_> = module
        .exports
        .iter()
        .filter(|e| unused.contains(&e.name.as_str()))
        .map(|e| (e.id(), e.name.clone()))
        .collect();
    for (id, _) in &doomed {
        module.exports.delete(*id);
    }
    let allocates = module
        .exports
        .iter()
        .any(|e| e.name == "proxy_on_memory_allocate");
    let libc: Vec<_> = module
        .exports
        .iter()
        .filter(|e| LIBC_ALLOCATOR.contains(&e.name.as_str()) || (allocates && e.name == "malloc"))
        .map(|e| e.id())
        .collect();
    for id in libc {
        module.exports.delete(id);
    }
    doomed.into_iter().map(|(_, name)| name).collect()
}

/// std functions that only std's default panic hook reaches, by their mangled
/// (v0) names: reading `RUST_BACKTRACE` (`getenv`, and on wasip1 the
/// environment's allocation), the hook itself and its writing closures (the
/// thread's name, stderr, backtrace printing, `getcwd`; the second name matches
/// `default_hook`, `default_hook::{closure}` and the closures within). A weir
/// module installs its own hook in `_initialize`, before any of its code runs,
/// so the default hook never runs; `stub_default_panic_hook` makes these bodies
/// `unreachable` and wasm-opt drops what only they called.
///
/// The third, std's backtrace printer (`BacktraceLock::print` and, within it, its
/// `DisplayBacktrace` formatter, which reads `getcwd`), runs only in the default
/// hook and, in std's default allocation-error hook, after
/// `get_backtrace_style` (stubbed here) says to print one: dead once these are
/// stubbed, but kept by the table entry of its formatter (wasm32-wasip1: 1.2 KB).
const DEFAULT_PANIC_HOOK: &[&str] = &[
    "3std5panic19get_backtrace_style",
    "3std9panicking12default_hook",
    "13BacktraceLock5print",
];

/// Replaces the bodies of [`DEFAULT_PANIC_HOOK`]'s functions with `unreachable`
/// in a weir module (one with a `weir.hooks` section, checked by the caller
/// before the section is removed); needs the name section. Returns how many.
pub fn stub_default_panic_hook(module: &mut walrus::Module) -> usize {
    use walrus::ir::{Instr, Unreachable};
    let mut stubbed = 0;
    for func in module.funcs.iter_mut() {
        let Some(name) = func.name.as_deref() else {
            continue;
        };
        if !DEFAULT_PANIC_HOOK.iter().any(|n| name.contains(n)) {
            continue;
        }
        let walrus::FunctionKind::Local(local) = &mut func.kind else {
            continue;
        };
        let entry = local.entry_block();
        let block = local.block_mut(entry);
        block.instrs.clear();
        block
            .instrs
            .push((Instr::Unreachable(Unreachable {}), Default::default()));
        stubbed += 1;
    }
    stubbed
}

/// Forwards each copy of a Rust function that LTO linked more than once (rustc's
/// prebuilt `std` carries its own codegen of some `alloc` functions: `String`'s
/// `fmt::Write` methods come both from `alloc` and from `std`) to one copy, so
/// wasm-opt inlines the forwarders and drops the copies and what only they
/// called. A Rust symbol name (`_R…` v0 or `_ZN…` legacy, both carrying the
/// crates' hashes) names one instance of one item, so functions of one such name
/// and one type compute the same thing. The copy kept is the largest; a group is
/// left alone when that copy calls another of its name (a shim and its body).
/// Needs the name section; returns how many copies now forward.
pub fn forward_duplicates(module: &mut walrus::Module) -> usize {
    use std::collections::HashMap;
    use walrus::ir::{Call, Instr, LocalGet, Visitor};
    use walrus::{FunctionId, FunctionKind};

    /// The functions a body calls directly.
    struct Calls(Vec<FunctionId>);
    impl Visitor<'_> for Calls {
        fn visit_call(&mut self, call: &Call) {
            self.0.push(call.func);
        }
    }

    let mut groups: HashMap<(&str, walrus::TypeId), Vec<(FunctionId, u64)>> = HashMap::new();
    for func in module.funcs.iter() {
        let (Some(name), FunctionKind::Local(local)) = (func.name.as_deref(), &func.kind) else {
            continue;
        };
        if name.starts_with("_R") || name.starts_with("_ZN") {
            groups
                .entry((name, func.ty()))
                .or_default()
                .push((func.id(), local.size()));
        }
    }
    let mut forwards = Vec::new();
    for copies in groups.into_values().filter(|g| g.len() > 1) {
        let Some(&(kept, _)) = copies.iter().max_by_key(|(_, size)| *size) else {
            continue;
        };
        let FunctionKind::Local(local) = &module.funcs.get(kept).kind else {
            continue;
        };
        let mut calls = Calls(Vec::new());
        walrus::ir::dfs_in_order(&mut calls, local, local.entry_block());
        if copies.iter().any(|(id, _)| calls.0.contains(id)) {
            continue;
        }
        forwards.extend(
            copies
                .iter()
                .filter(|(id, _)| *id != kept)
                .map(|(id, _)| (*id, kept)),
        );
    }
    for &(copy, kept) in &forwards {
        let FunctionKind::Local(local) = &mut module.funcs.get_mut(copy).kind else {
            continue;
        };
        let args = local.args.clone();
        let entry = local.entry_block();
        let block = local.block_mut(entry);
        block.instrs.clear();
        for local in args {
            block
                .instrs
                .push((Instr::LocalGet(LocalGet { local }), Default::default()));
        }
        block
            .instrs
            .push((Instr::Call(Call { func: kept }), Default::default()));
    }
    forwards.len()
}

/// The Binaryen options weir uses: `-Oz` with the features rustc emits enabled.
pub fn options(debug: bool) -> OptimizationOptions {
    let mut opts = OptimizationOptions::new_optimize_for_size_aggressively();
    for f in [
        Feature::BulkMemory,
        Feature::SignExt,
        Feature::MutableGlobals,
        Feature::TruncSat,
        Feature::Multivalue,
        Feature::ReferenceTypes,
    ] {
        opts.enable_feature(f);
    }
    opts.debug_info(debug);
    // `-lmu`: folds `load(p + C)` into `load offset=C (p)` for C < 1 KiB. The two differ
    // only when `p + C` wraps past 4 GiB to an address below 1 KiB; rustc links the
    // stack first (it grows down from 1 MiB towards 0), so a valid access there is a
    // stack one (`sp + C`, no wrap). Emscripten sets it for the same layout.
    opts.low_memory_unused(true);
    // Inline functions of up to 3 bytes of code everywhere (Binaryen's default is 2): a
    // forwarder from `forward_duplicates` and the SDK's one-call wrappers (~100 B
    // less for every filter, measured on both targets).
    opts.always_inline_max_size(3);
    // Repeats the passes while they still shrink the module (add-header: ~120 B less).
    opts.set_converge();
    if !debug {
        opts.add_pass(Pass::StripDebug)
            .add_pass(Pass::StripDwarf)
            .add_pass(Pass::StripProducers);
    }
    opts
}

/// Optimizes `input` (a module file) into `output`; with `debug`, keeps names and debug info.
pub fn run(input: &Path, output: &Path, debug: bool) -> Result<()> {
    options(debug)
        .run(input, output)
        .with_context(|| format!("wasm-opt failed on {}", input.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use walrus::{FunctionBuilder, Module, ValType};

    fn body(module: &Module, name: &str) -> Vec<String> {
        body_of(module, module.funcs.by_name(name).expect("function"))
    }

    fn body_of(module: &Module, func: walrus::FunctionId) -> Vec<String> {
        let walrus::FunctionKind::Local(local) = &module.funcs.get(func).kind else {
            panic!("not local");
        };
        let block = local.block(local.entry_block());
        block.instrs.iter().map(|(i, _)| format!("{i:?}")).collect()
    }

    #[test]
    fn the_default_panic_hooks_helpers_become_unreachable_and_nothing_else() {
        let mut module = Module::default();
        let names = [
            "_RNvNtCset5xJoy1xWQ_3std5panic19get_backtrace_style",
            "_RNCNvNtCset5xJoy1xWQ_3std9panicking12default_hook0B5_",
            "_RNvMNtNtCset5xJoy1xWQ_3std3sys9backtraceNtB2_13BacktraceLock5print",
            "_RNvXNvMNtNtCset5xJoy1xWQ_3std3sys9backtraceNtB5_13BacktraceLock5printNtB2_16DisplayBacktraceNtNtCsdHhIpgkcIfN_4core3fmt7Display3fmt",
            "_RNvNtCset5xJoy1xWQ_3std9panicking15panic_with_hook",
        ];
        for name in names {
            let mut f = FunctionBuilder::new(&mut module.types, &[], &[ValType::I32]);
            f.name(name.to_string()).func_body().i32_const(7);
            let id = f.finish(vec![], &mut module.funcs);
            module.exports.add(name, id);
        }
        assert_eq!(stub_default_panic_hook(&mut module), 4);
        for name in &names[..4] {
            let instrs = body(&module, name);
            assert_eq!(instrs.len(), 1, "{name}: {instrs:?}");
            assert!(instrs[0].starts_with("Unreachable"), "{name}: {instrs:?}");
        }
        assert!(matches!(
            body(&module, names[4]).as_slice(),
            [i] if i.starts_with("Const")
        ));
        // A body of `unreachable` is valid for any signature.
        crate::abi::parse(&module.emit_wasm()).expect("a valid module");
    }

    #[test]
    fn a_function_linked_twice_forwards_to_its_largest_copy() {
        let mut module = Module::default();
        let mut add = |name: &str, consts: &[i32], call: Option<walrus::FunctionId>| {
            let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
            let mut body = f.name(name.to_string()).func_body();
            for c in consts {
                body.i32_const(*c).drop();
            }
            match call {
                Some(g) => body.i32_const(0).call(g),
                None => body.i32_const(1),
            };
            let arg = module.locals.add(ValType::I32);
            let id = f.finish(vec![arg], &mut module.funcs);
            module.exports.add(&format!("{name}{}", id.index()), id);
            id
        };
        let name = "_RNvNtCs1_5alloc6string5write";
        let big = add(name, &[1, 2, 3], None);
        let small = add(name, &[], None);
        // A shim that calls its own name's largest copy: its group stays as it is.
        let shim_name = "_ZN4weir4shim17h0000000000000000E";
        let shim_body = add(shim_name, &[], None);
        let shim = add(shim_name, &[1, 2, 3, 4], Some(shim_body));
        // Not a Rust symbol: left alone.
        add("memcpy", &[1], None);
        add("memcpy", &[], None);

        assert_eq!(forward_duplicates(&mut module), 1);
        let forward = body_of(&module, small);
        assert_eq!(forward.len(), 2, "{forward:?}");
        assert!(forward[0].starts_with("LocalGet"), "{forward:?}");
        assert!(forward[1].contains(&format!("{big:?}")), "{forward:?}");
        assert_eq!(body_of(&module, big).len(), 7);
        assert_eq!(body_of(&module, shim).len(), 10);
        crate::abi::parse(&module.emit_wasm()).expect("a valid module");
    }
}
