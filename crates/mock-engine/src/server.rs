//! The accept loop, per-connection HTTP/1.1 serving and the engine handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::MockEngineArgs;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::routes::route;

/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A running mock engine.
///
/// Dropping the handle leaves the engine serving (until the runtime stops);
/// call [`MockEngineHandle::shutdown`] to stop it.
#[derive(Debug)]
pub struct MockEngineHandle {
    local_addr: SocketAddr,
    engine: Arc<Engine>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MockEngineHandle {
    /// The address the engine listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        Metrics::get(&self.engine.metrics.connections_accepted)
    }

    /// Completion requests served to the end so far (also exported as
    /// `vllm:request_success_total`).
    pub fn requests_served(&self) -> u64 {
        Metrics::get(&self.engine.metrics.requests_succeeded)
    }

    /// Requests currently generating (`vllm:num_requests_running`).
    pub fn requests_running(&self) -> usize {
        self.engine.scheduler.running()
    }

    /// Requests currently waiting for a slot (`vllm:num_requests_waiting`).
    pub fn requests_waiting(&self) -> usize {
        self.engine.scheduler.waiting()
    }

    /// Simulated KV-cache usage in `0.0..=1.0` (`vllm:kv_cache_usage_perc`).
    pub fn kv_cache_usage(&self) -> f64 {
        self.engine.scheduler.kv_usage()
    }

    /// Prompt tokens looked up in the prefix cache so far
    /// (`vllm:prefix_cache_queries_total`; 0 while the cache is disabled).
    pub fn prefix_cache_queries(&self) -> u64 {
        Metrics::get(&self.engine.metrics.prefix_cache_queries)
    }

    /// Prompt tokens found in the prefix cache so far (`vllm:prefix_cache_hits_total`):
    /// whole blocks only.
    pub fn prefix_cache_hits(&self) -> u64 {
        Metrics::get(&self.engine.metrics.prefix_cache_hits)
    }

    /// Blocks currently held in the prefix cache.
    pub fn prefix_cache_blocks(&self) -> usize {
        self.engine.prefix_cache.blocks()
    }

    /// Tokens generated so far, counted as they are produced
    /// (`vllm:generation_tokens_total`).
    pub fn generation_tokens(&self) -> u64 {
        Metrics::get(&self.engine.metrics.generation_tokens)
    }

    /// Hangs (`true`) or unhangs (`false`) the engine, as `POST /mock/hang` and
    /// `POST /mock/unhang` do. While hung no token is produced: running requests stall
    /// without failing, new ones take a slot (or queue) and produce nothing, and `/health`,
    /// `/v1/models` and `/metrics` answer as usual (`vllm:num_requests_running` above zero,
    /// `vllm:generation_tokens_total` frozen). Once `set_hung(true)` returns, no further
    /// token is counted until unhung; unhanging resumes generation.
    pub fn set_hung(&self, hung: bool) {
        self.engine.hang.set(hung);
    }

    /// Whether the engine is hung (see [`MockEngineHandle::set_hung`]).
    pub fn is_hung(&self) -> bool {
        self.engine.hang.is_hung()
    }

    /// Stops accepting, closes all connections (aborting in-flight requests)
    /// and waits for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Starts serving on `listener` (already listening) on the current runtime.
pub(crate) fn start(
    listener: TcpListener,
    args: &MockEngineArgs,
) -> std::io::Result<MockEngineHandle> {
    let local_addr = listener.local_addr()?;
    let engine = Engine::new(args, local_addr);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&engine), shutdown_rx));
    Ok(MockEngineHandle {
        local_addr,
        engine,
        shutdown,
        task,
    })
}

/// Resolves once shutdown is requested; never if the handle was dropped.
async fn shutdown_requested(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn accept_loop(listener: TcpListener, engine: Arc<Engine>, shutdown: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    let shutdown = shutdown_requested(shutdown);
    tokio::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    Metrics::add(&engine.metrics.connections_accepted, 1);
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        builder.clone(),
                        Arc::clone(&engine),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mock engine: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    builder: http1::Builder,
    engine: Arc<Engine>,
) {
    // Stream chunks are small: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let engine = Arc::clone(&engine);
        async move { Ok::<_, Infallible>(route(engine, req).await) }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "mock engine: connection ended with an error");
    }
}
