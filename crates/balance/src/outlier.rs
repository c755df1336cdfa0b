//! Outlier ejection (passive health): a backend whose exchanges fail `threshold` times in a
//! row is taken out of rotation for a while, longer each time it happens again, but never so
//! many at once that the group is left without capacity.
//!
//! A *failure* is what says the backend itself is sick: a refused or timed-out connection, a
//! response timeout, a reset, or a `500`, `502` or `504`. A `503` or `429` is the backend
//! saying it is busy; that is load, handled by the balancers (`response_time`'s penalty,
//! `least_queue`'s figures) and by retries, not by ejection.
//!
//! The `n`-th ejection in a row lasts `n x base`, at most `max`; a backend not ejected for
//! twice `max` starts again from `base`. An ejection that would
//! put more than `max_percent` of the group out of rotation (counting backends down for any
//! reason) does not happen; the failures keep counting, so it happens as soon as it may.
//!
//! Sans-io: times are milliseconds on the caller's clock, and the caller says how much of the
//! group is already out.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// The ejection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures that eject; 0 never ejects.
    pub threshold: u32,
    /// The first ejection's length, in milliseconds.
    pub base_ms: u64,
    /// The longest ejection, in milliseconds.
    pub max_ms: u64,
    /// The largest share of a group (percent) that may be out of rotation at once.
    pub max_percent: u32,
}

/// What one outcome led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Keep,
    /// Eject until this time (milliseconds); `nth` ejection in a row.
    Eject {
        /// When it ends.
        until_ms: u64,
        /// How many ejections in a row this is.
        nth: u32,
    },
    /// The threshold was reached but the group's share of ejected backends is at its cap.
    Spared,
}

/// One backend's failure record, shared by every thread (relaxed atomics: a lost race costs at
/// most one failure's worth of counting).
#[derive(Debug, Default)]
pub struct Outlier {
    consecutive: AtomicU32,
    ejections: AtomicU32,
    last_ejected_ms: AtomicU64,
}

impl Outlier {
    /// A successful exchange: the run of failures ends.
    pub fn success(&self) {
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
    }

    /// Consecutive failures so far.
    pub fn consecutive(&self) -> u32 {
        self.consecutive.load(Relaxed)
    }

    /// Ejections in a row so far.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Relaxed)
    }

    /// A failed exchange at `now_ms`, in a group of `group` backends of which `out()` are out
    /// of rotation already (this one not included; asked only when the threshold is reached).
    pub fn failure(
        &self,
        policy: &Policy,
        now_ms: u64,
        group: usize,
        out: impl FnOnce() -> usize,
    ) -> Verdict {
        if policy.threshold == 0 {
            return Verdict::Keep;
        }
        let n = self.consecutive.fetch_add(1, Relaxed).saturating_add(1);
        if n < policy.threshold {
            return Verdict::Keep;
        }
        let allowed = group as u64 * u64::from(policy.max_percent) / 100;
        if (out() as u64 + 1) > allowed {
            return Verdict::Spared;
        }
        self.consecutive.store(0, Relaxed);
        let last = self.last_ejected_ms.load(Relaxed);
        let mut nth = self.ejections.load(Relaxed);
        if last != 0 && now_ms.saturating_sub(last) > policy.max_ms.saturating_mul(2) {
            nth = 0; // a long healthy spell: start again from the base time
        }
        nth = nth.saturating_add(1);
        self.ejections.store(nth, Relaxed);
        self.last_ejected_ms.store(now_ms.max(1), Relaxed);
        let length = policy
            .base_ms
            .saturating_mul(u64::from(nth))
            .min(policy.max_ms.max(policy.base_ms));
        Verdict::Eject {
            until_ms: now_ms.saturating_add(length),
            nth,
        }
    }
}

/// Whether an HTTP status from a backend counts as a failure for ejection.
pub fn is_failure_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: Policy = Policy {
        threshold: 3,
        base_ms: 1_000,
        max_ms: 5_000,
        max_percent: 50,
    };

    #[test]
    fn ejects_after_the_threshold_and_longer_each_time() {
        let o = Outlier::default();
        let mut now = 10_000;
        let mut lengths = Vec::new();
        for _ in 0..7 {
            assert_eq!(o.failure(&POLICY, now, 4, || 0), Verdict::Keep);
            assert_eq!(o.failure(&POLICY, now, 4, || 0), Verdict::Keep);
            match o.failure(&POLICY, now, 4, || 0) {
                Verdict::Eject { until_ms, .. } => lengths.push(until_ms - now),
                v => panic!("{v:?}"),
            }
            now += 6_000;
        }
        assert_eq!(lengths, [1_000, 2_000, 3_000, 4_000, 5_000, 5_000, 5_000]);
        // A long healthy spell starts again from the base.
        now += 20_000;
        for _ in 0..2 {
            o.failure(&POLICY, now, 4, || 0);
        }
        assert_eq!(
            o.failure(&POLICY, now, 4, || 0),
            Verdict::Eject {
                until_ms: now + 1_000,
                nth: 1
            }
        );
    }

    #[test]
    fn a_success_ends_the_run() {
        let o = Outlier::default();
        o.failure(&POLICY, 1, 4, || 0);
        o.failure(&POLICY, 1, 4, || 0);
        o.success();
        assert_eq!(o.consecutive(), 0);
        assert_eq!(o.failure(&POLICY, 1, 4, || 0), Verdict::Keep);
    }

    #[test]
    fn never_more_than_the_share_of_the_group() {
        let o = Outlier::default();
        for _ in 0..2 {
            o.failure(&POLICY, 1, 4, || 2);
        }
        // Two of four already out: a third would be 75% > 50%.
        assert_eq!(o.failure(&POLICY, 1, 4, || 2), Verdict::Spared);
        // One comes back: the next failure ejects at once.
        assert!(matches!(
            o.failure(&POLICY, 2, 4, || 1),
            Verdict::Eject { .. }
        ));
        // A group of one is never emptied at 50%.
        let lone = Outlier::default();
        for _ in 0..10 {
            assert!(!matches!(
                lone.failure(&POLICY, 1, 1, || 0),
                Verdict::Eject { .. }
            ));
        }
    }

    #[test]
    fn threshold_zero_never_ejects() {
        let o = Outlier::default();
        let off = Policy {
            threshold: 0,
            ..POLICY
        };
        for _ in 0..100 {
            assert_eq!(o.failure(&off, 1, 4, || 0), Verdict::Keep);
        }
    }

    #[test]
    fn failure_statuses() {
        assert!(is_failure_status(500) && is_failure_status(502) && is_failure_status(504));
        assert!(!is_failure_status(503) && !is_failure_status(429) && !is_failure_status(404));
    }

    proptest! {
        #[test]
        fn the_share_cap_holds(group in 1usize..50, out in 0usize..50, pct in 0u32..=100, fails in 1u32..20) {
            let out = out.min(group.saturating_sub(1));
            let o = Outlier::default();
            let policy = Policy { max_percent: pct, ..POLICY };
            for k in 0..fails {
                if let Verdict::Eject { until_ms, .. } = o.failure(&policy, 100 + u64::from(k), group, || out) {
                    prop_assert!((out as u64 + 1) * 100 <= group as u64 * u64::from(pct));
                    prop_assert!(until_ms > 100);
                }
            }
        }
    }
}
