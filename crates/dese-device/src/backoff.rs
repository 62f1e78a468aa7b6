//! When to try connecting again.

use core::time::Duration;

/// Exponential backoff with full jitter: before attempt `n` (0-based) the device waits a
/// uniformly random time between zero and `min(cap, base * 2^n)`. The randomness comes from the
/// caller (no RNG inside), so tests are deterministic. The attempt count resets only after a
/// connection stayed up for `stable_after`, so a broker that accepts and then drops every
/// connection does not get hammered.
///
/// ```
/// use core::time::Duration;
/// use dese_device::Backoff;
///
/// let backoff = Backoff::DEFAULT;
/// assert_eq!(backoff.ceiling(0), Duration::from_secs(1));
/// assert_eq!(backoff.ceiling(3), Duration::from_secs(8));
/// assert_eq!(backoff.ceiling(30), Duration::from_secs(60));
/// // Full jitter: the random input picks a point between zero and the ceiling.
/// assert_eq!(backoff.delay(3, 0), Duration::ZERO);
/// assert_eq!(backoff.delay(3, u32::MAX), Duration::from_secs(8));
/// assert!(backoff.delay(3, u32::MAX / 2) < Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    /// How long a connection must last before the attempt count starts over.
    pub stable_after: Duration,
}

impl Backoff {
    /// 1 s doubling up to 60 s; reset after 30 s of connection.
    pub const DEFAULT: Self = Self {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        stable_after: Duration::from_secs(30),
    };

    /// The longest wait before attempt `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The attempt count after a loss: it starts over when the connection that was lost had
    /// stayed up for [`Backoff::stable_after`], and grows by one otherwise, and after a failed
    /// attempt (`stayed_up` is `None`).
    ///
    /// ```
    /// use core::time::Duration;
    /// use dese_device::Backoff;
    ///
    /// let backoff = Backoff::DEFAULT;
    /// assert_eq!(backoff.next_attempt(3, None), 4);
    /// assert_eq!(backoff.next_attempt(3, Some(Duration::from_secs(5))), 4);
    /// assert_eq!(backoff.next_attempt(3, Some(Duration::from_secs(30))), 0);
    /// ```
    pub fn next_attempt(&self, attempt: u32, stayed_up: Option<Duration>) -> u32 {
        match stayed_up {
            Some(up) if up >= self.stable_after => 0,
            _ => attempt.saturating_add(1),
        }
    }

    /// The wait before attempt `attempt`, for a uniformly random `random`.
    pub fn delay(&self, attempt: u32, random: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_millis()).unwrap_or(u64::MAX);
        // Scale rather than take a remainder, so every u32 maps evenly onto 0..=ceiling.
        let millis = (u128::from(random) * u128::from(ceiling)) / u128::from(u32::MAX);
        Duration::from_millis(u64::try_from(millis).unwrap_or(ceiling))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DESE-D6: exponential, capped, jittered from the caller's randomness.
    #[test]
    fn dese_d6_exponential_capped_full_jitter() {
        let b = Backoff::DEFAULT;
        let ceilings: [u64; 8] = [1, 2, 4, 8, 16, 32, 60, 60];
        for (attempt, secs) in ceilings.iter().enumerate() {
            assert_eq!(b.ceiling(attempt as u32), Duration::from_secs(*secs));
            assert_eq!(
                b.delay(attempt as u32, u32::MAX),
                Duration::from_secs(*secs)
            );
            assert_eq!(b.delay(attempt as u32, 0), Duration::ZERO);
        }
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(60));
    }
}
