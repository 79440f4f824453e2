//! **weir**: write Envoy HTTP filters in Rust.
//!
//! A filter is a type with a typed configuration and the hooks it needs;
//! [`export!`] turns it into a proxy-wasm module. No root context, no context
//! ids, no byte buffers, and nothing a request sends can trap the VM: header
//! values come back as bytes with a UTF-8 view that returns `None`, and writes
//! are checked before the host sees them.
//!
//! ```
//! use weir::{Action, HeaderName, HeaderValue, HttpFilter, Response};
//!
//! /// `{"name": "hello", "value": "hello details"}`: both checked when Envoy configures the filter.
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     name: HeaderName,
//!     value: HeaderValue,
//! }
//!
//! #[derive(Default)]
//! struct AddHeader;
//!
//! #[weir::filter]
//! impl HttpFilter for AddHeader {
//!     type Config = Config;
//!
//!     fn on_response_headers(&mut self, cx: &mut Response<'_, Config>) -> weir::Result {
//!         let config = cx.config();
//!         cx.headers().set(&config.name, &config.value)?;
//!         Ok(Action::Continue)
//!     }
//! }
//!
//! weir::export!(AddHeader);
//!
//! // The same filter, natively, with the test harness:
//! let mut filter = weir::testing::TestFilter::<AddHeader>::configure(
//!     r#"{"name": "hello", "value": "hello details"}"#,
//! ).unwrap();
//! let exchange = filter.send(weir::testing::TestRequest::get("/details/123"));
//! assert_eq!(exchange.response_header("hello").unwrap(), "hello details");
//! ```
//!
//! What else a filter can do, each from its hook's context (`cx`):
//! local replies ([`LocalReply`], including gRPC status), request and response
//! bodies ([`Body`]) and trailers, properties ([`Properties`]), HTTP callouts
//! and unary gRPC calls ([`Callout`], several at once with [`Wait`], protobuf
//! with [`proto`]), metrics ([`mod@metrics`], [`metrics!`]), shared data ([`shared`]), shared
//! queues ([`queue`]), ticks ([`HttpFilter::on_tick`]), the VM's configuration ([`vm`]),
//! properties and filter state written for access logs and later filters
//! ([`Properties::set`], [`Properties::set_filter_state`]), and per-route configuration
//! ([`rules`]), all testable natively with [`testing`].
//!
//! Build the module with `cargo xtask build`; see `docs/filter-guide.md`.
#![deny(missing_docs)]

mod body;
mod callout;
pub mod clock;
pub mod config;
mod context;
mod filter;
pub mod header;
mod heap;
pub mod hooks;
mod host;
mod identity;
pub mod log;
pub mod metrics;
mod outcome;
pub mod path;
pub mod property;
pub mod proto;
pub mod queue;
mod reply;
pub mod rules;
mod runtime;
pub mod shared;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod utf8;
pub mod vm;

pub use body::{Body, BodyMode};
pub use callout::{Callout, CalloutResponse, Wait};
pub use config::ConfigError;
pub use context::{Callback, Log, Request, Response, Tick};
pub use filter::HttpFilter;
pub use header::{
    HeaderError, HeaderName, HeaderSnapshot, HeaderValue, Headers, InvalidHeader, Value,
};
pub use outcome::{Action, Error, Result};
pub use property::Properties;
pub use reply::LocalReply;

/// Records which hooks an `impl HttpFilter` block implements (see [`hooks`]).
///
/// Put it on every filter's impl block; without it the filter does not compile.
pub use weir_macros::filter;

/// Exports a filter type as the proxy-wasm module's plugin.
///
/// Use it once, at the crate root of a `cdylib` filter crate. The filter's name
/// in Envoy's log lines is the crate's package name.
///
/// On wasm32 it defines the proxy-wasm ABI 0.2.1 exports (`_initialize`,
/// `proxy_on_context_create`, `proxy_on_request_headers`, ...) around one
/// static VM state for this filter type, and writes the `weir.hooks` custom
/// section (see [`hooks`]) from which `cargo xtask build` drops the hooks the
/// filter does not implement, and the `weir.filter` section naming the filter's
/// crate and type, which a test run against the module checks (see [`testing`]).
/// There is no `proxy_on_done` export: the host
/// then treats every context as done at once. The VM reports its linear memory
/// as the gauge `wasmcustom.weir.<filter>.memory_bytes` whenever it changes
/// (checked at configure and at the end of each request), so a leak shows in
/// Envoy's stats. On native targets it expands to
/// nothing but a type check, so the same crate runs its tests natively.
#[macro_export]
macro_rules! export {
    ($filter:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::Vm;
            static MEMORY: $crate::metrics::Gauge = $crate::metrics::Gauge::new(concat!(
                "weir.",
                env!("CARGO_PKG_NAME"),
                ".memory_bytes"
            ));
            static VM: Vm<$filter> = Vm::new(env!("CARGO_PKG_NAME"), &MEMORY);

            #[cfg(target_os = "wasi")]
            extern "C" {
                fn __wasm_call_ctors();
            }
            #[no_mangle]
            extern "C" fn _initialize() {
                #[cfg(target_os = "wasi")]
                unsafe {
                    __wasm_call_ctors();
                }
                VM.initialize();
            }
            #[no_mangle]
            extern "C" fn proxy_abi_version_0_2_1() {}
            #[cfg_attr(target_os = "unknown", export_name = "malloc")]
            #[cfg_attr(not(target_os = "unknown"), no_mangle)]
            extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
                $crate::__private::allocate(size)
            }
            #[no_mangle]
            extern "C" fn proxy_on_vm_start(_id: u32, _size: usize) -> bool {
                true
            }
            #[no_mangle]
            extern "C" fn proxy_on_context_create(id: u32, parent: u32) {
                VM.context_create(id, parent)
            }
            #[no_mangle]
            extern "C" fn proxy_on_configure(id: u32, size: usize) -> bool {
                VM.configure(id, size)
            }
            #[no_mangle]
            extern "C" fn proxy_on_tick(id: u32) {
                VM.tick(id)
            }
            #[no_mangle]
            extern "C" fn proxy_on_queue_ready(id: u32, token: u32) {
                VM.queue_ready(id, token)
            }
            #[no_mangle]
            extern "C" fn proxy_on_request_headers(id: u32, _n: usize, end: bool) -> u32 {
                VM.request_headers(id, end)
            }
            #[no_mangle]
            extern "C" fn proxy_on_request_body(id: u32, size: usize, end: bool) -> u32 {
                VM.request_body(id, size, end)
            }
            #[no_mangle]
            extern "C" fn proxy_on_request_trailers(id: u32, _n: usize) -> u32 {
                VM.request_trailers(id)
            }
            #[no_mangle]
            extern "C" fn proxy_on_response_headers(id: u32, _n: usize, end: bool) -> u32 {
                VM.response_headers(id, end)
            }
            #[no_mangle]
            extern "C" fn proxy_on_response_body(id: u32, size: usize, end: bool) -> u32 {
                VM.response_body(id, size, end)
            }
            #[no_mangle]
            extern "C" fn proxy_on_response_trailers(id: u32, _n: usize) -> u32 {
                VM.response_trailers(id)
            }
            #[no_mangle]
            extern "C" fn proxy_on_log(id: u32) {
                VM.log(id)
            }
            #[no_mangle]
            extern "C" fn proxy_on_http_call_response(
                _id: u32,
                token: u32,
                _headers: usize,
                body: usize,
                _trailers: usize,
            ) {
                VM.http_call_response(token, body)
            }
            #[no_mangle]
            extern "C" fn proxy_on_grpc_receive(_id: u32, token: u32, size: usize) {
                VM.grpc_receive(token, size)
            }
            #[no_mangle]
            extern "C" fn proxy_on_grpc_close(_id: u32, token: u32, status: u32) {
                VM.grpc_close(token, status)
            }
            #[no_mangle]
            extern "C" fn proxy_on_delete(id: u32) {
                VM.delete(id)
            }

            #[link_section = "weir.hooks"]
            #[used]
            static __WEIR_HOOKS: [u8; 4] =
                $crate::__private::exported_hooks::<$filter>().to_le_bytes();

            const __WEIR_FILTER_NAME: &str =
                concat!(env!("CARGO_CRATE_NAME"), "::", stringify!($filter));
            #[link_section = "weir.filter"]
            #[used]
            static __WEIR_FILTER: [u8; __WEIR_FILTER_NAME.len()] =
                $crate::__private::identity(__WEIR_FILTER_NAME);
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            fn _is_filter<F: $crate::HttpFilter>() {}
            let _ = _is_filter::<$filter>;
            let _ = <$filter as $crate::HttpFilter>::HOOKS;
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::identity::section as identity;
    pub use crate::runtime::exported_hooks;
    #[cfg(target_arch = "wasm32")]
    pub use crate::runtime::wasm::{allocate, Vm};
}
