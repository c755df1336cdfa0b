//! An OpenAI-compatible fake inference engine, for tests, demos and benchmarks.
//!
//! It serves `POST /v1/chat/completions` and `POST /v1/completions` (streamed
//! as server-sent events or not), `GET /v1/models`, `GET /health` and
//! `GET /metrics` (Prometheus text with vLLM metric names, plus a simulated
//! GPU under NVIDIA DCGM exporter names, see `--gpu-memory-mib`) over
//! HTTP/1.1 with keep-alive. Generation is simulated: a request waits for one of
//! `max_concurrent` slots (in a FIFO queue of at most `max_waiting`, beyond
//! which it gets a 503), then the first token comes after `ttft_ms` plus the
//! prefill time of its prompt tokens not in the prefix cache (at
//! `prefill_tokens_per_sec`), and the next ones at `tokens_per_sec`, slowed
//! by `batch_slowdown` as more requests run. The generated text is
//! deterministic (see [`tokens`]), and so is the whole response body: `id` is
//! derived from the request and `created` is fixed.
//!
//! The prefix cache is a bounded LRU of prompt blocks of
//! `prefix_block_tokens` tokens, each named by a hash chained with the
//! previous block's; a request's cached prefix is its leading blocks found
//! there (`vllm:prefix_cache_hits_total` over
//! `vllm:prefix_cache_queries_total`), and its blocks are cached once it is
//! prefilled.
//!
//! `POST /mock/hang` and `POST /mock/unhang` (both 204), or
//! [`MockEngineHandle::set_hung`], simulate an engine stuck mid-generation:
//! no token is produced, running requests stall without failing and new ones
//! take a slot or queue, while `/health`, `/v1/models` and `/metrics` answer
//! as usual (requests running, `vllm:generation_tokens_total` frozen).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use switchyard_mock_engine::{spawn_on, MockEngineArgs};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let engine = spawn_on(listener, MockEngineArgs { ttft_ms: 0, ..Default::default() }).await?;
//! println!("serving on {}", engine.local_addr());
//! engine.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod completions;
mod config;
mod engine;
mod gpu;
mod hang;
mod metrics;
mod pacing;
mod prefix_cache;
mod request;
mod response;
mod routes;
mod scheduler;
mod schema;
mod server;
pub mod tokens;

pub use config::{MockEngineArgs, DEFAULT_MAX_BODY_BYTES, DEFAULT_MODEL};
pub use server::MockEngineHandle;

/// Entry points of the mock engine, as associated functions (the free
/// functions [`spawn`], [`spawn_on`] and [`run`] do the same).
#[derive(Debug, Clone, Copy, Default)]
pub struct MockEngine;

impl MockEngine {
    /// See [`spawn`].
    pub async fn spawn(args: MockEngineArgs) -> std::io::Result<MockEngineHandle> {
        spawn(args).await
    }

    /// See [`spawn_on`].
    pub async fn spawn_on(
        listener: tokio::net::TcpListener,
        args: MockEngineArgs,
    ) -> std::io::Result<MockEngineHandle> {
        spawn_on(listener, args).await
    }

    /// See [`run`].
    pub async fn run(args: MockEngineArgs) -> std::io::Result<()> {
        run(args).await
    }
}

/// Binds `args.listen` and starts serving on the current tokio runtime;
/// returns once listening.
pub async fn spawn(args: MockEngineArgs) -> std::io::Result<MockEngineHandle> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    spawn_on(listener, args).await
}

/// Serves on an already-bound listener (e.g. bound to port 0 by a test);
/// `args.listen` is ignored.
pub async fn spawn_on(
    listener: tokio::net::TcpListener,
    args: MockEngineArgs,
) -> std::io::Result<MockEngineHandle> {
    server::start(listener, &args)
}

/// Serves until Ctrl-C or SIGTERM, logging the listen address with `tracing`.
pub async fn run(args: MockEngineArgs) -> std::io::Result<()> {
    let handle = spawn(args.clone()).await?;
    tracing::info!(
        listen = %handle.local_addr(),
        models = ?args.models,
        ttft_ms = args.ttft_ms,
        tokens_per_sec = args.tokens_per_sec,
        prefill_tokens_per_sec = args.prefill_tokens_per_sec,
        batch_slowdown = args.batch_slowdown,
        max_concurrent = args.max_concurrent,
        prefix_cache_blocks = args.prefix_cache_blocks,
        "mock engine listening"
    );
    let signal = wait_for_signal().await;
    tracing::info!("mock engine shutting down");
    handle.shutdown().await;
    signal
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
