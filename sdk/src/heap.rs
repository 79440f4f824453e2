//! The module's global allocator: talc instead of std's dlmalloc.
//!
//! A proxy-wasm VM is single-threaded and short-lived, and a weir filter
//! allocates at configure time and (once the stream table has grown) not per
//! request, so what matters is code size. Talc's WebAssembly allocator is about
//! 1.3 KB of code against dlmalloc's 8.9 KB, reuses freed memory (bins by size,
//! coalescing neighbours) and grows linear memory only when no free chunk fits.
//! Every allocation in the module goes through it: `Box`, `Vec`, `String`, and
//! the buffers the host asks for with `proxy_on_memory_allocate` (`malloc` on
//! `wasm32-unknown-unknown`, see `runtime::wasm::allocate`).
//!
//! A filter crate that defines its own `#[global_allocator]` no longer links:
//! weir's is the module's.

// Wasm modules built by weir have no threads (no `atomics` target feature),
// which is what `TalcSyncCell` requires.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
