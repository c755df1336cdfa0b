//! When a backend's active checks run (sans-io): `health_interval` apart, each wait moved by
//! up to `health_jitter` percent either way, so that backends started together drift apart
//! instead of being probed in lockstep. The first check comes within the jitter's share of
//! one interval. The randomness is a small deterministic generator (SplitMix64) seeded from
//! the backend's index and name: no clock, no global state, reproducible in tests.

use std::time::Duration;

/// A backend's check times.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    /// The jitter as a fraction of the interval, 0..=0.5.
    jitter: f64,
    state: u64,
}

/// A seed for backend `index` named `name` (FNV-1a of the name, mixed with the index).
pub fn seed(index: usize, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Schedule {
    /// Checks every `interval`, moved by up to `jitter_percent` (capped at 50) of it.
    pub fn new(interval: Duration, jitter_percent: u32, seed: u64) -> Self {
        Schedule {
            interval,
            jitter: f64::from(jitter_percent.min(50)) / 100.0,
            state: seed,
        }
    }

    /// The wait before the first check: a random share of `interval x jitter` (none without
    /// jitter).
    pub fn first(&mut self) -> Duration {
        let r = self.unit();
        self.interval.mul_f64(self.jitter * r)
    }

    /// The wait from one check's start to the next: `interval x (1 +- jitter)`.
    pub fn wait(&mut self) -> Duration {
        let r = self.unit();
        self.interval.mul_f64(1.0 + self.jitter * (2.0 * r - 1.0))
    }

    /// A number in `[0, 1)` (SplitMix64).
    fn unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn no_jitter_is_the_plain_interval() {
        let mut s = Schedule::new(SECOND, 0, seed(0, "a"));
        assert_eq!(s.first(), Duration::ZERO);
        for _ in 0..10 {
            assert_eq!(s.wait(), SECOND);
        }
    }

    #[test]
    fn waits_stay_within_the_jitter_and_spread_out() {
        let mut s = Schedule::new(SECOND, 10, seed(3, "llama-a"));
        let first = s.first();
        assert!(first < Duration::from_millis(100), "{first:?}");
        let waits: Vec<Duration> = (0..1000).map(|_| s.wait()).collect();
        assert!(waits
            .iter()
            .all(|w| (Duration::from_millis(900)..=Duration::from_millis(1100)).contains(w)));
        let below = waits.iter().filter(|w| **w < SECOND).count();
        assert!(
            (400..=600).contains(&below),
            "{below} of 1000 below the interval"
        );
        // The average stays the interval: no drift in the check rate.
        let mean = waits.iter().sum::<Duration>() / 1000;
        assert!(
            mean.abs_diff(SECOND) < Duration::from_millis(10),
            "{mean:?}"
        );
    }

    #[test]
    fn backends_get_their_own_deterministic_sequences() {
        let run = |i, name| {
            let mut s = Schedule::new(SECOND, 20, seed(i, name));
            (0..5).map(|_| s.wait()).collect::<Vec<_>>()
        };
        assert_eq!(run(0, "a"), run(0, "a"));
        assert_ne!(run(0, "a"), run(1, "a"));
        assert_ne!(run(0, "a"), run(0, "b"));
    }

    #[test]
    fn jitter_is_capped_at_half_the_interval() {
        let mut s = Schedule::new(SECOND, 400, 7);
        assert!((0..100).all(|_| s.wait() <= Duration::from_millis(1500)));
    }
}
