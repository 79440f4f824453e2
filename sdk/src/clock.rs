//! The proxy's clock: the time Envoy says it is (fixed and advanced by hand in native tests).

use std::time::{Duration, SystemTime};

/// The proxy's wall-clock time. Native tests start at a fixed instant and move
/// it with [`TestFilter::advance`](crate::testing::TestFilter::advance).
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(crate::host::now_nanos().unwrap_or(0))
}
