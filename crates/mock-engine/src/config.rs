//! Command-line / programmatic configuration of a mock engine.

use std::net::SocketAddr;

/// Default cap on request bodies: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Default model name served when none is configured.
pub const DEFAULT_MODEL: &str = "mock-llama";

/// Configuration of a mock inference engine.
///
/// Usable both as a clap argument group (`switchyard mock-engine --listen ...`)
/// and programmatically, typically as
/// `MockEngineArgs { ttft_ms: 0, ..Default::default() }`.
#[derive(Debug, Clone, clap::Args)]
pub struct MockEngineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Served model name; repeatable. The first one is the default for
    /// requests that name no model and the `model_name` metrics label.
    #[arg(long = "model", default_value = DEFAULT_MODEL)]
    pub models: Vec<String>,

    /// Simulated fixed time to first token, in milliseconds (after a slot is obtained);
    /// the prefill time of `--prefill-tokens-per-sec` comes on top.
    #[arg(long, default_value_t = 50)]
    pub ttft_ms: u64,

    /// Simulated decode speed of one request alone, in tokens per second (see
    /// `--batch-slowdown` for a batch). Zero, negative or non-finite values mean "no
    /// decode delay".
    #[arg(long, default_value_t = 200.0)]
    pub tokens_per_sec: f64,

    /// Simulated prefill speed, in prompt tokens per second: the first token comes
    /// `--ttft-ms` plus (prompt tokens not in the prefix cache / this speed) after the
    /// request obtains a slot. 0 (the default), negative or non-finite values mean "no
    /// prefill delay".
    #[arg(long, default_value_t = 0.0)]
    pub prefill_tokens_per_sec: f64,

    /// How much decoding slows as the batch grows: each token of a request comes
    /// `1 / --tokens-per-sec x (1 + SLOWDOWN x (running - 1) / --max-concurrent)` seconds
    /// after the previous one, `running` counting the requests holding a slot when the token
    /// is produced (a full batch decodes about 1 + SLOWDOWN times slower than one request
    /// alone). 0 (the default) means no slowdown.
    #[arg(long, default_value_t = 0.0)]
    pub batch_slowdown: f64,

    /// Number of requests generating at the same time (running slots, at least 1);
    /// further requests wait in a FIFO queue.
    #[arg(long, default_value_t = 16)]
    pub max_concurrent: usize,

    /// Bound of the waiting queue; beyond it requests get a 503 with `Retry-After: 1`.
    #[arg(long, default_value_t = 256)]
    pub max_waiting: usize,

    /// Simulated KV-cache capacity in tokens. Usage is the sum over running
    /// requests of (prompt tokens + tokens generated so far) divided by this, capped at 1.0.
    #[arg(long, default_value_t = 32768)]
    pub kv_cache_tokens: u64,

    /// Number of tokens generated when a request gives no `max_tokens`.
    #[arg(long, default_value_t = 16)]
    pub default_max_tokens: u32,

    /// Engine name, echoed in the `x-mock-engine` response header and in
    /// `system_fingerprint` (defaults to the listen address).
    #[arg(long)]
    pub name: Option<String>,

    /// Maximum accepted request body size in bytes; larger bodies get a 413.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Tokens per block of the simulated prefix cache (at least 1). Prompts are cut into
    /// blocks of this many tokens; only full blocks are cached.
    #[arg(long, default_value_t = 16)]
    pub prefix_block_tokens: usize,

    /// Capacity of the simulated prefix cache, in blocks, the least recently used evicted
    /// first; 0 disables it. A request's cached prefix is its leading blocks found in the
    /// cache (counted in `vllm:prefix_cache_hits_total`); its blocks are cached once it is
    /// prefilled.
    #[arg(long, default_value_t = 2048)]
    pub prefix_cache_blocks: usize,

    /// Framebuffer of the simulated GPU, in MiB, reported as `DCGM_FI_DEV_FB_USED` and
    /// `DCGM_FI_DEV_FB_FREE`: the model weights always use 40 % of it and the KV cache up
    /// to 50 % more in proportion to its usage. `DCGM_FI_DEV_GPU_UTIL` is
    /// running requests / `--max-concurrent` in percent.
    #[arg(long, default_value_t = 81920)]
    pub gpu_memory_mib: u64,
}

impl Default for MockEngineArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            models: vec![DEFAULT_MODEL.to_string()],
            ttft_ms: 50,
            tokens_per_sec: 200.0,
            prefill_tokens_per_sec: 0.0,
            batch_slowdown: 0.0,
            max_concurrent: 16,
            max_waiting: 256,
            kv_cache_tokens: 32768,
            default_max_tokens: 16,
            name: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            prefix_block_tokens: 16,
            prefix_cache_blocks: 2048,
            gpu_memory_mib: 81920,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MockEngineArgs,
    }

    #[test]
    fn clap_defaults_match_default_impl() {
        let parsed = Cli::try_parse_from(["x"]).unwrap().args;
        let default = MockEngineArgs::default();
        assert_eq!(parsed.listen, default.listen);
        assert_eq!(parsed.models, default.models);
        assert_eq!(parsed.ttft_ms, default.ttft_ms);
        assert_eq!(parsed.tokens_per_sec, default.tokens_per_sec);
        assert_eq!(
            parsed.prefill_tokens_per_sec,
            default.prefill_tokens_per_sec
        );
        assert_eq!(parsed.batch_slowdown, default.batch_slowdown);
        assert_eq!(parsed.max_concurrent, default.max_concurrent);
        assert_eq!(parsed.max_waiting, default.max_waiting);
        assert_eq!(parsed.kv_cache_tokens, default.kv_cache_tokens);
        assert_eq!(parsed.default_max_tokens, default.default_max_tokens);
        assert_eq!(parsed.name, default.name);
        assert_eq!(parsed.max_body_bytes, default.max_body_bytes);
        assert_eq!(parsed.prefix_block_tokens, default.prefix_block_tokens);
        assert_eq!(parsed.prefix_cache_blocks, default.prefix_cache_blocks);
        assert_eq!(parsed.gpu_memory_mib, default.gpu_memory_mib);
    }

    #[test]
    fn cache_and_timing_flags() {
        let parsed = Cli::try_parse_from([
            "x",
            "--prefix-block-tokens",
            "32",
            "--prefix-cache-blocks",
            "0",
            "--prefill-tokens-per-sec",
            "5000",
            "--batch-slowdown",
            "0.5",
            "--gpu-memory-mib",
            "40960",
        ])
        .unwrap()
        .args;
        assert_eq!(parsed.prefix_block_tokens, 32);
        assert_eq!(parsed.prefix_cache_blocks, 0);
        assert_eq!(parsed.prefill_tokens_per_sec, 5000.0);
        assert_eq!(parsed.batch_slowdown, 0.5);
        assert_eq!(parsed.gpu_memory_mib, 40960);
    }

    #[test]
    fn model_is_repeatable() {
        let parsed = Cli::try_parse_from(["x", "--model", "a", "--model", "b", "--name", "e1"])
            .unwrap()
            .args;
        assert_eq!(parsed.models, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(parsed.name.as_deref(), Some("e1"));
    }
}
