//! Smooth weighted round robin (the algorithm of nginx's `upstream` module).
//!
//! Each pick adds every eligible backend's weight to its running score, chooses the highest
//! score, and takes the total weight off the winner. Over any window of `sum(weights)` picks
//! with a fixed eligible set, each backend is chosen exactly `weight` times, and the choices are
//! interleaved (weights 5,1,1 give `a a b a c a a`) rather than bunched.
//!
//! That is a scan of the whole group per pick. Groups larger than
//! [`crate::sample::FULL_SCAN_MAX`] use earliest-deadline-first scheduling instead (as Envoy's
//! weighted round robin does): each backend's next turn is due `1 / weight` after its last, a
//! heap yields the earliest, and a pick costs O(log n). The shares are the same (`weight` picks
//! per `sum(weights)`), the exact interleaving differs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::sample::FULL_SCAN_MAX;
use crate::{BackendState, Balancer, PickContext};

/// One turn on the EDF clock: the largest weight (10,000) still advances by 429,496 ticks.
const TURN: u64 = 1 << 32;

/// Registered as `round_robin`.
pub fn new(_seed: u64) -> Box<dyn Balancer> {
    Box::new(RoundRobin::default())
}

/// Smooth weighted round robin state: one running score per backend; for large groups, the
/// EDF heap of `(due, index)`.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    current: Vec<i64>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// Heap entries passed over by the current pick (ineligible), put back after it.
    skipped: Vec<Reverse<(u64, usize)>>,
}

impl RoundRobin {
    fn pick_edf(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        if self.heap.len() != backends.len() {
            self.heap = backends
                .iter()
                .enumerate()
                .map(|(i, b)| Reverse((TURN / u64::from(b.weight().max(1)), i)))
                .collect();
        }
        let mut chosen = None;
        while let Some(Reverse((due, i))) = self.heap.pop() {
            if ctx.eligible(i, &backends[i]) {
                chosen = Some((due, i));
                break;
            }
            self.skipped.push(Reverse((due, i)));
        }
        // A passed-over backend keeps its place: it is due first once it is eligible again.
        self.heap.extend(self.skipped.drain(..));
        let (due, i) = chosen?;
        let step = TURN / u64::from(backends[i].weight().max(1));
        let next = due.saturating_add(step);
        if next > u64::MAX / 2 {
            // Rebase every deadline long before the clock could overflow (after ~2^31 turns).
            let base = due;
            self.heap = self
                .heap
                .drain()
                .map(|Reverse((d, j))| Reverse((d.saturating_sub(base), j)))
                .collect();
            self.heap.push(Reverse((step, i)));
        } else {
            self.heap.push(Reverse((next, i)));
        }
        Some(i)
    }
}

impl Balancer for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        if backends.len() > FULL_SCAN_MAX {
            return self.pick_edf(backends, ctx);
        }
        if self.current.len() != backends.len() {
            self.current = vec![0; backends.len()];
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, b) in backends.iter().enumerate() {
            if !ctx.eligible(i, b) {
                continue;
            }
            let w = i64::from(b.weight());
            self.current[i] += w;
            total += w;
            if best.is_none_or(|j| self.current[i] > self.current[j]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.current[chosen] -= total;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn group(weights: &[u32]) -> Vec<Arc<BackendState>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Arc::new(BackendState::new(format!("b{i}"), *w)))
            .collect()
    }

    #[test]
    fn large_groups_get_their_weighted_shares() {
        let weights: Vec<u32> = (0..200).map(|i| 1 + (i % 4)).collect();
        let g = group(&weights);
        let total: u32 = weights.iter().sum();
        let mut rr = RoundRobin::default();
        let mut counts = vec![0u32; g.len()];
        for _ in 0..total * 3 {
            counts[rr.pick(&g, &PickContext::at(0)).unwrap()] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            assert!(
                counts[i].abs_diff(w * 3) <= 1,
                "backend {i}: {} picks, weight {w}",
                counts[i]
            );
        }
        // An excluded backend is passed over, and keeps its turn for later.
        let ctx = PickContext {
            exclude: &[0, 1, 2],
            ..PickContext::at(0)
        };
        for _ in 0..500 {
            assert!(rr.pick(&g, &ctx).unwrap() > 2);
        }
        let all: Vec<usize> = (0..200).collect();
        let none = PickContext {
            exclude: &all,
            ..PickContext::at(0)
        };
        assert_eq!(rr.pick(&g, &none), None);
        assert_eq!(rr.heap.len(), 200);
    }

    #[test]
    fn smooth_order_for_5_1_1() {
        let g = group(&[5, 1, 1]);
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..7)
            .map(|_| rr.pick(&g, &PickContext::at(0)).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn skips_down_and_excluded() {
        let g = group(&[1, 1, 1]);
        g[1].mark_down_until(1_000);
        let mut rr = RoundRobin::default();
        let ctx = PickContext {
            now_ms: 10,
            exclude: &[2],
            key: None,
            prefix: &[],
        };
        for _ in 0..10 {
            assert_eq!(rr.pick(&g, &ctx), Some(0));
        }
    }

    #[test]
    fn none_when_nothing_eligible() {
        let g = group(&[1, 2]);
        g[0].mark_down_until(100);
        g[1].mark_down_until(100);
        let mut rr = RoundRobin::default();
        assert_eq!(rr.pick(&g, &PickContext::at(5)), None);
        assert!(rr.pick(&g, &PickContext::at(100)).is_some());
    }

    proptest! {
        #[test]
        fn exact_weight_ratio_over_a_cycle(weights in prop::collection::vec(1u32..20, 1..8), cycles in 1usize..4) {
            let g = group(&weights);
            let mut rr = RoundRobin::default();
            let total: usize = weights.iter().map(|w| *w as usize).sum();
            let mut counts = vec![0usize; weights.len()];
            for _ in 0..total * cycles {
                counts[rr.pick(&g, &PickContext::at(0)).unwrap()] += 1;
            }
            for (i, w) in weights.iter().enumerate() {
                prop_assert_eq!(counts[i], *w as usize * cycles);
            }
        }

        #[test]
        fn never_picks_ineligible(weights in prop::collection::vec(1u32..10, 1..8), down in prop::collection::vec(any::<bool>(), 8)) {
            let g = group(&weights);
            for (i, b) in g.iter().enumerate() {
                if down[i] { b.mark_down_until(u64::MAX); }
            }
            let mut rr = RoundRobin::default();
            for _ in 0..50 {
                match rr.pick(&g, &PickContext::at(0)) {
                    Some(i) => prop_assert!(!down[i]),
                    None => prop_assert!(down[..g.len()].iter().all(|d| *d)),
                }
            }
        }
    }
}
