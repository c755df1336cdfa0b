//! Shared state of one running engine, derived from its arguments.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;

use crate::config::{MockEngineArgs, DEFAULT_MODEL};
use crate::gpu::GpuFigures;
use crate::hang::HangSwitch;
use crate::metrics::Metrics;
use crate::pacing::{batch_interval, prefill_time, token_interval};
use crate::prefix_cache::PrefixCache;
use crate::response::ApiError;
use crate::scheduler::Scheduler;

/// Everything request handlers share.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Served models; never empty, the first is the default.
    pub(crate) models: Vec<String>,
    /// Engine name (or listen address), used as `system_fingerprint`.
    pub(crate) label: String,
    /// Value of the `x-mock-engine` header.
    pub(crate) header_value: HeaderValue,
    pub(crate) ttft: Duration,
    /// Per-token interval of a request decoding alone.
    token_interval: Duration,
    prefill_tokens_per_sec: f64,
    batch_slowdown: f64,
    max_concurrent: usize,
    gpu_memory_mib: u64,
    pub(crate) default_max_tokens: u32,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_waiting: usize,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) prefix_cache: PrefixCache,
    pub(crate) hang: HangSwitch,
    pub(crate) metrics: Metrics,
}

impl Engine {
    /// Builds the engine state for `args`, serving on `local_addr`.
    pub(crate) fn new(args: &MockEngineArgs, local_addr: SocketAddr) -> Arc<Self> {
        let models = if args.models.is_empty() {
            vec![DEFAULT_MODEL.to_string()]
        } else {
            args.models.clone()
        };
        let label = args.name.clone().unwrap_or_else(|| local_addr.to_string());
        Arc::new(Self {
            models,
            header_value: header_value(&label),
            label,
            ttft: Duration::from_millis(args.ttft_ms),
            token_interval: token_interval(args.tokens_per_sec),
            prefill_tokens_per_sec: args.prefill_tokens_per_sec,
            batch_slowdown: args.batch_slowdown,
            max_concurrent: args.max_concurrent.max(1),
            gpu_memory_mib: args.gpu_memory_mib,
            default_max_tokens: args.default_max_tokens.max(1),
            max_body_bytes: args.max_body_bytes,
            max_waiting: args.max_waiting,
            scheduler: Scheduler::new(args.max_concurrent, args.max_waiting, args.kv_cache_tokens),
            prefix_cache: PrefixCache::new(args.prefix_block_tokens, args.prefix_cache_blocks),
            hang: HangSwitch::new(),
            metrics: Metrics::default(),
        })
    }

    /// Delay of the first token of a request holding a slot, whose prompt has `uncached`
    /// tokens not in the prefix cache: the TTFT plus their prefill time.
    pub(crate) fn first_token_delay(&self, uncached: u64) -> Duration {
        self.ttft
            .saturating_add(prefill_time(uncached, self.prefill_tokens_per_sec))
    }

    /// Interval to the next token of a running request, given the batch running now.
    pub(crate) fn token_interval_now(&self) -> Duration {
        batch_interval(
            self.token_interval,
            self.batch_slowdown,
            self.scheduler.running(),
            self.max_concurrent,
        )
    }

    /// The simulated GPU's figures now.
    pub(crate) fn gpu(&self) -> GpuFigures {
        GpuFigures::new(
            self.scheduler.running(),
            self.max_concurrent,
            self.scheduler.kv_usage(),
            self.gpu_memory_mib,
        )
    }

    /// The model a request asked for, or the default one; 404 if not served.
    pub(crate) fn resolve_model(&self, requested: Option<&str>) -> Result<String, ApiError> {
        match requested {
            None => Ok(self.models[0].clone()),
            Some(m) if self.models.iter().any(|s| s == m) => Ok(m.to_string()),
            Some(m) => Err(ApiError::model_not_found(m, &self.models)),
        }
    }
}

/// A header value for `label`, dropping characters a header cannot carry.
fn header_value(label: &str) -> HeaderValue {
    let clean: String = label
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    match clean.trim() {
        "" => HeaderValue::from_static("mock-engine"),
        v => HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("mock-engine")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_token_delay_adds_the_prefill() {
        let args = MockEngineArgs {
            ttft_ms: 10,
            prefill_tokens_per_sec: 1000.0,
            ..Default::default()
        };
        let e = Engine::new(&args, "127.0.0.1:1".parse().unwrap());
        assert_eq!(e.first_token_delay(0), Duration::from_millis(10));
        assert_eq!(e.first_token_delay(500), Duration::from_millis(510));
        let e = Engine::new(&MockEngineArgs::default(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(e.first_token_delay(10_000), Duration::from_millis(50));
    }

    #[tokio::test]
    async fn token_interval_follows_the_running_batch() {
        let args = MockEngineArgs {
            tokens_per_sec: 100.0,
            batch_slowdown: 1.0,
            max_concurrent: 4,
            ..Default::default()
        };
        let e = Engine::new(&args, "127.0.0.1:1".parse().unwrap());
        assert_eq!(e.token_interval_now(), Duration::from_millis(10));
        let _a = e.scheduler.acquire().await.unwrap();
        assert_eq!(e.token_interval_now(), Duration::from_millis(10));
        let _b = e.scheduler.acquire().await.unwrap();
        let _c = e.scheduler.acquire().await.unwrap();
        // 10 ms x (1 + 1.0 x 2 / 4)
        assert_eq!(e.token_interval_now(), Duration::from_millis(15));
    }

    #[test]
    fn header_values_are_sanitized() {
        assert_eq!(header_value("e1"), "e1");
        assert_eq!(header_value("a\nb"), "ab");
        assert_eq!(header_value("\u{e9}"), "mock-engine");
    }

    #[test]
    fn models_resolve() {
        let args = MockEngineArgs {
            models: vec![],
            ..Default::default()
        };
        let e = Engine::new(&args, "127.0.0.1:1".parse().unwrap());
        assert_eq!(e.resolve_model(None).unwrap(), DEFAULT_MODEL);
        assert!(e.resolve_model(Some("nope")).is_err());
        assert_eq!(e.label, "127.0.0.1:1");
    }
}
