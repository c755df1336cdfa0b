//! Token timing: the first token is due after the TTFT, then one every
//! token interval, all measured from the start so delays never accumulate.

use std::time::Duration;

use tokio::time::Instant;

/// Schedules the tokens of one request.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    first: Instant,
    interval: Duration,
    total: u32,
    produced: u32,
}

impl Pacer {
    /// `total` tokens, the first due at `start + ttft`.
    pub(crate) fn new(start: Instant, ttft: Duration, interval: Duration, total: u32) -> Self {
        Self {
            first: start.checked_add(ttft).unwrap_or(start),
            interval,
            total,
            produced: 0,
        }
    }

    /// When the next token is due; `None` once all are produced.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        (self.produced < self.total).then(|| self.due(self.produced))
    }

    /// Marks as produced every token due at `now` (at least one, if any is
    /// left) and returns how many.
    pub(crate) fn take_due(&mut self, now: Instant) -> u32 {
        let remaining = self.total - self.produced;
        let due = if self.interval.is_zero() {
            self.total
        } else {
            let elapsed = now.saturating_duration_since(self.first).as_nanos();
            let n = elapsed / self.interval.as_nanos() + 1;
            u32::try_from(n).unwrap_or(u32::MAX).min(self.total)
        };
        let k = due.saturating_sub(self.produced).max(1).min(remaining);
        self.produced += k;
        k
    }

    /// Tokens produced so far.
    pub(crate) fn produced(&self) -> u32 {
        self.produced
    }

    fn due(&self, index: u32) -> Instant {
        self.first
            .checked_add(self.interval.saturating_mul(index))
            .unwrap_or(self.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(t0, ms(100), ms(10), 5);
        assert_eq!(p.next_due(), Some(t0 + ms(100)));
        assert_eq!(p.take_due(t0 + ms(100)), 1);
        assert_eq!(p.next_due(), Some(t0 + ms(110)));
        // Late wake-up: everything due so far comes at once.
        assert_eq!(p.take_due(t0 + ms(135)), 3);
        assert_eq!(p.take_due(t0 + ms(500)), 1);
        assert_eq!(p.next_due(), None);
        assert_eq!(p.produced(), 5);
    }

    #[test]
    fn zero_interval_and_zero_total() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, Duration::ZERO, Duration::ZERO, 7);
        assert_eq!(p.take_due(t0), 7);
        assert_eq!(p.next_due(), None);
        let p = Pacer::new(t0, Duration::ZERO, Duration::ZERO, 0);
        assert_eq!(p.next_due(), None);
    }
}
