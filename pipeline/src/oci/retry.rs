//! Bounded retries with exponential backoff, for requests that failed in passing (5xx, 429, a dropped connection).

use std::future::Future;
use std::time::Duration;

/// How many times to try a request and how long to wait between tries.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Tries in all, at least 1.
    pub attempts: u32,
    /// The wait before the first retry; each later one doubles it.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Retry {
    /// `retries` retries after the first try, starting at 250 ms, at most 4 s apart.
    pub fn new(retries: u32) -> Self {
        Retry {
            attempts: retries.saturating_add(1),
            base: Duration::from_millis(250),
            cap: Duration::from_secs(4),
        }
    }

    /// The wait before retry number `retry` (1-based): doubling, capped, plus up to 25% jitter
    /// so clients that failed together do not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let wait = doubled.min(self.cap);
        let jitter = wait.mul_f64(jitter_fraction() * 0.25);
        wait + jitter
    }

    /// Runs `op` until it succeeds, fails for good (`transient` says no), or the tries run out.
    /// `on_retry(retry, &error, wait)` is told before each wait. Returns the last error with the
    /// number of tries made.
    pub async fn run<T, E, Fut>(
        &self,
        mut op: impl FnMut() -> Fut,
        transient: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(u32, &E, Duration),
    ) -> Result<T, (E, u32)>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut tried = 0;
        loop {
            tried += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if tried < self.attempts && transient(&e) => {
                    let wait = self.delay(tried);
                    on_retry(tried, &e, wait);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err((e, tried)),
            }
        }
    }
}

/// A number in [0, 1) from the standard library's per-process random hash keys.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_are_capped() {
        let r = Retry {
            attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        };
        let d1 = r.delay(1);
        assert!(
            d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(125),
            "{d1:?}"
        );
        let d2 = r.delay(2);
        assert!(
            d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(250),
            "{d2:?}"
        );
        let d9 = r.delay(9);
        assert!(
            d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(625),
            "{d9:?}"
        );
    }

    #[tokio::test]
    async fn retries_transient_errors_a_bounded_number_of_times() {
        let r = Retry {
            attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        let mut calls = 0;
        let mut told = Vec::new();
        let out: Result<(), (u16, u32)> = r
            .run(
                || {
                    calls += 1;
                    async { Err(503u16) }
                },
                |e| *e >= 500,
                |n, _, _| told.push(n),
            )
            .await;
        assert_eq!(out, Err((503, 3)));
        assert_eq!((calls, told), (3, vec![1, 2]));
        let mut calls = 0;
        let out: Result<(), (u16, u32)> = r
            .run(
                || {
                    calls += 1;
                    async { Err(401u16) }
                },
                |e| *e >= 500,
                |_, _, _| {},
            )
            .await;
        assert_eq!(
            (out, calls),
            (Err((401, 1)), 1),
            "a permanent error is not retried"
        );
        let mut calls = 0;
        let out = r
            .run(
                || {
                    calls += 1;
                    let c = calls;
                    async move {
                        if c < 2 {
                            Err(502u16)
                        } else {
                            Ok(c)
                        }
                    }
                },
                |e| *e >= 500,
                |_, _, _| {},
            )
            .await;
        assert_eq!(out, Ok(2));
    }
}
