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

/// C's allocation functions over the same allocator, for wasi-libc.
///
/// On `wasm32-wasip1`, std's default panic hook (linked whether or not a hook is
/// set) reads `RUST_BACKTRACE` with libc's `getenv`, and wasi-libc allocates the
/// environment with `malloc`; std's `System` allocator names the others. Defining
/// every function wasi-libc's dlmalloc object defines keeps it (7.5 KB) out of the
/// module. The exports rustc gives them are removed by `cargo xtask build` (the
/// host allocates with `proxy_on_memory_allocate`).
///
/// Natively the functions are ordinary ones (no `no_mangle`: the system's `malloc`
/// stays), so the unit test below checks them.
#[cfg(any(test, all(target_arch = "wasm32", target_os = "wasi")))]
mod libc {
    use std::alloc::{alloc, dealloc, Layout};
    use std::ptr::null_mut;

    /// C's `max_align_t` on wasm32: what `malloc` aligns to.
    const MIN_ALIGN: usize = 16;

    /// A block of `size` bytes aligned to `align`, after a header as long as
    /// `align` whose last 8 bytes hold `size` and `align` for `free`.
    unsafe fn allocate(size: usize, align: usize) -> *mut u8 {
        let align = align.max(MIN_ALIGN);
        let Some(layout) = size
            .checked_add(align)
            .and_then(|total| Layout::from_size_align(total, align).ok())
        else {
            return null_mut();
        };
        // SAFETY: `layout` is not zero-sized; the header is at least 16 bytes.
        unsafe {
            let block = alloc(layout);
            if block.is_null() {
                return block;
            }
            let ptr = block.add(align);
            ptr.cast::<usize>().sub(2).write(size);
            ptr.cast::<usize>().sub(1).write(align);
            ptr
        }
    }

    /// The size `allocate` wrote before `ptr`.
    unsafe fn size_of(ptr: *mut u8) -> usize {
        // SAFETY: `ptr` came from `allocate`.
        unsafe { ptr.cast::<usize>().sub(2).read() }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "wasi"), no_mangle)]
    pub(super) unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
        unsafe { allocate(size, MIN_ALIGN) }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "wasi"), no_mangle)]
    pub(super) unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            return null_mut();
        };
        // SAFETY: a fresh block of `total` bytes.
        unsafe {
            let ptr = allocate(total, MIN_ALIGN);
            if !ptr.is_null() {
                ptr.write_bytes(0, total);
            }
            ptr
        }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "wasi"), no_mangle)]
    pub(super) unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            return null_mut();
        }
        unsafe { allocate(size, align) }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "wasi"), no_mangle)]
    pub(super) unsafe extern "C" fn posix_memalign(
        out: *mut *mut u8,
        align: usize,
        size: usize,
    ) -> i32 {
        const EINVAL: i32 = 28;
        const ENOMEM: i32 = 48;
        if !align.is_power_of_two() || !align.is_multiple_of(std::mem::size_of::<usize>()) {
            return EINVAL;
        }
        // SAFETY: `out` is the caller's pointer to write the block to.
        unsafe {
            let ptr = allocate(size, align);
            if ptr.is_null() {
                return ENOMEM;
            }
            out.write(ptr);
        }
        0
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "wasi"), no_mangle)]
    pub(super) unsafe extern "C" fn malloc_usable_size(ptr: *mut u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        unsafe { size_of(ptr) }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "wasi"), no_mangle)]
    pub(super) unsafe extern "C" fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
        if ptr.is_null() {
            return unsafe { malloc(size) };
        }
        // SAFETY: `ptr` came from `allocate`; the new block holds `min(old, size)` bytes.
        unsafe {
            let align = ptr.cast::<usize>().sub(1).read();
            let new = allocate(size, align);
            if !new.is_null() {
                new.copy_from_nonoverlapping(ptr, size_of(ptr).min(size));
                free(ptr);
            }
            new
        }
    }

    #[cfg_attr(all(target_arch = "wasm32", target_os = "wasi"), no_mangle)]
    pub(super) unsafe extern "C" fn free(ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: `ptr` came from `allocate`, which wrote its size and alignment before it.
        unsafe {
            let size = size_of(ptr);
            let align = ptr.cast::<usize>().sub(1).read();
            let block = ptr.sub(align);
            dealloc(
                block,
                Layout::from_size_align_unchecked(size + align, align),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::libc::*;

    #[test]
    fn the_c_allocator_keeps_sizes_alignments_and_contents() {
        unsafe {
            let a = malloc(5);
            assert_eq!(a as usize % 16, 0);
            assert_eq!(malloc_usable_size(a), 5);
            a.copy_from_nonoverlapping(b"hello".as_ptr(), 5);
            let a = realloc(a, 4096);
            assert_eq!(std::slice::from_raw_parts(a, 5), b"hello");
            assert_eq!(malloc_usable_size(a), 4096);
            let a = realloc(a, 2);
            assert_eq!(std::slice::from_raw_parts(a, 2), b"he");
            free(a);

            let z = calloc(100, 3);
            assert!(std::slice::from_raw_parts(z, 300).iter().all(|&b| b == 0));
            free(z);
            assert!(calloc(usize::MAX, 2).is_null());
            assert!(malloc(usize::MAX - 8).is_null());

            let big = aligned_alloc(256, 10);
            assert_eq!(big as usize % 256, 0);
            assert!(aligned_alloc(24, 10).is_null());
            let big = realloc(big, 1000);
            assert_eq!(big as usize % 256, 0, "realloc keeps the alignment");
            free(big);

            let mut out = std::ptr::null_mut();
            assert_eq!(posix_memalign(&mut out, 64, 7), 0);
            assert_eq!(out as usize % 64, 0);
            free(out);
            assert_ne!(posix_memalign(&mut out, 3, 7), 0);

            free(std::ptr::null_mut());
            assert_eq!(malloc_usable_size(std::ptr::null_mut()), 0);
            let p = realloc(std::ptr::null_mut(), 8);
            assert!(!p.is_null());
            free(p);
        }
    }
}
