//! Token timing: when a request's tokens are due.
//!
//! The first token comes after the TTFT plus the prefill time of the prompt tokens not in
//! the prefix cache ([`prefill_time`]); each next one a token interval after the previous
//! one was due, the interval taken when that token is produced so that it follows the batch
//! running at the time ([`batch_interval`]). Due times are chained from the schedule, not
//! from the wake-ups, so delays never accumulate.

use std::time::Duration;

use tokio::time::Instant;

/// Longest simulated delay (keeps time arithmetic far from overflow).
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(3600);

/// `1 / rate` seconds per unit as a duration, capped at [`MAX_DELAY`]; zero when the rate
/// is zero, negative or not finite (no delay).
fn per_unit(rate: f64) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(1.0 / rate)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

/// Time between two tokens of one request decoding alone; zero for no delay.
pub(crate) fn token_interval(tokens_per_sec: f64) -> Duration {
    per_unit(tokens_per_sec)
}

/// Time to prefill `tokens` prompt tokens at `tokens_per_sec`, capped at [`MAX_DELAY`];
/// zero when the speed is zero, negative or not finite (no prefill delay).
pub(crate) fn prefill_time(tokens: u64, tokens_per_sec: f64) -> Duration {
    if tokens == 0 || !(tokens_per_sec.is_finite() && tokens_per_sec > 0.0) {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(tokens as f64 / tokens_per_sec)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

/// The per-token interval of a request decoding in a batch of `running` requests out of
/// `max_concurrent` slots: `base x (1 + slowdown x (running - 1) / max_concurrent)`, capped
/// at [`MAX_DELAY`]. A request alone decodes at `base`; a full batch at about
/// `base x (1 + slowdown)`. A zero, negative or non-finite slowdown means `base`.
pub(crate) fn batch_interval(
    base: Duration,
    slowdown: f64,
    running: usize,
    max_concurrent: usize,
) -> Duration {
    if base.is_zero() || !(slowdown.is_finite() && slowdown > 0.0) || running <= 1 {
        return base;
    }
    let factor = 1.0 + slowdown * (running - 1) as f64 / max_concurrent.max(1) as f64;
    Duration::try_from_secs_f64(base.as_secs_f64() * factor)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

/// Schedules the tokens of one request.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    next: Instant,
    total: u32,
    produced: u32,
}

impl Pacer {
    /// `total` tokens, the first due at `start + first`.
    pub(crate) fn new(start: Instant, first: Duration, total: u32) -> Self {
        Self {
            next: start.checked_add(first).unwrap_or(start),
            total,
            produced: 0,
        }
    }

    /// When the next token is due; `None` once all are produced.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        (self.produced < self.total).then_some(self.next)
    }

    /// Marks as produced every token due at `now` (at least one, if any is left), each
    /// next one due `interval` after the previous, and returns how many.
    pub(crate) fn take_due(&mut self, now: Instant, interval: Duration) -> u32 {
        let remaining = self.total - self.produced;
        if remaining == 0 {
            return 0;
        }
        let k = if interval.is_zero() {
            remaining
        } else {
            let mut k = 0;
            while k < remaining {
                k += 1;
                self.next = self.next.checked_add(interval).unwrap_or(self.next);
                if self.next > now {
                    break;
                }
            }
            k
        };
        self.produced += k;
        k
    }

    /// Moves the next due time to `now` if it has passed (generation resumes after a
    /// stall without a burst of the tokens missed meanwhile).
    pub(crate) fn resume(&mut self, now: Instant) {
        self.next = self.next.max(now);
    }

    /// Tokens produced so far.
    pub(crate) fn produced(&self) -> u32 {
        self.produced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn intervals() {
        assert_eq!(token_interval(200.0), MS(5));
        assert_eq!(token_interval(0.0), Duration::ZERO);
        assert_eq!(token_interval(-1.0), Duration::ZERO);
        assert_eq!(token_interval(f64::NAN), Duration::ZERO);
        assert_eq!(token_interval(f64::INFINITY), Duration::ZERO);
        assert_eq!(token_interval(1e-300), MAX_DELAY);
    }

    #[test]
    fn prefill_times() {
        assert_eq!(prefill_time(1000, 5000.0), MS(200));
        assert_eq!(prefill_time(0, 5000.0), Duration::ZERO);
        assert_eq!(prefill_time(1000, 0.0), Duration::ZERO);
        assert_eq!(prefill_time(1000, -3.0), Duration::ZERO);
        assert_eq!(prefill_time(1000, f64::NAN), Duration::ZERO);
        assert_eq!(prefill_time(u64::MAX, 1e-300), MAX_DELAY);
    }

    #[test]
    fn batch_slowdown_formula() {
        let base = MS(10);
        // Alone, or without slowdown: the base interval.
        assert_eq!(batch_interval(base, 1.0, 1, 8), base);
        assert_eq!(batch_interval(base, 1.0, 0, 8), base);
        assert_eq!(batch_interval(base, 0.0, 8, 8), base);
        assert_eq!(batch_interval(base, -2.0, 8, 8), base);
        assert_eq!(batch_interval(base, f64::NAN, 8, 8), base);
        assert_eq!(batch_interval(Duration::ZERO, 4.0, 8, 8), Duration::ZERO);
        // 10 ms x (1 + 1.0 x 4 / 8) = 15 ms; x (1 + 2.0 x 7 / 8) = 27.5 ms.
        assert_eq!(batch_interval(base, 1.0, 5, 8), MS(15));
        assert_eq!(
            batch_interval(base, 2.0, 8, 8),
            Duration::from_micros(27_500)
        );
        // Grows with the batch.
        let a = batch_interval(base, 0.5, 2, 16);
        let b = batch_interval(base, 0.5, 9, 16);
        assert!(base < a && a < b);
        assert_eq!(batch_interval(base, 1e300, 2, 1), MAX_DELAY);
        assert_eq!(batch_interval(base, 1.0, 3, 0), MS(30), "0 slots acts as 1");
    }

    #[test]
    fn schedule() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, MS(100), 5);
        assert_eq!(p.next_due(), Some(t0 + MS(100)));
        assert_eq!(p.take_due(t0 + MS(100), MS(10)), 1);
        assert_eq!(p.next_due(), Some(t0 + MS(110)));
        // Late wake-up: everything due so far comes at once.
        assert_eq!(p.take_due(t0 + MS(135), MS(10)), 3);
        assert_eq!(p.next_due(), Some(t0 + MS(140)));
        assert_eq!(p.take_due(t0 + MS(500), MS(10)), 1);
        assert_eq!(p.next_due(), None);
        assert_eq!(p.produced(), 5);
        assert_eq!(p.take_due(t0 + MS(600), MS(10)), 0);
    }

    #[test]
    fn interval_follows_each_call() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, Duration::ZERO, 4);
        assert_eq!(p.take_due(t0, MS(10)), 1);
        assert_eq!(p.next_due(), Some(t0 + MS(10)));
        assert_eq!(p.take_due(t0 + MS(10), MS(30)), 1);
        assert_eq!(p.next_due(), Some(t0 + MS(40)));
    }

    #[test]
    fn resume_skips_the_stall() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, MS(10), 3);
        p.resume(t0 + MS(5));
        assert_eq!(p.next_due(), Some(t0 + MS(10)), "not yet due: unchanged");
        p.resume(t0 + MS(1000));
        assert_eq!(p.next_due(), Some(t0 + MS(1000)));
        assert_eq!(p.take_due(t0 + MS(1000), MS(10)), 1);
    }

    #[test]
    fn zero_interval_and_zero_total() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, Duration::ZERO, 7);
        assert_eq!(p.take_due(t0, Duration::ZERO), 7);
        assert_eq!(p.next_due(), None);
        let p = Pacer::new(t0, Duration::ZERO, 0);
        assert_eq!(p.next_due(), None);
    }
}
