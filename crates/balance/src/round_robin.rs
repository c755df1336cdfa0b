//! Smooth weighted round robin (the algorithm of nginx's `upstream` module).
//!
//! Each pick adds every eligible backend's weight to its running score, chooses the highest
//! score, and takes the total weight off the winner. Over any window of `sum(weights)` picks
//! with a fixed eligible set, each backend is chosen exactly `weight` times, and the choices are
//! interleaved (weights 5,1,1 give `a a b a c a a`) rather than bunched.

use std::sync::Arc;

use crate::{BackendState, Balancer, PickContext};

/// Registered as `round_robin`.
pub fn new(_seed: u64) -> Box<dyn Balancer> {
    Box::new(RoundRobin::default())
}

/// Smooth weighted round robin state: one running score per backend.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    current: Vec<i64>,
}

impl Balancer for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
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
