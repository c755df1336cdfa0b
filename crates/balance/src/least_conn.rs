//! Least connections: send a request where the fewest requests are in flight, per unit of
//! weight.
//!
//! Two variants are registered:
//! - `least_conn`: the power of two choices. Sample two distinct eligible backends at random and
//!   take the less loaded. Constant time, and it avoids the herd effect of every thread sending
//!   its next request to the same momentarily idle backend, while staying close to the optimum.
//! - `least_conn_strict`: scan every eligible backend and take the least loaded; ties go to the
//!   backend after the one chosen last, so equal backends share the load in turn.
//!
//! Load is `in_flight / weight`, compared by cross-multiplication (no division, no floats).

use std::cmp::Ordering;
use std::sync::Arc;

use crate::sample::{two_choices, Choices};
use crate::{BackendState, Balancer, PickContext, SplitMix64};

/// Registered as `least_conn`.
pub fn new_p2c(seed: u64) -> Box<dyn Balancer> {
    Box::new(LeastConn {
        rng: SplitMix64::new(seed),
        strict: false,
        next: 0,
        scratch: Vec::new(),
    })
}

/// Registered as `least_conn_strict`.
pub fn new_strict(seed: u64) -> Box<dyn Balancer> {
    Box::new(LeastConn {
        rng: SplitMix64::new(seed),
        strict: true,
        next: 0,
        scratch: Vec::new(),
    })
}

/// Least-connections state.
#[derive(Debug, Clone)]
pub struct LeastConn {
    rng: SplitMix64,
    strict: bool,
    /// Where the strict scan starts (rotates for fair tie-breaking).
    next: usize,
    /// Eligible indices, reused between picks to avoid allocating.
    scratch: Vec<usize>,
}

/// Orders two backends by `in_flight / weight`.
fn load_cmp(a: &BackendState, b: &BackendState) -> Ordering {
    let la = u128::from(a.in_flight()) * u128::from(b.weight());
    let lb = u128::from(b.in_flight()) * u128::from(a.weight());
    la.cmp(&lb)
}

impl LeastConn {
    fn pick_strict(
        &mut self,
        backends: &[Arc<BackendState>],
        ctx: &PickContext<'_>,
    ) -> Option<usize> {
        let n = backends.len();
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            if !ctx.eligible(i, &backends[i]) {
                continue;
            }
            if best.is_none_or(|j| load_cmp(&backends[i], &backends[j]) == Ordering::Less) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.next = (chosen + 1) % n.max(1);
        Some(chosen)
    }

    fn pick_p2c(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        match two_choices(backends, ctx, &mut self.rng, &mut self.scratch, |_| true) {
            Choices::None => None,
            Choices::One(i) => Some(i),
            Choices::Two(a, b) => Some(match load_cmp(&backends[a], &backends[b]) {
                Ordering::Greater => b,
                _ => a,
            }),
        }
    }
}

impl Balancer for LeastConn {
    fn name(&self) -> &'static str {
        if self.strict {
            "least_conn_strict"
        } else {
            "least_conn"
        }
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        if self.strict {
            self.pick_strict(backends, ctx)
        } else {
            self.pick_p2c(backends, ctx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InFlight;
    use proptest::prelude::*;

    fn group(weights: &[u32]) -> Vec<Arc<BackendState>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Arc::new(BackendState::new(format!("b{i}"), *w)))
            .collect()
    }

    fn load(b: &Arc<BackendState>, n: usize) -> Vec<InFlight> {
        (0..n).map(|_| b.start_request()).collect()
    }

    #[test]
    fn strict_picks_the_least_loaded() {
        let g = group(&[1, 1, 1]);
        let _a = load(&g[0], 3);
        let _b = load(&g[1], 1);
        let _c = load(&g[2], 2);
        let mut lc = new_strict(1);
        for _ in 0..5 {
            assert_eq!(lc.pick(&g, &PickContext::at(0)), Some(1));
        }
    }

    #[test]
    fn strict_rotates_between_ties() {
        let g = group(&[1, 1, 1]);
        let mut lc = new_strict(1);
        let picks: Vec<_> = (0..6)
            .map(|_| lc.pick(&g, &PickContext::at(0)).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn strict_accounts_for_weight() {
        let g = group(&[4, 1]);
        let _a = load(&g[0], 3); // 3/4 per unit of weight
        let _b = load(&g[1], 1); // 1/1
        let mut lc = new_strict(1);
        assert_eq!(lc.pick(&g, &PickContext::at(0)), Some(0));
    }

    #[test]
    fn p2c_with_two_backends_always_takes_the_lighter() {
        let g = group(&[1, 1]);
        let _busy = load(&g[0], 5);
        let mut lc = new_p2c(9);
        for _ in 0..100 {
            assert_eq!(lc.pick(&g, &PickContext::at(0)), Some(1));
        }
    }

    #[test]
    fn p2c_never_picks_the_most_loaded_of_many() {
        let g = group(&[1, 1, 1, 1]);
        let _busy = load(&g[2], 10);
        let mut lc = new_p2c(3);
        for _ in 0..1_000 {
            assert_ne!(lc.pick(&g, &PickContext::at(0)), Some(2));
        }
    }

    #[test]
    fn p2c_spreads_idle_load_evenly() {
        let g = group(&[1, 1, 1, 1]);
        let mut lc = new_p2c(11);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[lc.pick(&g, &PickContext::at(0)).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    /// Simulation: requests of random length arrive on a clock of ticks; the p2c balancer keeps
    /// the busiest backend close to the average, far closer than a random choice would.
    #[test]
    fn p2c_simulation_keeps_load_balanced() {
        let g = group(&[1, 1, 1, 1, 1, 1, 1, 1]);
        let mut lc = new_p2c(5);
        let mut rng = SplitMix64::new(77);
        let mut running: Vec<(u64, InFlight)> = Vec::new();
        let mut worst_gap = 0u64;
        for tick in 0..20_000u64 {
            running.retain(|(end, _)| *end > tick);
            for _ in 0..4 {
                let i = lc.pick(&g, &PickContext::at(tick)).unwrap();
                let len = 1 + rng.below(30) as u64;
                running.push((tick + len, g[i].start_request()));
            }
            let loads: Vec<u64> = g.iter().map(|b| b.in_flight()).collect();
            let max = *loads.iter().max().unwrap();
            let min = *loads.iter().min().unwrap();
            worst_gap = worst_gap.max(max - min);
        }
        // About 62 in flight per backend on average; the spread stays a small fraction of it.
        assert!(worst_gap <= 12, "worst max-min gap {worst_gap}");
    }

    proptest! {
        #[test]
        fn picks_only_eligible(n in 1usize..10, down_mask in any::<u16>(), strict in any::<bool>(), seed in any::<u64>()) {
            let g = group(&vec![1; n]);
            for (i, b) in g.iter().enumerate() {
                if down_mask & (1 << i) != 0 { b.mark_down_until(u64::MAX); }
            }
            let mut lc = if strict { new_strict(seed) } else { new_p2c(seed) };
            let any_up = (0..n).any(|i| down_mask & (1 << i) == 0);
            for _ in 0..20 {
                match lc.pick(&g, &PickContext::at(0)) {
                    Some(i) => prop_assert!(down_mask & (1 << i) == 0),
                    None => prop_assert!(!any_up),
                }
            }
        }
    }
}
