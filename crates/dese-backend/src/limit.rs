//! Per-device rate limiting.

use std::time::{Duration, Instant};

use dese_device::SettingsError;

/// A token bucket per device: `burst` messages at once, refilled at `per_second`. A message
/// that finds the bucket empty is dropped and counted (the protocol asks for rate limiting to
/// prevent abuse; this is the backend's side of it).
///
/// ```
/// use dese_backend::RateLimit;
///
/// let limit = RateLimit { burst: 20, per_second: 2.0 };
/// assert!(limit.per_second > 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// How many messages may arrive at once.
    pub burst: u32,
    /// How many messages per second, sustained.
    pub per_second: f64,
}

impl RateLimit {
    /// 1,000 at once, 5 per second: far above a device's protocol traffic (telemetry every 30 s,
    /// status every 60 s), far below a runaway loop. The burst is large on purpose: after an
    /// outage of the backend the broker releases each device's queued messages at once, and
    /// 1,000 is five and a half hours of them; a limit that refused them would lose data the
    /// broker had kept. A device that floods is still cut off after a thousand messages, at most
    /// five a second from then on.
    pub const DEFAULT: Self = Self {
        burst: 1_000,
        per_second: 5.0,
    };

    /// Refuses a limit that cannot work: a burst of 0 (every message refused), a rate that is
    /// zero, negative, not a number, or over a million a second.
    ///
    /// ```
    /// use dese_backend::RateLimit;
    ///
    /// assert!(RateLimit::DEFAULT.check().is_ok());
    /// let error = RateLimit { burst: 10, per_second: 0.0 }.check().unwrap_err();
    /// assert_eq!(error.to_string(), "setting rate_limit.per_second: 0 is not a rate; more than 0 and at most 1000000 a second");
    /// ```
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.burst == 0 {
            return Err(SettingsError::new(
                "rate_limit.burst",
                "0 would refuse every message; at least 1, or no rate limit at all",
            ));
        }
        if !(self.per_second > 0.0 && self.per_second <= 1e6) {
            return Err(SettingsError::new(
                "rate_limit.per_second",
                format!(
                    "{} is not a rate; more than 0 and at most 1000000 a second",
                    self.per_second
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * limit.per_second).min(f64::from(limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again by `now` (and can be forgotten).
    pub(crate) fn full_at(&self, limit: RateLimit, now: Instant) -> bool {
        let missing = f64::from(limit.burst) - self.tokens;
        // A rate too small to refill within any duration (one `RateLimit::check` refuses)
        // never fills the bucket.
        missing <= 0.0
            || Duration::try_from_secs_f64(missing / limit.per_second)
                .is_ok_and(|refill| now.saturating_duration_since(self.at) >= refill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DESE-S4: a burst passes, the excess is refused, and tokens come back with time.
    #[test]
    fn dese_s4_token_bucket() {
        let limit = RateLimit {
            burst: 3,
            per_second: 1.0,
        };
        let t0 = Instant::now();
        let mut b = Bucket::new(limit, t0);
        assert!((0..3).all(|_| b.take(limit, t0)));
        assert!(!b.take(limit, t0));
        assert!(!b.take(limit, t0 + Duration::from_millis(500)));
        assert!(b.take(limit, t0 + Duration::from_millis(1600)));
        assert!(b.full_at(limit, t0 + Duration::from_secs(10)));
    }
}
