//! Shared state of one running engine, derived from its arguments.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;

use crate::config::{MockEngineArgs, DEFAULT_MODEL};
use crate::metrics::Metrics;
use crate::prefix_cache::PrefixCache;
use crate::response::ApiError;
use crate::scheduler::Scheduler;

/// Longest simulated per-token interval (keeps time arithmetic far from overflow).
const MAX_TOKEN_INTERVAL: Duration = Duration::from_secs(3600);

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
    pub(crate) token_interval: Duration,
    pub(crate) default_max_tokens: u32,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_waiting: usize,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) prefix_cache: PrefixCache,
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
            default_max_tokens: args.default_max_tokens.max(1),
            max_body_bytes: args.max_body_bytes,
            max_waiting: args.max_waiting,
            scheduler: Scheduler::new(args.max_concurrent, args.max_waiting, args.kv_cache_tokens),
            prefix_cache: PrefixCache::new(args.prefix_block_tokens, args.prefix_cache_blocks),
            metrics: Metrics::default(),
        })
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

/// Time between two tokens of one request; zero for no delay.
fn token_interval(tokens_per_sec: f64) -> Duration {
    if !(tokens_per_sec.is_finite() && tokens_per_sec > 0.0) {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(1.0 / tokens_per_sec)
        .unwrap_or(MAX_TOKEN_INTERVAL)
        .min(MAX_TOKEN_INTERVAL)
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
    fn intervals() {
        assert_eq!(token_interval(200.0), Duration::from_millis(5));
        assert_eq!(token_interval(0.0), Duration::ZERO);
        assert_eq!(token_interval(-1.0), Duration::ZERO);
        assert_eq!(token_interval(f64::NAN), Duration::ZERO);
        assert_eq!(token_interval(f64::INFINITY), Duration::ZERO);
        assert_eq!(token_interval(1e-300), MAX_TOKEN_INTERVAL);
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
