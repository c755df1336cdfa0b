//! Response-time weighted balancing (the design's RTW): the backend expected to answer first.
//!
//! A backend's cost is its peak-EWMA latency times the requests it has in flight plus one, per
//! unit of weight: `peak_ewma x (in_flight + 1) / weight`. Peak-EWMA (see
//! [`BackendState::observe_peak_latency_us`]) reacts to a slowdown on the first slow answer and
//! forgets good figures gradually; multiplying by the queue makes a fast backend that is
//! already busy look as slow as it will be. Two distinct eligible backends are sampled at
//! random and the cheaper wins (power of two choices, as linkerd does), which keeps every
//! thread from stampeding onto the same momentarily best backend.
//!
//! A backend that answered 429 or 503 is avoided until the time it asked for (`Retry-After`,
//! see [`BackendState::penalize_until`]), unless every candidate is in the same state. A
//! backend without a latency figure yet is costed at [`UNKNOWN_LATENCY_US`], so new backends
//! get tried without being flooded.

use std::sync::Arc;

use crate::sample::{two_choices, Choices};
use crate::{BackendState, Balancer, PickContext, SplitMix64};

/// Cost assumed for a backend with no latency sample yet, in microseconds.
pub const UNKNOWN_LATENCY_US: f64 = 1_000.0;

/// Registered as `response_time`.
pub fn new(seed: u64) -> Box<dyn Balancer> {
    Box::new(ResponseTime {
        rng: SplitMix64::new(seed),
        scratch: Vec::new(),
    })
}

/// Response-time state: a random source and a reusable candidate list.
#[derive(Debug, Clone)]
pub struct ResponseTime {
    rng: SplitMix64,
    scratch: Vec<usize>,
}

/// The cost of sending one more request to `b` at `now_ms`.
pub fn cost(b: &BackendState, now_ms: u64) -> f64 {
    let latency = b.peak_latency_us(now_ms);
    let latency = if latency > 0.0 {
        latency
    } else {
        UNKNOWN_LATENCY_US
    };
    latency * (b.in_flight() + 1) as f64 / f64::from(b.weight())
}

impl Balancer for ResponseTime {
    fn name(&self) -> &'static str {
        "response_time"
    }

    fn explain(
        &self,
        backends: &[Arc<BackendState>],
        chosen: usize,
        ctx: &PickContext<'_>,
    ) -> String {
        let b = &backends[chosen];
        format!(
            "cost={:.0} peak_ewma_us={:.0} in_flight={} weight={} penalized={}",
            cost(b, ctx.now_ms),
            b.peak_latency_us(ctx.now_ms),
            b.in_flight(),
            b.weight(),
            b.is_penalized(ctx.now_ms)
        )
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        let now = ctx.now_ms;
        let mut choices = two_choices(backends, ctx, &mut self.rng, &mut self.scratch, |b| {
            !b.is_penalized(now)
        });
        if choices == Choices::None {
            // Every backend asked to be left alone: the least costly of them all the same.
            choices = two_choices(backends, ctx, &mut self.rng, &mut self.scratch, |_| true);
        }
        match choices {
            Choices::None => None,
            Choices::One(i) => Some(i),
            Choices::Two(a, b) => {
                let (ca, cb) = (cost(&backends[a], now), cost(&backends[b], now));
                Some(if cb < ca { b } else { a })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InFlight;

    fn group(n: usize) -> Vec<Arc<BackendState>> {
        (0..n)
            .map(|i| Arc::new(BackendState::new(format!("b{i}"), 1)))
            .collect()
    }

    #[test]
    fn prefers_the_faster_backend() {
        let g = group(2);
        g[0].observe_peak_latency_us(10_000, 0);
        g[1].observe_peak_latency_us(2_000, 0);
        let mut rt = new(1);
        for _ in 0..50 {
            assert_eq!(rt.pick(&g, &PickContext::at(1)), Some(1));
        }
    }

    #[test]
    fn in_flight_makes_a_fast_backend_look_slow() {
        let g = group(2);
        g[0].observe_peak_latency_us(3_000, 0);
        g[1].observe_peak_latency_us(1_000, 0);
        let _held: Vec<InFlight> = (0..5).map(|_| g[1].start_request()).collect();
        // 1 ms x 6 in flight costs more than 3 ms x 1.
        let mut rt = new(1);
        assert_eq!(rt.pick(&g, &PickContext::at(1)), Some(0));
    }

    #[test]
    fn penalized_backends_are_avoided_until_their_time() {
        let g = group(2);
        g[0].observe_peak_latency_us(1_000, 0);
        g[1].observe_peak_latency_us(9_000, 0);
        g[0].penalize_until(5_000);
        let mut rt = new(1);
        for _ in 0..20 {
            assert_eq!(rt.pick(&g, &PickContext::at(100)), Some(1));
        }
        assert_eq!(rt.pick(&g, &PickContext::at(5_000)), Some(0));
        // When every backend is penalized, one is still chosen.
        g[1].penalize_until(10_000);
        g[0].penalize_until(10_000);
        assert!(rt.pick(&g, &PickContext::at(6_000)).is_some());
    }

    #[test]
    fn skips_down_backends() {
        let g = group(3);
        g[0].mark_down_until(u64::MAX);
        g[1].mark_down_until(u64::MAX);
        let mut rt = new(9);
        assert_eq!(rt.pick(&g, &PickContext::at(0)), Some(2));
        g[2].mark_down_until(u64::MAX);
        assert_eq!(rt.pick(&g, &PickContext::at(0)), None);
    }

    /// Simulation: three backends whose service times are 1, 2 and 4 ticks; requests arrive
    /// four per tick and each backend's latency is observed as it completes. The fast backend
    /// ends up with the largest share, the slow one with the smallest.
    #[test]
    fn simulation_sends_more_to_faster_backends() {
        let g = group(3);
        let service = [1u64, 2, 4];
        let mut rt = new(3);
        let mut running: Vec<(u64, usize, u64, InFlight)> = Vec::new();
        let mut served = [0u32; 3];
        for tick in 0..20_000u64 {
            let now = tick; // one tick = 1 ms
            running.retain(|(end, i, start, _)| {
                if *end <= tick {
                    g[*i].observe_peak_latency_us((end - start) * 1_000, now);
                    false
                } else {
                    true
                }
            });
            for _ in 0..2 {
                let i = rt.pick(&g, &PickContext::at(now)).unwrap();
                served[i] += 1;
                // Queueing: each request in flight adds to the service time.
                let end = tick + service[i] * (g[i].in_flight() + 1);
                running.push((end, i, tick, g[i].start_request()));
            }
        }
        assert!(served[0] > served[1] && served[1] > served[2], "{served:?}");
    }
}
