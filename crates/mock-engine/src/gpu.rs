//! Simulated GPU figures, exported under NVIDIA DCGM exporter names.
//!
//! One GPU with a framebuffer of `--gpu-memory-mib` MiB. Utilisation follows the batch:
//! `running / max_concurrent x 100`, capped at 100. Framebuffer use follows the KV cache:
//! the model weights hold a fixed [`WEIGHTS_SHARE`] of the framebuffer and the KV cache up
//! to [`KV_SHARE`] of it in proportion to its usage, so an idle engine shows 40 % used and
//! a full KV cache 90 % (vLLM's default `gpu_memory_utilization`); the rest is free.

/// Share of the framebuffer taken by the model weights, always.
pub(crate) const WEIGHTS_SHARE: f64 = 0.4;
/// Share of the framebuffer taken by a full KV cache.
pub(crate) const KV_SHARE: f64 = 0.5;

/// One reading of the simulated GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GpuFigures {
    /// `DCGM_FI_DEV_GPU_UTIL`: percent, 0..=100.
    pub(crate) util_percent: u64,
    /// `DCGM_FI_DEV_FB_USED`: MiB.
    pub(crate) fb_used_mib: u64,
    /// `DCGM_FI_DEV_FB_FREE`: MiB.
    pub(crate) fb_free_mib: u64,
}

impl GpuFigures {
    /// The figures with `running` requests of `max_concurrent` slots, a KV-cache usage
    /// of `kv_usage` (0..=1) and a framebuffer of `memory_mib`.
    pub(crate) fn new(
        running: usize,
        max_concurrent: usize,
        kv_usage: f64,
        memory_mib: u64,
    ) -> Self {
        let slots = max_concurrent.max(1);
        let util_percent = (running.min(slots) as f64 / slots as f64 * 100.0).round() as u64;
        let kv_usage = if kv_usage.is_finite() {
            kv_usage.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let total = memory_mib as f64;
        let used = (total * (WEIGHTS_SHARE + KV_SHARE * kv_usage)).round() as u64;
        let fb_used_mib = used.min(memory_mib);
        Self {
            util_percent,
            fb_used_mib,
            fb_free_mib: memory_mib - fb_used_mib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilisation_follows_the_batch() {
        assert_eq!(GpuFigures::new(0, 16, 0.0, 100).util_percent, 0);
        assert_eq!(GpuFigures::new(4, 16, 0.0, 100).util_percent, 25);
        assert_eq!(GpuFigures::new(16, 16, 0.0, 100).util_percent, 100);
        assert_eq!(GpuFigures::new(20, 16, 0.0, 100).util_percent, 100);
        assert_eq!(GpuFigures::new(1, 3, 0.0, 100).util_percent, 33);
        assert_eq!(GpuFigures::new(1, 0, 0.0, 100).util_percent, 100);
    }

    #[test]
    fn framebuffer_follows_the_kv_cache() {
        let idle = GpuFigures::new(0, 16, 0.0, 81920);
        assert_eq!((idle.fb_used_mib, idle.fb_free_mib), (32768, 49152));
        let half = GpuFigures::new(0, 16, 0.5, 81920);
        assert_eq!((half.fb_used_mib, half.fb_free_mib), (53248, 28672));
        let full = GpuFigures::new(0, 16, 1.0, 81920);
        assert_eq!((full.fb_used_mib, full.fb_free_mib), (73728, 8192));
        let odd = GpuFigures::new(0, 16, 7.0, 1000);
        assert_eq!(odd.fb_used_mib + odd.fb_free_mib, 1000);
        assert_eq!(GpuFigures::new(0, 16, f64::NAN, 1000).fb_used_mib, 400);
        let none = GpuFigures::new(0, 16, 1.0, 0);
        assert_eq!((none.fb_used_mib, none.fb_free_mib), (0, 0));
    }
}
