//! The token bucket of a `[budget NAME]`, and a bounded table of buckets by key.
//!
//! Sans-io: time is an argument, in milliseconds on any monotonic scale. A bucket's level is
//! kept in units of 1/60000 token, so a refill of `tokens_per_minute` per minute is exactly
//! `tokens_per_minute` units per millisecond (integer arithmetic, no drift). A request reserves
//! its estimate at admission; when its response ends the reservation is replaced by the real
//! usage, which may leave the bucket below zero: a debt that refills like any deficit, bounded
//! at one burst.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::keyed::IdentityHasher;

/// Units of level per token.
const UNITS: i64 = 60_000;

/// A budget's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRate {
    /// Tokens added per minute.
    per_minute: u64,
    /// The bucket's capacity in tokens.
    burst: u64,
}

/// One key's bucket: its level (in 1/60000 token) as of `at` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    level: i64,
    at: u64,
}

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Reserved.
    Allow {
        /// Whole tokens left after the reservation.
        remaining: u64,
        /// Milliseconds until the bucket is full again.
        reset_ms: u64,
    },
    /// The bucket holds less than the estimate; nothing was taken.
    Deny {
        /// Whole tokens the bucket holds (0 in debt).
        remaining: u64,
        /// Milliseconds until the estimate would fit.
        retry_after_ms: u64,
        /// Milliseconds until the bucket is full again.
        reset_ms: u64,
    },
}

impl TokenRate {
    /// `per_minute` tokens a minute into a bucket of `burst` tokens (both at least 1).
    pub fn new(per_minute: u64, burst: u64) -> Self {
        TokenRate {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
        }
    }

    /// The capacity in tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn capacity(&self) -> i64 {
        i64::try_from(self.burst)
            .unwrap_or(i64::MAX)
            .saturating_mul(UNITS)
    }

    /// A full bucket at `now`.
    pub fn full(&self, now: u64) -> Bucket {
        Bucket {
            level: self.capacity(),
            at: now,
        }
    }

    /// The bucket's level at `now` (without changing it).
    fn level_at(&self, b: &Bucket, now: u64) -> i64 {
        let elapsed = now.saturating_sub(b.at);
        let add = i64::try_from(elapsed.saturating_mul(self.per_minute)).unwrap_or(i64::MAX);
        b.level.saturating_add(add).min(self.capacity())
    }

    fn refill(&self, b: &mut Bucket, now: u64) {
        if now > b.at {
            b.level = self.level_at(b, now);
            b.at = now;
        }
    }

    /// Whether the bucket is full at `now` (it then says nothing a new bucket would not).
    pub fn is_full(&self, b: &Bucket, now: u64) -> bool {
        self.level_at(b, now) >= self.capacity()
    }

    /// Milliseconds for `units` of level to refill.
    fn ms_for(&self, units: i64) -> u64 {
        (units.max(0) as u64).div_ceil(self.per_minute)
    }

    /// Whole tokens in the bucket at `now`.
    pub fn remaining(&self, b: &Bucket, now: u64) -> u64 {
        (self.level_at(b, now).max(0) / UNITS) as u64
    }

    /// Milliseconds until the bucket is full, from `now`.
    pub fn reset_ms(&self, b: &Bucket, now: u64) -> u64 {
        self.ms_for(self.capacity() - self.level_at(b, now))
    }

    /// Reserves `tokens` (clamped to the burst, so one request always fits a full bucket).
    pub fn reserve(&self, b: &mut Bucket, now: u64, tokens: u64) -> Admission {
        self.refill(b, now);
        let cost = (tokens.min(self.burst) as i64).saturating_mul(UNITS);
        if b.level < cost {
            return Admission::Deny {
                remaining: (b.level.max(0) / UNITS) as u64,
                retry_after_ms: self.ms_for(cost - b.level),
                reset_ms: self.ms_for(self.capacity() - b.level),
            };
        }
        b.level -= cost;
        Admission::Allow {
            remaining: (b.level / UNITS) as u64,
            reset_ms: self.ms_for(self.capacity() - b.level),
        }
    }

    /// Replaces a reservation of `reserved` tokens by the `actual` usage: refunds the
    /// difference, or charges the excess (the bucket may go into debt, at most one burst).
    pub fn settle(&self, b: &mut Bucket, now: u64, reserved: u64, actual: u64) {
        self.refill(b, now);
        let reserved = reserved.min(self.burst) as i64;
        let actual = actual.min(self.burst.saturating_mul(2)) as i64;
        let delta = (reserved - actual).saturating_mul(UNITS);
        b.level = b
            .level
            .saturating_add(delta)
            .clamp(-self.capacity(), self.capacity());
    }
}

/// Buckets by hashed key, at most `capacity` of them. A full bucket carries no information
/// and is dropped when room is needed; when every bucket is in use, the fullest eighth is
/// evicted (each then starts again full).
#[derive(Debug)]
pub struct BudgetTable {
    buckets: HashMap<u64, Bucket, BuildHasherDefault<IdentityHasher>>,
    capacity: usize,
    evictions: u64,
    scratch: Vec<i64>,
}

impl BudgetTable {
    /// An empty table holding at most `capacity` (at least 1) keys.
    pub fn new(capacity: usize) -> Self {
        BudgetTable {
            buckets: HashMap::default(),
            capacity: capacity.max(1),
            evictions: 0,
            scratch: Vec::new(),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Keys in use evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Reserves `tokens` for `key` at `now`.
    pub fn reserve(&mut self, rate: &TokenRate, key: u64, now: u64, tokens: u64) -> Admission {
        if let Some(b) = self.buckets.get_mut(&key) {
            return rate.reserve(b, now, tokens);
        }
        let mut b = rate.full(now);
        let admission = rate.reserve(&mut b, now, tokens);
        if matches!(admission, Admission::Allow { .. }) {
            if self.buckets.len() >= self.capacity {
                self.make_room(rate, now);
            }
            self.buckets.insert(key, b);
        }
        admission
    }

    /// Settles a reservation of `key` (a key evicted meanwhile starts again full, then takes
    /// any excess).
    pub fn settle(&mut self, rate: &TokenRate, key: u64, now: u64, reserved: u64, actual: u64) {
        if let Some(b) = self.buckets.get_mut(&key) {
            rate.settle(b, now, reserved, actual);
            return;
        }
        if actual <= reserved {
            return;
        }
        let mut b = rate.full(now);
        rate.settle(&mut b, now, reserved, actual);
        if self.buckets.len() >= self.capacity {
            self.make_room(rate, now);
        }
        self.buckets.insert(key, b);
    }

    /// Drops full buckets; if none was, evicts the fullest eighth of the table.
    fn make_room(&mut self, rate: &TokenRate, now: u64) {
        self.buckets.retain(|_, b| !rate.is_full(b, now));
        if self.buckets.len() < self.capacity {
            return;
        }
        let n = (self.capacity / 8).max(1);
        self.scratch.clear();
        self.scratch
            .extend(self.buckets.values().map(|b| -rate.level_at(b, now)));
        let (_, cut, _) = self.scratch.select_nth_unstable(n - 1);
        let cut = -*cut;
        let before = self.buckets.len();
        let mut left = n;
        self.buckets.retain(|_, b| {
            if rate.level_at(b, now) >= cut && left > 0 {
                left -= 1;
                false
            } else {
                true
            }
        });
        self.evictions += (before - self.buckets.len()) as u64;
    }

    /// The bucket of `key`, if held (for reports and tests).
    pub fn get(&self, key: u64) -> Option<&Bucket> {
        self.buckets.get(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    fn allowed(a: Admission) -> bool {
        matches!(a, Admission::Allow { .. })
    }

    #[test]
    fn reserve_refill_and_retry_after() {
        // 600 tokens a minute = 10 a second, burst 100.
        let r = TokenRate::new(600, 100);
        let mut b = r.full(S);
        assert_eq!(
            r.reserve(&mut b, S, 60),
            Admission::Allow {
                remaining: 40,
                reset_ms: 6_000
            }
        );
        // 50 do not fit in 40: 10 tokens short, one second at 10/s.
        assert_eq!(
            r.reserve(&mut b, S, 50),
            Admission::Deny {
                remaining: 40,
                retry_after_ms: 1_000,
                reset_ms: 6_000
            }
        );
        assert!(!allowed(r.reserve(&mut b, S + 999, 50)));
        assert!(allowed(r.reserve(&mut b, 2 * S, 50)));
        assert_eq!(r.remaining(&b, 2 * S), 0);
        // Ten seconds later it is full again, never more.
        assert_eq!(r.remaining(&b, 100 * S), 100);
        assert!(r.is_full(&b, 12 * S));
    }

    #[test]
    fn one_request_always_fits_a_full_bucket() {
        let r = TokenRate::new(60, 100);
        let mut b = r.full(S);
        assert!(allowed(r.reserve(&mut b, S, 1_000_000)), "clamped to 100");
        assert_eq!(r.remaining(&b, S), 0);
        assert!(!allowed(r.reserve(&mut b, S, 1)));
    }

    #[test]
    fn settlement_refunds_or_charges_into_bounded_debt() {
        let r = TokenRate::new(600, 100);
        let mut b = r.full(S);
        assert!(allowed(r.reserve(&mut b, S, 80)));
        // Used 30 of the 80 reserved: 50 come back.
        r.settle(&mut b, S, 80, 30);
        assert_eq!(r.remaining(&b, S), 70);
        // Reserved the last 70, used 150: 80 tokens of debt.
        assert!(allowed(r.reserve(&mut b, S, 70)));
        r.settle(&mut b, S, 70, 150);
        assert_eq!(r.remaining(&b, S), 0);
        assert_eq!(r.level_at(&b, S), -80 * UNITS);
        // The debt refills: 8 s to zero, then 1 s per 10 tokens.
        assert!(!allowed(r.reserve(&mut b, 9 * S, 1)));
        assert_eq!(
            r.reserve(&mut b, 9 * S, 5),
            Admission::Deny {
                remaining: 0,
                retry_after_ms: 500,
                reset_ms: 10_000
            }
        );
        assert!(allowed(r.reserve(&mut b, 10 * S, 10)));
        // Debt never goes below one burst.
        let mut c = r.full(S);
        r.settle(&mut c, S, 0, u64::MAX);
        assert_eq!(r.level_at(&c, S), -100 * UNITS);
        assert_eq!(r.reset_ms(&c, S), 20_000);
    }

    #[test]
    fn a_slow_rate_loses_nothing_to_rounding() {
        // One token a minute, refilled in many small steps.
        let r = TokenRate::new(1, 10);
        let mut b = r.full(0);
        assert!(allowed(r.reserve(&mut b, 0, 10)));
        for t in (1..=60_000).step_by(7) {
            let _ = r.reserve(&mut b, t, 2);
        }
        assert_eq!(r.remaining(&b, 60_000), 1);
    }

    #[test]
    fn keys_are_isolated_and_the_table_is_bounded() {
        let r = TokenRate::new(60, 10);
        let mut t = BudgetTable::new(8);
        assert!(allowed(t.reserve(&r, 1, S, 10)));
        assert!(!allowed(t.reserve(&r, 1, S, 1)));
        assert!(
            allowed(t.reserve(&r, 2, S, 10)),
            "another key has its own bucket"
        );
        for key in 100..1100 {
            assert!(allowed(t.reserve(&r, key, S, 5)));
            assert!(t.len() <= 8);
        }
        assert_eq!(t.len() as u64 + t.evictions(), 1002);
    }

    #[test]
    fn full_buckets_expire_without_counting_as_evictions() {
        let r = TokenRate::new(600, 10);
        let mut t = BudgetTable::new(4);
        for key in 0..4 {
            assert!(allowed(t.reserve(&r, key, S, 5)));
        }
        for key in 10..14 {
            assert!(allowed(t.reserve(&r, key, 10 * S, 5)));
        }
        assert_eq!((t.len(), t.evictions()), (4, 0));
    }

    #[test]
    fn settling_an_evicted_key() {
        let r = TokenRate::new(60, 100);
        let mut t = BudgetTable::new(4);
        t.settle(&r, 7, S, 50, 10);
        assert!(t.get(7).is_none(), "a refund to a full bucket is nothing");
        t.settle(&r, 7, S, 50, 80);
        assert_eq!(r.remaining(t.get(7).unwrap(), S), 70);
    }
}
