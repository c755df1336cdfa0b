//! GPU-aware balancing: weights scaled by the headroom an engine reports.
//!
//! From the scraped figures (see [`BackendState::figures`]) an engine's headroom is
//! `1 - max(KV-cache usage, GPU utilisation)`, where GPU memory in use stands in for KV-cache
//! usage on engines that report none (only an exporter's figures). Its cost is `(queue + 1) / (weight x headroom)`
//! with the queue as `least_queue` estimates it, so a busy or nearly full engine looks as
//! expensive as it is. Engines at or above [`KV_SATURATION`] KV-cache usage are avoided while
//! any other is eligible: a full cache means preemption and recomputation. An engine without
//! fresh figures has full headroom but its queue is switchyard's own in-flight count: unknown
//! is never read as idle. Ties go round the group in turn.

use std::sync::Arc;

use crate::sample::min_by_key;
use crate::{BackendState, Balancer, PickContext, SplitMix64};

/// KV-cache usage at which an engine counts as saturated.
pub const KV_SATURATION: f64 = 0.95;
/// The least headroom assumed (keeps the cost finite for a fully busy engine).
pub const MIN_HEADROOM: f64 = 0.02;

/// Registered as `gpu`.
pub fn new(seed: u64) -> Box<dyn Balancer> {
    Box::new(Gpu {
        rng: SplitMix64::new(seed),
        ..Gpu::default()
    })
}

/// GPU balancer state: where the tie-breaking scan starts, and the sampling of large groups
/// (see [`crate::sample`]).
#[derive(Debug, Default, Clone)]
pub struct Gpu {
    next: usize,
    rng: SplitMix64,
    scratch: Vec<usize>,
}

/// The cost of one more request on `b` at `now_ms`, and whether its KV cache is saturated.
pub fn cost(b: &BackendState, now_ms: u64) -> (f64, bool) {
    let (kv, util) = match b.figures(now_ms) {
        // Framebuffer memory stands in for the KV cache when the engine reports no KV figure
        // (an engine behind NVIDIA's DCGM exporter only); engines that preallocate their
        // cache (vLLM) show constant memory, so it never overrides a KV figure.
        Some(f) => (
            f.kv_cache_usage.or(f.gpu_memory_usage).unwrap_or(0.0),
            f.gpu_util.unwrap_or(0.0),
        ),
        None => (0.0, 0.0),
    };
    let headroom = (1.0 - kv.max(util)).max(MIN_HEADROOM);
    let queue = b.queue_estimate(now_ms) as f64;
    let cost = (queue + 1.0) / (f64::from(b.weight()) * headroom);
    (cost, kv >= KV_SATURATION)
}

impl Balancer for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn explain(
        &self,
        backends: &[Arc<BackendState>],
        chosen: usize,
        ctx: &PickContext<'_>,
    ) -> String {
        let b = &backends[chosen];
        let (c, saturated) = cost(b, ctx.now_ms);
        let f = b.figures(ctx.now_ms).unwrap_or_default();
        let ratio = |v: Option<f64>| v.map_or("unknown".to_string(), |v| format!("{v:.2}"));
        format!(
            "cost={c:.2} queue={} kv_cache={} gpu_util={} saturated={saturated}",
            b.queue_estimate(ctx.now_ms),
            ratio(f.kv_cache_usage),
            ratio(f.gpu_util)
        )
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        // Unsaturated engines first (false < true), then the cheaper.
        min_by_key(
            backends,
            ctx,
            &mut self.next,
            &mut self.rng,
            &mut self.scratch,
            |b| {
                let (c, saturated) = cost(b, ctx.now_ms);
                (saturated, c)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoadFigures;

    fn engine(name: &str, kv: f64, util: f64, running: u64) -> Arc<BackendState> {
        let b = Arc::new(BackendState::new(name, 1));
        b.record_figures(
            LoadFigures {
                waiting: Some(0),
                running: Some(running),
                kv_cache_usage: Some(kv),
                gpu_util: Some(util),
                ..LoadFigures::default()
            },
            0,
            10_000,
        );
        b
    }

    #[test]
    fn prefers_headroom() {
        let g = vec![engine("busy", 0.8, 0.9, 4), engine("free", 0.2, 0.3, 4)];
        assert_eq!(new(0).pick(&g, &PickContext::at(1)), Some(1));
    }

    #[test]
    fn avoids_a_saturated_cache_even_if_its_queue_is_short() {
        let g = vec![engine("full", 0.97, 0.1, 0), engine("ok", 0.5, 0.5, 10)];
        assert_eq!(new(0).pick(&g, &PickContext::at(1)), Some(1));
        // With nothing else eligible, the saturated engine still serves.
        g[1].mark_down_until(u64::MAX);
        assert_eq!(new(0).pick(&g, &PickContext::at(1)), Some(0));
    }

    #[test]
    fn gpu_memory_stands_in_for_an_unreported_kv_cache() {
        let exporter_only = |name: &str, memory: f64| {
            let b = Arc::new(BackendState::new(name, 1));
            let f = LoadFigures {
                waiting: Some(0),
                running: Some(2),
                gpu_memory_usage: Some(memory),
                ..LoadFigures::default()
            };
            b.record_figures(f, 0, 10_000);
            b
        };
        let g = vec![exporter_only("full", 0.99), exporter_only("roomy", 0.4)];
        assert_eq!(new(0).pick(&g, &PickContext::at(1)), Some(1));
        // A KV figure wins over memory (engines that preallocate show constant memory).
        let b = engine("kv", 0.1, 0.1, 2);
        let mut f = b.figures(1).unwrap();
        f.gpu_memory_usage = Some(0.95);
        b.record_figures(f, 0, 10_000);
        assert!(!cost(&b, 1).1, "not saturated: KV usage is 0.1");
    }

    #[test]
    fn queue_still_counts() {
        let g = vec![engine("a", 0.3, 0.3, 20), engine("b", 0.5, 0.5, 1)];
        // a: 21 / 0.7 = 30; b: 2 / 0.5 = 4.
        assert_eq!(new(0).pick(&g, &PickContext::at(1)), Some(1));
    }

    #[test]
    fn stale_figures_are_not_idle() {
        let g = vec![engine("stale", 0.0, 0.0, 0), engine("fresh", 0.6, 0.6, 1)];
        let _held: Vec<_> = (0..10).map(|_| g[0].start_request()).collect();
        // Once stale, "stale" has full headroom but its 10 in flight: 11 > 2 / 0.4 = 5.
        assert_eq!(new(0).pick(&g, &PickContext::at(20_000)), Some(1));
    }
}
