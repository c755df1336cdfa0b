//! Engine counters and their Prometheus text rendering (vLLM metric names).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::gpu::GpuFigures;
use crate::scheduler::Scheduler;

/// Monotonic engine counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) requests_succeeded: AtomicU64,
    pub(crate) prompt_tokens: AtomicU64,
    pub(crate) generation_tokens: AtomicU64,
    pub(crate) prefix_cache_queries: AtomicU64,
    pub(crate) prefix_cache_hits: AtomicU64,
}

impl Metrics {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Renders all metrics in the Prometheus text exposition format: the engine's under
    /// vLLM names with a `model_name` label, the GPU's under DCGM exporter names.
    pub(crate) fn render(&self, model: &str, scheduler: &Scheduler, gpu: &GpuFigures) -> String {
        let label = format!("{{model_name=\"{}\"}}", escape_label(model));
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: &str| {
            push_family(&mut out, name, kind, help, &label, value);
        };
        metric(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests currently running.",
            &scheduler.running().to_string(),
        );
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            &scheduler.waiting().to_string(),
        );
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            &format_float(scheduler.kv_usage()),
        );
        metric(
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            &Self::get(&self.prompt_tokens).to_string(),
        );
        metric(
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            &Self::get(&self.generation_tokens).to_string(),
        );
        metric(
            "vllm:prefix_cache_queries_total",
            "counter",
            "Prefix cache queries, in terms of number of queried tokens.",
            &Self::get(&self.prefix_cache_queries).to_string(),
        );
        metric(
            "vllm:prefix_cache_hits_total",
            "counter",
            "Prefix cache hits, in terms of number of cached tokens.",
            &Self::get(&self.prefix_cache_hits).to_string(),
        );
        metric(
            "vllm:request_success_total",
            "counter",
            "Count of successfully processed requests.",
            &Self::get(&self.requests_succeeded).to_string(),
        );
        for (name, help, value) in [
            (
                "DCGM_FI_DEV_GPU_UTIL",
                "GPU utilization (in %).",
                gpu.util_percent,
            ),
            (
                "DCGM_FI_DEV_FB_USED",
                "Framebuffer memory used (in MiB).",
                gpu.fb_used_mib,
            ),
            (
                "DCGM_FI_DEV_FB_FREE",
                "Framebuffer memory free (in MiB).",
                gpu.fb_free_mib,
            ),
        ] {
            let value = value.to_string();
            push_family(&mut out, name, "gauge", help, GPU_LABELS, &value);
        }
        out
    }
}

/// Labels of the simulated GPU's samples, as the DCGM exporter sets them.
const GPU_LABELS: &str = "{gpu=\"0\",UUID=\"GPU-00000000-0000-0000-0000-000000000000\",device=\"nvidia0\",modelName=\"switchyard mock GPU\"}";

/// Appends one metric family of a single sample.
fn push_family(out: &mut String, name: &str, kind: &str, help: &str, labels: &str, value: &str) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}\n"
    );
}

fn format_float(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else {
        format!("{v}")
    }
}

fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_families() {
        let m = Metrics::default();
        Metrics::add(&m.prompt_tokens, 7);
        let s = Scheduler::new(1, 1, 10);
        let text = m.render("m\"x", &s, &GpuFigures::new(0, 1, 0.0, 1000));
        assert!(text.contains("# TYPE vllm:num_requests_running gauge\n"));
        assert!(text.contains("vllm:num_requests_running{model_name=\"m\\\"x\"} 0\n"));
        assert!(text.contains("vllm:prompt_tokens_total{model_name=\"m\\\"x\"} 7\n"));
        assert!(text.contains("# TYPE vllm:request_success_total counter\n"));
        assert!(text.contains("vllm:kv_cache_usage_perc{model_name=\"m\\\"x\"} 0\n"));
        assert!(text.contains("# TYPE vllm:prefix_cache_queries_total counter\n"));
        assert!(text.contains("# TYPE vllm:prefix_cache_hits_total counter\n"));
        assert!(text.contains("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"));
        assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\","));
        assert!(text.contains("# TYPE DCGM_FI_DEV_FB_USED gauge\n"));
        assert!(text.contains("# TYPE DCGM_FI_DEV_FB_FREE gauge\n"));
        assert!(text.contains("\"} 400\n") && text.contains("\"} 600\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 11);
    }
}
