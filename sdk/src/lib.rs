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
//! Build the module with `cargo xtask build`; see the repository README.
#![deny(missing_docs)]

pub mod config;
mod filter;
pub mod header;
mod host;
pub mod log;
mod runtime;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use config::ConfigError;
pub use filter::{Action, Error, HttpFilter, LocalReply, Request, Response, Result};
pub use header::{HeaderName, HeaderValue, Headers, InvalidHeader, Value};

/// Exports a filter type as the proxy-wasm module's plugin.
///
/// Use it once, at the crate root of a `cdylib` filter crate. The filter's name
/// in Envoy's log lines is the crate's package name. On native targets it
/// expands to nothing but a type check, so the same crate runs its tests natively.
#[macro_export]
macro_rules! export {
    ($filter:ty) => {
        #[cfg(target_arch = "wasm32")]
        $crate::__private::proxy_wasm::main! {{
            $crate::__private::start::<$filter>(env!("CARGO_PKG_NAME"));
        }}
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            fn _is_filter<F: $crate::HttpFilter>() {}
            let _ = _is_filter::<$filter>;
        };
    };
}

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::runtime::wasm::start;
    #[cfg(target_arch = "wasm32")]
    pub use proxy_wasm;
}
