//! Reconnect delays: exponential from 200 ms up to a cap, with jitter so a fleet of agents
//! that lost the same server does not come back in lockstep.
#![forbid(unsafe_code)]

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// The delay before jitter for the next attempt.
    current: Duration,
}

impl Backoff {
    pub const BASE: Duration = Duration::from_millis(200);

    pub fn new(max: Duration) -> Self {
        let base = Self::BASE.min(max);
        Backoff { base, max, current: base }
    }

    /// After a successful session: start again from the base delay.
    pub fn reset(&mut self) {
        self.current = self.base;
    }

    /// The next delay: between half and all of the current step ("equal jitter").
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = step / 2;
        let spread = (step - half).as_millis() as u64;
        half + Duration::from_millis(random_u64() % (spread + 1))
    }
}

fn random_u64() -> u64 {
    // v4 UUIDs come from the OS RNG; no need for another dependency.
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let steps = [200u64, 400, 800, 1600, 2000, 2000];
        for ms in steps {
            let d = b.next_delay();
            let step = Duration::from_millis(ms);
            assert!(d >= step / 2 && d <= step, "{d:?} not in [{:?}, {step:?}]", step / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }

    #[test]
    fn a_cap_below_the_base_wins() {
        let mut b = Backoff::new(Duration::from_millis(50));
        assert!(b.next_delay() <= Duration::from_millis(50));
    }
}
