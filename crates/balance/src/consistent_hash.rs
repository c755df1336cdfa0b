//! Consistent hashing with bounded loads: requests with the same key (a session, a user, a
//! client address) go to the same backend, so its caches stay warm, unless that backend is
//! overloaded.
//!
//! Each backend owns `weight x VNODES` points on a 64-bit ring, placed by hashing its *name*
//! (not its position), so every thread and every switchyard instance builds the same ring, and a
//! backend joining or leaving moves only the keys that land on its points: about `1/n` of them
//! (measured in the tests). A key goes to the owner of the first point at or after the key's
//! hash, walking on past backends that are down, excluded, or above their bounded load:
//! `ceil(c x (in-flight total + 1) x weight / total weight)` with `c = LOAD_FACTOR` (the
//! "consistent hashing with bounded loads" scheme), so one hot key cannot melt one engine.
//! A request without a key goes to the least-loaded backend.
//!
//! In groups larger than [`FULL_SCAN_MAX`] the in-flight total behind the bound is summed
//! every [`TOTALS_EVERY`] picks rather than on each (a pick stays O(log n)), and a keyless
//! request takes the less loaded of two random backends.

use std::sync::Arc;

use crate::sample::{two_choices, Choices, FULL_SCAN_MAX};
use crate::{BackendState, Balancer, PickContext, SplitMix64};

/// The most top bits of a key the jump table indexes (a table of 2^16 + 1 entries at most).
pub const JUMP_BITS_MAX: u32 = 16;
/// In large groups, picks between two sums of the in-flight total.
pub const TOTALS_EVERY: u32 = 32;

/// Ring points per unit of weight.
pub const VNODES: u32 = 100;
/// Most ring points in all, whatever the weights (bounds memory and build time).
pub const MAX_POINTS: usize = 100_000;
/// No backend takes more than this factor times its fair share of the in-flight requests.
pub const LOAD_FACTOR: f64 = 1.25;

/// Registered as `consistent_hash`.
pub fn new(seed: u64) -> Box<dyn Balancer> {
    Box::new(ConsistentHash {
        rng: SplitMix64::new(seed),
        ..ConsistentHash::default()
    })
}

/// A stable 64-bit hash of `bytes` (FNV-1a, then a SplitMix64 finaliser to spread the bits).
/// The same on every platform and in every process, so instances agree on key placement.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The ring, built on first use for the route's backend group.
#[derive(Debug, Default, Clone)]
pub struct ConsistentHash {
    /// (point, backend index), sorted by point.
    ring: Vec<(u64, usize)>,
    /// How many backends the ring was built for.
    built_for: usize,
    /// `jump[j]`: the first ring point whose top bits are at least `j` (see `build`).
    jump: Vec<u32>,
    jump_shift: u32,
    /// Per backend, the walk that last looked at it (`stamp`): nothing to clear per pick.
    seen: Vec<u32>,
    stamp: u32,
    /// The in-flight total and total weight of the eligible backends, and picks since summed.
    totals: (u64, u64),
    since_totals: u32,
    rng: SplitMix64,
    scratch: Vec<usize>,
}

impl ConsistentHash {
    fn build(&mut self, backends: &[Arc<BackendState>]) {
        let total_weight: u64 = backends.iter().map(|b| u64::from(b.weight())).sum();
        let per_weight = (MAX_POINTS as u64)
            .checked_div(total_weight)
            .map_or(0, |p| p.clamp(1, u64::from(VNODES)));
        self.ring.clear();
        for (i, b) in backends.iter().enumerate() {
            let base = hash_bytes(b.name().as_bytes());
            for v in 0..per_weight * u64::from(b.weight()) {
                self.ring.push((mix(base ^ mix(v + 1)), i));
            }
        }
        self.ring.sort_unstable();
        // The jump table: for each value of a key's top bits, the first ring point at or
        // after it, so a lookup searches only the few points sharing those bits.
        let bits = (usize::BITS - self.ring.len().leading_zeros()).clamp(1, JUMP_BITS_MAX);
        self.jump_shift = 64 - bits;
        self.jump.clear();
        for j in 0..(1u64 << bits) {
            let lower = j << self.jump_shift;
            self.jump
                .push(self.ring.partition_point(|(p, _)| *p < lower) as u32);
        }
        self.jump.push(self.ring.len() as u32);
        self.built_for = backends.len();
        self.seen = vec![0; backends.len()];
        self.stamp = 0;
        self.since_totals = TOTALS_EVERY;
    }

    fn least_loaded(
        &mut self,
        backends: &[Arc<BackendState>],
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        if backends.len() > FULL_SCAN_MAX {
            return match two_choices(backends, ctx, &mut self.rng, &mut self.scratch, |_| true) {
                Choices::None => None,
                Choices::One(i) => Some(i),
                Choices::Two(a, b) => Some(if load_cmp(&backends[b], &backends[a]).is_lt() {
                    b
                } else {
                    a
                }),
            };
        }
        backends
            .iter()
            .enumerate()
            .filter(|(i, b)| ctx.eligible(*i, b))
            .min_by(|(_, a), (_, b)| load_cmp(a, b))
            .map(|(i, _)| i)
    }

    /// The eligible backends' in-flight total and weight: summed on every pick in small
    /// groups, every [`TOTALS_EVERY`] picks in large ones.
    fn totals(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> (u64, u64) {
        if backends.len() <= FULL_SCAN_MAX || self.since_totals >= TOTALS_EVERY {
            let (mut in_flight, mut weight) = (0u64, 0u64);
            for (i, b) in backends.iter().enumerate() {
                if ctx.eligible(i, b) {
                    in_flight += b.in_flight();
                    weight += u64::from(b.weight());
                }
            }
            self.totals = (in_flight, weight);
            self.since_totals = 0;
        }
        self.since_totals += 1;
        self.totals
    }
}

/// Orders two backends by `in_flight / weight`.
fn load_cmp(a: &BackendState, b: &BackendState) -> std::cmp::Ordering {
    (u128::from(a.in_flight()) * u128::from(b.weight()))
        .cmp(&(u128::from(b.in_flight()) * u128::from(a.weight())))
}

impl Balancer for ConsistentHash {
    fn name(&self) -> &'static str {
        "consistent_hash"
    }

    fn explain(
        &self,
        backends: &[Arc<BackendState>],
        chosen: usize,
        ctx: &PickContext<'_>,
    ) -> String {
        let b = &backends[chosen];
        match ctx.key {
            Some(k) => format!(
                "key={k:016x} in_flight={} weight={}",
                b.in_flight(),
                b.weight()
            ),
            None => format!("key=none least_loaded in_flight={}", b.in_flight()),
        }
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        let Some(key) = ctx.key else {
            return self.least_loaded(backends, ctx);
        };
        if self.built_for != backends.len() || self.ring.is_empty() {
            self.build(backends);
        }
        if self.ring.is_empty() {
            return None;
        }
        let (total_in_flight, total_weight) = self.totals(backends, ctx);
        let fair = (total_in_flight + 1) as f64 / total_weight.max(1) as f64;
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.iter_mut().for_each(|s| *s = 0);
            self.stamp = 1;
        }
        let j = (key >> self.jump_shift) as usize;
        let (lo, hi) = (self.jump[j] as usize, self.jump[j + 1] as usize);
        let start = lo + self.ring[lo..hi].partition_point(|(p, _)| *p < key);
        let mut first_eligible = None;
        let mut distinct = 0;
        for k in 0..self.ring.len() {
            let (_, i) = self.ring[(start + k) % self.ring.len()];
            if self.seen[i] == self.stamp {
                continue;
            }
            self.seen[i] = self.stamp;
            distinct += 1;
            let b = &backends[i];
            if ctx.eligible(i, b) {
                let cap = (LOAD_FACTOR * fair * f64::from(b.weight())).ceil() as u64;
                if b.in_flight() < cap.max(1) {
                    return Some(i);
                }
                first_eligible.get_or_insert(i);
            }
            if distinct == backends.len() {
                break;
            }
        }
        first_eligible
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InFlight;

    fn group(names: &[&str]) -> Vec<Arc<BackendState>> {
        names
            .iter()
            .map(|n| Arc::new(BackendState::new(*n, 1)))
            .collect()
    }

    fn keyed(key: u64) -> PickContext<'static> {
        PickContext {
            now_ms: 0,
            exclude: &[],
            key: Some(key),
            prefix: &[],
        }
    }

    #[test]
    fn same_key_same_backend_across_instances() {
        let g = group(&["a", "b", "c", "d"]);
        let mut x = ConsistentHash::default();
        let mut y = ConsistentHash::default();
        for k in 0..1_000u64 {
            let key = hash_bytes(&k.to_le_bytes());
            let p = x.pick(&g, &keyed(key));
            assert_eq!(p, x.pick(&g, &keyed(key)));
            assert_eq!(p, y.pick(&g, &keyed(key)));
        }
    }

    #[test]
    fn keys_spread_evenly() {
        let g = group(&["a", "b", "c", "d"]);
        let mut ch = ConsistentHash::default();
        let mut counts = [0u32; 4];
        for k in 0..40_000u64 {
            counts[ch.pick(&g, &keyed(hash_bytes(&k.to_le_bytes()))).unwrap()] += 1;
        }
        for c in counts {
            assert!((8_000..12_000).contains(&c), "{counts:?}");
        }
    }

    /// Membership change: adding a fifth backend moves about a fifth of the keys, and every
    /// key that moves goes to the new backend; removing it moves them back.
    #[test]
    fn minimal_movement_when_a_backend_joins_or_leaves() {
        let four = group(&["a", "b", "c", "d"]);
        let mut five = four.clone();
        five.push(Arc::new(BackendState::new("e", 1)));
        let mut before = ConsistentHash::default();
        let mut after = ConsistentHash::default();
        let n = 20_000u64;
        let mut moved = 0;
        for k in 0..n {
            let key = hash_bytes(&k.to_le_bytes());
            let a = before.pick(&four, &keyed(key)).unwrap();
            let b = after.pick(&five, &keyed(key)).unwrap();
            if a != b {
                moved += 1;
                assert_eq!(b, 4, "a moved key went to an old backend");
            }
        }
        let share = moved as f64 / n as f64;
        assert!((0.15..0.25).contains(&share), "moved {share}");
    }

    #[test]
    fn bounded_load_spreads_a_hot_key() {
        let g = group(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        let mut ch = ConsistentHash::default();
        let mut held: Vec<InFlight> = Vec::new();
        for _ in 0..800 {
            let i = ch.pick(&g, &keyed(42)).unwrap();
            held.push(g[i].start_request());
        }
        let max = g.iter().map(|b| b.in_flight()).max().unwrap();
        // Fair share is 100; no backend may exceed ceil(1.25 x fair) (+1 for the rounding).
        assert!(max <= 126, "hottest backend holds {max}");
        drop(held);
        // Unloaded, the hot key is back on its own backend.
        let home = ch.pick(&g, &keyed(42)).unwrap();
        assert_eq!(ch.pick(&g, &keyed(42)), Some(home));
    }

    #[test]
    fn skips_down_and_excluded_backends() {
        let g = group(&["a", "b", "c"]);
        let mut ch = ConsistentHash::default();
        let home = ch.pick(&g, &keyed(7)).unwrap();
        g[home].mark_down_until(u64::MAX);
        let next = ch.pick(&g, &keyed(7)).unwrap();
        assert_ne!(next, home);
        let ctx = PickContext {
            now_ms: 0,
            exclude: &[next],
            key: Some(7),
            prefix: &[],
        };
        let third = ch.pick(&g, &ctx).unwrap();
        assert!(third != home && third != next);
        for b in &g {
            b.mark_down_until(u64::MAX);
        }
        assert_eq!(ch.pick(&g, &keyed(7)), None);
    }

    #[test]
    fn no_key_goes_to_the_least_loaded() {
        let g = group(&["a", "b", "c"]);
        let _busy: Vec<_> = (0..3).map(|_| g[0].start_request()).collect();
        let _one = g[1].start_request();
        let mut ch = ConsistentHash::default();
        assert_eq!(ch.pick(&g, &PickContext::at(0)), Some(2));
    }

    #[test]
    fn weights_scale_the_share() {
        let g = vec![
            Arc::new(BackendState::new("heavy", 3)),
            Arc::new(BackendState::new("light", 1)),
        ];
        let mut ch = ConsistentHash::default();
        let mut heavy = 0;
        for k in 0..20_000u64 {
            if ch.pick(&g, &keyed(hash_bytes(&k.to_le_bytes()))) == Some(0) {
                heavy += 1;
            }
        }
        assert!((14_000..16_000).contains(&heavy), "{heavy}");
    }
}
