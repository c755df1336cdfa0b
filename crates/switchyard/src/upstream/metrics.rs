//! Reading an engine's load from its Prometheus text metrics (sans-io).
//!
//! Engines name the same figure differently; an alias table maps them onto switchyard's five:
//! requests waiting, requests running, KV-cache usage, GPU utilisation and the generated-token
//! counter. Counts are summed over label sets (an engine serving two models reports a queue
//! per model); ratios take the highest (the fullest cache, the busiest GPU). A figure an
//! engine does not report stays unknown, never zero.

use switchyard_balance::LoadFigures;

/// Metric names giving the number of requests waiting in the engine's queue.
pub const WAITING: &[&str] = &[
    "vllm:num_requests_waiting",
    "sglang:num_queue_reqs",
    "tgi_queue_size",
    "nv_inference_pending_request_count",
];
/// Metric names giving the number of requests running.
pub const RUNNING: &[&str] = &[
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "tgi_batch_current_size",
];
/// Metric names giving KV-cache usage as a ratio 0..1 (vLLM's new and old names, SGLang's).
pub const KV_CACHE: &[&str] = &[
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
];
/// Metric names giving GPU utilisation in percent (NVIDIA's DCGM exporter).
pub const GPU_UTIL_PERCENT: &[&str] = &["DCGM_FI_DEV_GPU_UTIL"];
/// Metric names giving GPU framebuffer memory used and free, in MiB (DCGM); their sums over
/// the GPUs give the memory usage `used / (used + free)`.
pub const GPU_MEMORY_USED_MIB: &[&str] = &["DCGM_FI_DEV_FB_USED"];
/// See [`GPU_MEMORY_USED_MIB`].
pub const GPU_MEMORY_FREE_MIB: &[&str] = &["DCGM_FI_DEV_FB_FREE"];
/// Counters of tokens generated, advancing with every decoded token (the progress check).
/// TGI has none: its `tgi_request_generated_tokens` histogram grows only when a request
/// finishes, so a long generation would read as a stall.
pub const GENERATION_TOKENS: &[&str] = &[
    "vllm:generation_tokens_total",
    "sglang:generation_tokens_total",
];

/// The figures in a Prometheus text exposition. Malformed lines are skipped.
pub fn parse(text: &str) -> LoadFigures {
    let mut f = LoadFigures::default();
    let (mut fb_used, mut fb_free) = (None::<f64>, None::<f64>);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = sample(line) else {
            continue;
        };
        if !value.is_finite() || value < 0.0 {
            continue;
        }
        if WAITING.contains(&name) {
            f.waiting = Some(f.waiting.unwrap_or(0) + value.round() as u64);
        } else if RUNNING.contains(&name) {
            f.running = Some(f.running.unwrap_or(0) + value.round() as u64);
        } else if KV_CACHE.contains(&name) {
            f.kv_cache_usage = Some(f.kv_cache_usage.unwrap_or(0.0).max(value.min(1.0)));
        } else if GPU_UTIL_PERCENT.contains(&name) {
            let v = (value / 100.0).min(1.0);
            f.gpu_util = Some(f.gpu_util.unwrap_or(0.0).max(v));
        } else if GPU_MEMORY_USED_MIB.contains(&name) {
            fb_used = Some(fb_used.unwrap_or(0.0) + value);
        } else if GPU_MEMORY_FREE_MIB.contains(&name) {
            fb_free = Some(fb_free.unwrap_or(0.0) + value);
        } else if GENERATION_TOKENS.contains(&name) {
            let n = value.round() as u64;
            f.generation_tokens = Some(f.generation_tokens.unwrap_or(0).saturating_add(n));
        }
    }
    if let (Some(used), Some(free)) = (fb_used, fb_free) {
        if used + free > 0.0 {
            f.gpu_memory_usage = Some((used / (used + free)).min(1.0));
        }
    }
    f
}

/// Splits `name{labels} value [timestamp]` into the name and the value.
fn sample(line: &str) -> Option<(&str, f64)> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let close = closing_brace(rest)?;
        rest = &rest[close + 1..];
    }
    let value = rest.split_ascii_whitespace().next()?;
    Some((name, value.parse().ok()?))
}

/// The index of the `}` that ends a label set starting at `s[0] == '{'` (quotes respected).
fn closing_brace(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_figures() {
        let text = r#"# HELP vllm:num_requests_running Number of requests running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama"} 3
vllm:num_requests_waiting{model_name="llama"} 5.0
vllm:num_requests_waiting{model_name="mistral"} 2
vllm:kv_cache_usage_perc{model_name="llama"} 0.42
vllm:prompt_tokens_total{model_name="llama"} 1234
"#;
        let f = parse(text);
        assert_eq!(f.running, Some(3));
        assert_eq!(f.waiting, Some(7));
        assert_eq!(f.kv_cache_usage, Some(0.42));
        assert_eq!(f.gpu_util, None);
        assert_eq!(f.generation_tokens, None);
    }

    #[test]
    fn generated_token_counters() {
        let vllm = "# TYPE vllm:generation_tokens_total counter\n\
                    vllm:generation_tokens_total{model_name=\"a\"} 1200.0\n\
                    vllm:generation_tokens_total{model_name=\"b\"} 34\n\
                    vllm:generation_tokens_created{model_name=\"a\"} 1.7e9\n";
        assert_eq!(parse(vllm).generation_tokens, Some(1234));
        let sglang = "sglang:generation_tokens_total{model_name=\"m\"} 7.557572e+06\n";
        assert_eq!(parse(sglang).generation_tokens, Some(7_557_572));
        // Counters too large for u64 saturate rather than wrap.
        let huge = "vllm:generation_tokens_total 1e30\nvllm:generation_tokens_total 5\n";
        assert_eq!(parse(huge).generation_tokens, Some(u64::MAX));
        let tgi = "tgi_request_generated_tokens_sum 99\n";
        assert_eq!(parse(tgi).generation_tokens, None);
    }

    #[test]
    fn other_engines_and_dcgm() {
        let sglang =
            "sglang:num_queue_reqs{x=\"a\"} 4\nsglang:num_running_reqs 8\nsglang:token_usage 0.9\n";
        let f = parse(sglang);
        assert_eq!(
            (f.waiting, f.running, f.kv_cache_usage),
            (Some(4), Some(8), Some(0.9))
        );
        let tgi = "tgi_queue_size 6\ntgi_batch_current_size 2\n";
        assert_eq!(parse(tgi).waiting, Some(6));
        let old_vllm = "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.7\n";
        assert_eq!(parse(old_vllm).kv_cache_usage, Some(0.7));
        let triton = "nv_inference_pending_request_count{model=\"m\",version=\"1\"} 9\n";
        assert_eq!(parse(triton).waiting, Some(9));
        let dcgm = "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 35\nDCGM_FI_DEV_GPU_UTIL{gpu=\"1\"} 80\n";
        assert_eq!(parse(dcgm).gpu_util, Some(0.8));
        let fb = "DCGM_FI_DEV_FB_USED{gpu=\"0\"} 30000\nDCGM_FI_DEV_FB_FREE{gpu=\"0\"} 50000\n\
                  DCGM_FI_DEV_FB_USED{gpu=\"1\"} 50000\nDCGM_FI_DEV_FB_FREE{gpu=\"1\"} 30000\n";
        assert_eq!(parse(fb).gpu_memory_usage, Some(0.5));
        // Used without free says nothing about the share.
        assert_eq!(parse("DCGM_FI_DEV_FB_USED 100\n").gpu_memory_usage, None);
    }

    #[test]
    fn tricky_lines() {
        let text = "vllm:num_requests_waiting{model_name=\"a}b\",x=\"q\\\"\"} 3 1700000000000\n\
                    vllm:num_requests_running NaN\n\
                    vllm:num_requests_running{broken 4\n\
                    garbage\n";
        let f = parse(text);
        assert_eq!(f.waiting, Some(3));
        assert_eq!(f.running, None);
        assert_eq!(parse(""), LoadFigures::default());
    }
}
