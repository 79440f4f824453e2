//! Metrics: counters, gauges and histograms, declared once with [`metrics!`](crate::metrics!)
//! and recorded by handle.
//!
//! ```
//! use weir::{Action, HttpFilter, Request};
//!
//! weir::metrics! {
//!     /// Requests refused.
//!     static DENIED: Counter = "my_filter_denied";
//!     /// Sizes of the bodies read.
//!     static BODY_BYTES: Histogram = "my_filter_body_bytes";
//! }
//!
//! #[derive(Default)]
//! struct MyFilter;
//!
//! #[weir::filter] // defines DENIED and BODY_BYTES when Envoy configures the filter
//! impl HttpFilter for MyFilter {
//!     type Config = ();
//!
//!     fn on_request_headers(&mut self, cx: &mut Request<'_, ()>) -> weir::Result {
//!         DENIED.inc();
//!         BODY_BYTES.record(512);
//!         Ok(Action::Continue)
//!     }
//! }
//! ```
//!
//! Envoy shows them in its stats with a `wasmcustom.` prefix
//! (`wasmcustom.my_filter_denied`). `weir::metrics!` in the module of the
//! `#[weir::filter]` impl is all it takes: the attribute lists them in
//! [`HttpFilter::METRICS`](crate::HttpFilter::METRICS), so each is defined with
//! the host when the filter is configured and shows in Envoy's stats at zero.
//! Recording is then one host call with a cached id, nothing else per request.
//! A metric declared elsewhere (another module, or `Counter::new` by hand) is
//! defined on first use. A host that refuses a metric makes recording a no-op:
//! metrics never fail a request.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::host::{self, MetricKind};

const UNDEFINED: u32 = u32::MAX;

/// Declares metrics, each once: a `static` per metric, and the list that
/// `#[weir::filter]` in the same module hands to
/// [`HttpFilter::METRICS`](crate::HttpFilter::METRICS). Each line is
/// `[pub] static NAME: Counter | Gauge | Histogram = "stat_name";`, with any doc
/// comments above it. See [the module](mod@crate::metrics) for an example.
///
/// One `weir::metrics!` per module; two filters in one module share its list.
#[macro_export]
macro_rules! metrics {
    ($($(#[$meta:meta])* $vis:vis static $name:ident : $kind:ident = $stat:literal ;)*) => {
        $(
            $(#[$meta])*
            $vis static $name: $crate::metrics::$kind = $crate::metrics::$kind::new($stat);
        )*
        /// The metrics this module declares, for `#[weir::filter]`.
        #[doc(hidden)]
        #[allow(dead_code)]
        const __WEIR_METRICS: &'static [&'static $crate::metrics::Metric] = &[$($name.metric()),*];
    };
}

/// The fallback `#[weir::filter]` imports for a module without `weir::metrics!`.
#[doc(hidden)]
pub mod __no_metrics {
    /// No metrics.
    pub const __WEIR_METRICS: &[&super::Metric] = &[];
}

/// One metric as the host knows it; the common part of [`Counter`], [`Gauge`]
/// and [`Histogram`]. List them in [`HttpFilter::METRICS`](crate::HttpFilter::METRICS)
/// with `.metric()`.
pub struct Metric {
    kind: MetricKind,
    name: &'static str,
    id: AtomicU32,
}

impl Metric {
    const fn new(kind: MetricKind, name: &'static str) -> Self {
        Metric {
            kind,
            name,
            id: AtomicU32::new(UNDEFINED),
        }
    }

    /// The metric's name, as given.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Defines the metric with the host (again: Envoy returns the same id for
    /// the same name), as each configure does for `METRICS`.
    pub(crate) fn define(&self) {
        if let Some(id) = host::define_metric(self.kind, self.name) {
            self.id.store(id, Ordering::Relaxed);
        }
    }

    /// Defines the metric with the host, once; its id afterwards.
    pub(crate) fn id(&self) -> Option<u32> {
        match self.id.load(Ordering::Relaxed) {
            UNDEFINED => {
                let id = host::define_metric(self.kind, self.name)?;
                self.id.store(id, Ordering::Relaxed);
                Some(id)
            }
            id => Some(id),
        }
    }
}

/// A count that only goes up (Envoy counter).
#[repr(transparent)]
pub struct Counter(Metric);

impl Counter {
    /// A counter called `name` (Envoy stat `wasmcustom.<name>`).
    pub const fn new(name: &'static str) -> Self {
        Counter(Metric::new(MetricKind::Counter, name))
    }

    /// The metric, for [`HttpFilter::METRICS`](crate::HttpFilter::METRICS).
    pub const fn metric(&self) -> &Metric {
        &self.0
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if let Some(id) = self.0.id() {
            host::increment_metric(id, n.min(i64::MAX as u64) as i64);
        }
    }

    /// The counter's value as the proxy holds it: the sum over every worker
    /// and VM, since Envoy's stats are process-wide. `None` when the host does
    /// not say (or refused the metric).
    ///
    /// ```
    /// static SEEN: weir::metrics::Counter = weir::metrics::Counter::new("example_seen");
    /// SEEN.add(2);
    /// assert_eq!(SEEN.value(), Some(2));
    /// ```
    pub fn value(&self) -> Option<u64> {
        host::get_metric(self.0.id()?)
    }
}

/// A value that goes up and down (Envoy gauge).
#[repr(transparent)]
pub struct Gauge(Metric);

impl Gauge {
    /// A gauge called `name` (Envoy stat `wasmcustom.<name>`).
    pub const fn new(name: &'static str) -> Self {
        Gauge(Metric::new(MetricKind::Gauge, name))
    }

    /// The metric, for [`HttpFilter::METRICS`](crate::HttpFilter::METRICS).
    pub const fn metric(&self) -> &Metric {
        &self.0
    }

    /// Sets the value.
    pub fn set(&self, value: u64) {
        if let Some(id) = self.0.id() {
            host::record_metric(id, value);
        }
    }

    /// Adds `delta` (negative to subtract).
    pub fn add(&self, delta: i64) {
        if let Some(id) = self.0.id() {
            host::increment_metric(id, delta);
        }
    }

    /// The gauge's value as the proxy holds it (process-wide, like a
    /// [`Counter::value`]); `None` when the host does not say.
    pub fn value(&self) -> Option<u64> {
        host::get_metric(self.0.id()?)
    }
}

/// A distribution of values (Envoy histogram), e.g. sizes or latencies. Envoy
/// does not read a histogram back to a filter, so it has no `value`.
#[repr(transparent)]
pub struct Histogram(Metric);

impl Histogram {
    /// A histogram called `name` (Envoy stat `wasmcustom.<name>`).
    pub const fn new(name: &'static str) -> Self {
        Histogram(Metric::new(MetricKind::Histogram, name))
    }

    /// The metric, for [`HttpFilter::METRICS`](crate::HttpFilter::METRICS).
    pub const fn metric(&self) -> &Metric {
        &self.0
    }

    /// Records one value.
    pub fn record(&self, value: u64) {
        if let Some(id) = self.0.id() {
            host::record_metric(id, value);
        }
    }
}
