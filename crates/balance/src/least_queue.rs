//! Least queue: the engine with the fewest requests waiting and running, per unit of weight.
//!
//! The queue is the engine's own figure (scraped from its metrics: waiting + running) plus the
//! requests switchyard has sent it since that scrape (see
//! [`BackendState::queue_estimate`]). When an engine's figures are missing or stale, its queue
//! is switchyard's own in-flight count: unknown is never read as idle. The backend with the
//! smallest `queue / weight` wins; ties go round the group in turn.

use std::sync::Arc;

use crate::sample::min_by_key;
use crate::{BackendState, Balancer, PickContext, SplitMix64};

/// Registered as `least_queue`.
pub fn new(seed: u64) -> Box<dyn Balancer> {
    Box::new(LeastQueue {
        rng: SplitMix64::new(seed),
        ..LeastQueue::default()
    })
}

/// Least-queue state: where the tie-breaking scan starts, and the sampling of large groups
/// (see [`crate::sample`]).
#[derive(Debug, Default, Clone)]
pub struct LeastQueue {
    next: usize,
    rng: SplitMix64,
    scratch: Vec<usize>,
}

impl LeastQueue {
    /// An instance drawing its samples (large groups) from `seed`.
    pub fn seeded(seed: u64) -> Self {
        LeastQueue {
            rng: SplitMix64::new(seed),
            ..LeastQueue::default()
        }
    }
}

impl Balancer for LeastQueue {
    fn name(&self) -> &'static str {
        "least_queue"
    }

    fn explain(
        &self,
        backends: &[Arc<BackendState>],
        chosen: usize,
        ctx: &PickContext<'_>,
    ) -> String {
        let b = &backends[chosen];
        let figures = if b.figures(ctx.now_ms).is_some() {
            "fresh"
        } else {
            "none"
        };
        format!(
            "queue={} weight={} figures={figures}",
            b.queue_estimate(ctx.now_ms),
            b.weight()
        )
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        // Equal ratios give equal quotients: IEEE division rounds the same real the same way.
        min_by_key(
            backends,
            ctx,
            &mut self.next,
            &mut self.rng,
            &mut self.scratch,
            |b| b.queue_estimate(ctx.now_ms) as f64 / f64::from(b.weight()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoadFigures;

    fn group(n: usize) -> Vec<Arc<BackendState>> {
        (0..n)
            .map(|i| Arc::new(BackendState::new(format!("e{i}"), 1)))
            .collect()
    }

    fn queue(waiting: u64, running: u64) -> LoadFigures {
        LoadFigures {
            waiting: Some(waiting),
            running: Some(running),
            ..LoadFigures::default()
        }
    }

    #[test]
    fn picks_the_shortest_engine_queue() {
        let g = group(3);
        g[0].record_figures(queue(10, 4), 0, 5_000);
        g[1].record_figures(queue(0, 2), 0, 5_000);
        g[2].record_figures(queue(3, 4), 0, 5_000);
        let mut lq = new(0);
        assert_eq!(lq.pick(&g, &PickContext::at(1)), Some(1));
    }

    #[test]
    fn own_requests_since_the_scrape_count() {
        let g = group(2);
        g[0].record_figures(queue(0, 1), 0, 5_000);
        g[1].record_figures(queue(0, 2), 0, 5_000);
        let mut lq = new(0);
        let mut held = Vec::new();
        // Sending to e0 raises its estimate until it exceeds e1's.
        assert_eq!(lq.pick(&g, &PickContext::at(1)), Some(0));
        held.push(g[0].start_request());
        held.push(g[0].start_request());
        assert_eq!(lq.pick(&g, &PickContext::at(1)), Some(1));
    }

    #[test]
    fn stale_figures_fall_back_to_in_flight_not_to_idle() {
        let g = group(2);
        g[0].record_figures(queue(0, 0), 0, 1_000); // looked idle, but goes stale
        g[1].record_figures(queue(5, 5), 0, 10_000);
        let _busy: Vec<_> = (0..20).map(|_| g[0].start_request()).collect();
        let mut lq = new(0);
        // Fresh: e0's scraped queue (0) plus the 20 sent since = 20 > e1's 10.
        assert_eq!(lq.pick(&g, &PickContext::at(500)), Some(1));
        // Stale: e0 counts its own 20 in flight, still more than e1's 10.
        assert_eq!(lq.pick(&g, &PickContext::at(2_000)), Some(1));
    }

    #[test]
    fn weights_scale_the_queue() {
        let g = vec![
            Arc::new(BackendState::new("big", 4)),
            Arc::new(BackendState::new("small", 1)),
        ];
        g[0].record_figures(queue(6, 2), 0, 5_000); // 8 / 4 = 2 per unit
        g[1].record_figures(queue(2, 1), 0, 5_000); // 3 / 1
        let mut lq = new(0);
        assert_eq!(lq.pick(&g, &PickContext::at(1)), Some(0));
    }

    #[test]
    fn rotates_between_equal_queues() {
        let g = group(3);
        let mut lq = new(0);
        let picks: Vec<_> = (0..6)
            .map(|_| lq.pick(&g, &PickContext::at(0)).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }
}
