//! The VM the filter runs in: its configuration (`vm_config.configuration`) and its id.
//!
//! Envoy's plugin configuration (`configuration`) is per plugin and arrives as
//! [`HttpFilter::Config`](crate::HttpFilter::Config); the VM configuration is set
//! once for the VM (`vm_config.configuration`) and shared by every plugin in it,
//! e.g. to say which of several filters in one module a VM serves, or settings
//! that must not differ between plugins. Envoy hands it to `proxy_on_vm_start`
//! and keeps it readable from any hook, so weir reads it only when asked: a
//! filter that never calls [`configuration`] pays nothing for it.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct VmSettings {
//!     region: String,
//! }
//!
//! # fn hook(cx: &mut weir::Request<'_, ()>) -> weir::Result {
//! match weir::vm::configuration_as::<VmSettings>() {
//!     Ok(Some(vm)) => cx.headers().set("x-region", vm.region.as_str())?,
//!     Ok(None) => {} // no vm_config.configuration
//!     Err(e) => return Err(weir::Error::new(format_args!("vm_config.configuration: {e}"))),
//! }
//! # Ok(weir::Action::Continue) }
//! ```

use crate::config::{self, ConfigError};
use crate::header::Value;
use crate::host;

/// `vm_config.configuration` as Envoy passed it (for a `StringValue`, the
/// string; for other types, their serialized bytes), or `None` when it is
/// empty or absent. One host call each time.
pub fn configuration() -> Option<Value> {
    let bytes = host::vm_configuration();
    (!bytes.is_empty()).then_some(Value(bytes))
}

/// [`configuration`] parsed as JSON into `T`: `Ok(None)` when there is none,
/// `Err` naming the field, line and column when it does not parse.
pub fn configuration_as<T: serde::de::DeserializeOwned>() -> Result<Option<T>, ConfigError> {
    match configuration() {
        Some(bytes) => config::parse(bytes.as_bytes()).map(Some),
        None => Ok(None),
    }
}

/// This VM's id (`vm_config.vm_id`, Envoy's `plugin_vm_id` property), the one
/// [`Queue::resolve`](crate::queue::Queue::resolve) takes. `None` outside Envoy's
/// hooks or when the proxy does not say.
pub fn id() -> Option<Value> {
    host::property(&["plugin_vm_id"]).map(Value)
}
