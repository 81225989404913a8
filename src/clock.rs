//! Where the time comes from: wall-clock milliseconds for the contract's
//! timestamps, a little randomness for jitter, and the one capped doubling
//! [`Backoff`] every retry loop uses. A leaf: it imports only std.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A moment as a civil date and time (proleptic Gregorian, no time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

/// `ms` since the epoch (shifted by an offset already) as a civil date and
/// time (Howard Hinnant's days-to-civil).
pub fn civil(ms: i64) -> Civil {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000) as u32);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        millis,
    }
}

/// A random number from the standard library's per-process random keys.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// `d` scaled by a random factor in [0.5, 1.0].
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + (random_u64() % 1000) as f64 / 2000.0)
}

/// A capped doubling delay: `first`, `2·first`, `4·first`, … up to `max`.
/// [`Backoff::next_delay`] returns the delay for the current failure count and
/// counts one more failure; [`Backoff::reset`] starts again at `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max, failures: 0 }
    }

    /// The delay after the failures counted so far (without counting one).
    pub fn current(&self) -> Duration {
        self.first.saturating_mul(1u32 << self.failures.min(16)).min(self.max)
    }

    /// The delay to wait now; counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current();
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let seen: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60]);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.current(), Duration::from_secs(60), "no overflow after many failures");
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        let mut ms = Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
        let seen: Vec<u128> = (0..5).map(|_| ms.next_delay().as_millis()).collect();
        assert_eq!(seen, [50, 100, 200, 400, 400]);
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(j >= Duration::from_secs(5) && j <= Duration::from_secs(10), "{j:?}");
        }
    }

    #[test]
    fn now_ms_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
