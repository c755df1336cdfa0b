//! A fixed-size, lock-free latency histogram with log-linear buckets.
//!
//! Values (microseconds) below 16 get a bucket each; above, every power of two is split into 8
//! sub-buckets, so a reported percentile is within 12.5% of the true value. The bucket array is
//! fixed (no allocation after construction) and every update is one relaxed atomic add, so a
//! reactor thread can record on the hot path while the admin thread reads.

use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::Bump;

const LINEAR: usize = 16;
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Largest exponent covered; values above 2^40 us (about 12 days) land in the last bucket.
const MAX_EXP: usize = 40;
/// Number of buckets.
pub const BUCKETS: usize = LINEAR + (MAX_EXP - 3) * SUB;

/// Bucket index for a value.
fn index(v: u64) -> usize {
    if v < LINEAR as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as usize; // >= 4
    let sub = ((v >> (exp as u32 - SUB_BITS)) as usize) & (SUB - 1);
    (LINEAR + (exp - 4) * SUB + sub).min(BUCKETS - 1)
}

/// The highest value that falls into bucket `i` (what a percentile reports).
fn upper_bound(i: usize) -> u64 {
    if i < LINEAR {
        return i as u64;
    }
    let exp = (i - LINEAR) / SUB + 4;
    let sub = ((i - LINEAR) % SUB) as u64;
    let base = 1u64 << exp;
    let step = base >> SUB_BITS;
    base + (sub + 1) * step - 1
}

/// A histogram written with relaxed atomics.
#[derive(Debug)]
pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    /// Records one value in microseconds (by the histogram's only writer thread, see
    /// [`Bump`]).
    pub fn record(&self, micros: u64) {
        self.counts[index(micros)].bump(1);
    }

    /// Sets every count to zero (by the only writer thread, when its slot gets a new
    /// occupant).
    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Adds this histogram's counts into `into` (merging per-thread histograms on read).
    pub fn merge_into(&self, into: &mut Snapshot) {
        for (acc, c) in into.counts.iter_mut().zip(self.counts.iter()) {
            *acc += c.load(Ordering::Relaxed);
        }
    }
}

/// A plain copy of bucket counts, for merging and computing percentiles.
#[derive(Debug, Clone)]
pub struct Snapshot {
    counts: Vec<u64>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Snapshot {
    /// Total number of values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at quantile `q` (0.0..=1.0), as the upper bound of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i);
            }
        }
        upper_bound(BUCKETS - 1)
    }

    /// The values recorded since `earlier` (a snapshot of the same histogram taken before):
    /// the bucket counts' differences.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, before)| now.saturating_sub(*before))
                .collect(),
        }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The non-empty buckets: `(upper bound in microseconds, count)`, in increasing order.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (upper_bound(i), *c))
    }

    /// Approximate sum of the values (each counted at its bucket's upper bound), in
    /// microseconds.
    pub fn approximate_sum(&self) -> u64 {
        self.buckets().map(|(b, c)| b.saturating_mul(c)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, 1 << 30, (1 << 40) - 1]) {
            let i = index(v);
            assert!(i >= last || v == 0);
            last = i;
            assert!(upper_bound(i) >= v, "v={v} i={i}");
            if v >= 16 {
                assert!((upper_bound(i) - v) as f64 <= v as f64 * 0.125, "v={v}");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn differences_sums_and_buckets() {
        let h = Histogram::default();
        h.record(10);
        let mut before = Snapshot::default();
        h.merge_into(&mut before);
        h.record(1000);
        h.record(1000);
        let mut now = Snapshot::default();
        h.merge_into(&mut now);
        let d = now.since(&before);
        assert_eq!(d.count(), 2);
        assert!(d.quantile(0.5) >= 1000);
        let b: Vec<_> = d.buckets().collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].1, 2);
        let mut sum = before.clone();
        sum.add(&d);
        assert_eq!(sum.count(), 3);
        assert_eq!(d.approximate_sum(), 2 * b[0].0);
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let mut s = Snapshot::default();
        h.merge_into(&mut s);
        assert_eq!(s.count(), 1000);
        let p50 = s.quantile(0.5);
        let p99 = s.quantile(0.99);
        assert!((500..=570).contains(&p50), "{p50}");
        assert!((990..=1120).contains(&p99), "{p99}");
        assert_eq!(Snapshot::default().quantile(0.5), 0);
    }
}
