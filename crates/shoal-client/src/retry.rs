//! Retries of transport failures: exponential backoff with jitter, so many clients that lost
//! the same server do not come back in step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Pause before the first retry; doubled for each further one.
    pub base: Duration,
    /// Largest pause.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 5, base: Duration::from_millis(200), max: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    pub fn none() -> RetryPolicy {
        RetryPolicy { attempts: 1, ..RetryPolicy::default() }
    }

    /// Pause before retry number `retry` (1-based): half of the exponential step, plus a
    /// random part of the other half ("equal jitter").
    pub fn delay(&self, retry: u32) -> Duration {
        let step = self.base.saturating_mul(1u32 << retry.saturating_sub(1).min(20)).min(self.max);
        let half = step / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A number in [0, 1) from the v4 uuid generator's randomness (no extra dependency).
fn unit_random() -> f64 {
    // The low 62 bits of a v4 uuid are random (the version and variant bits are above).
    let bits = uuid::Uuid::new_v4().as_u128() as u64 & ((1u64 << 53) - 1);
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy { attempts: 10, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        for retry in 1..10 {
            let step = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(1));
            let d = p.delay(retry);
            assert!(d >= step / 2 && d <= step, "retry {retry}: {d:?} outside [{:?}, {step:?}]", step / 2);
        }
        let samples: std::collections::BTreeSet<Duration> = (0..20).map(|_| p.delay(3)).collect();
        assert!(samples.len() > 1, "no jitter");
    }
}
