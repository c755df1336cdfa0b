//! The scraper: reads each backend's `metrics` endpoint every `metrics_interval` and stores
//! the figures in its shared state, where balancers read them.
//!
//! It runs on a thread of its own (a current-thread runtime), off the data plane. One scrape is
//! a fresh connection, a GET, and a body of at most [`MAX_BODY`] bytes, all within
//! `metrics_timeout`; a failed scrape leaves the previous figures to go stale after
//! `metrics_max_age`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::metrics;
use crate::server::Shared;

/// Largest metrics body read.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Scrape counts per backend, for `/stats`.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    /// Successful scrapes.
    pub ok: AtomicU64,
    /// Failed scrapes (connect, status, timeout, body).
    pub failed: AtomicU64,
}

/// Where one backend's figures come from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The backend's index.
    pub backend: usize,
    /// Where to connect.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path.
    pub path: String,
}

/// The scrape targets of a config: backends with `metrics`, their addresses resolved. An
/// exporter address that does not resolve is an error naming the backend.
pub fn targets(
    shared_addrs: &[SocketAddr],
    config: &switchyard_config::Config,
) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for (i, b) in config.backends.iter().enumerate() {
        let Some(m) = &b.metrics else { continue };
        let (addr, host) = match &m.address {
            None => (shared_addrs[i], b.address.to_string()),
            Some(a) => {
                let addr = (a.host.as_str(), a.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut it| it.next())
                    .ok_or_else(|| {
                        format!("backend {:?}: metrics address {a} does not resolve", b.name)
                    })?;
                (addr, a.to_string())
            }
        };
        out.push(Target {
            backend: i,
            addr,
            host,
            path: m.path.clone(),
        });
    }
    Ok(out)
}

/// Runs the scrapers (which feed the progress checks) and the active health checks until
/// shutdown.
pub fn run(shared: Arc<Shared>, targets: Vec<Target>, mut shutdown: watch::Receiver<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "scraper: cannot build runtime");
            return;
        }
    };
    rt.block_on(async move {
        for t in targets {
            tokio::spawn(scrape_loop(Arc::clone(&shared), t));
        }
        for (i, b) in shared.config.backends.iter().enumerate() {
            if let Some(check) = &b.health {
                tokio::spawn(super::health::check_loop(
                    Arc::clone(&shared),
                    i,
                    check.clone(),
                ));
            }
        }
        let _ = shutdown.wait_for(|v| *v).await;
    });
}

async fn scrape_loop(shared: Arc<Shared>, t: Target) {
    let cfg = &shared.config.server;
    let mut tick = tokio::time::interval(cfg.metrics_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stats = &shared.scrapes[t.backend];
    let mut progress = super::health::ProgressWatch::new(&shared, t.backend);
    loop {
        tick.tick().await;
        match tokio::time::timeout(cfg.metrics_timeout, fetch(&t)).await {
            Ok(Ok(text)) => {
                let figures = metrics::parse(&text);
                let now = shared.clock.now_ms();
                shared.backends[t.backend].record_figures(
                    figures,
                    now,
                    cfg.metrics_max_age.as_millis() as u64,
                );
                if let Some(p) = &mut progress {
                    p.observe(&shared, now, &figures);
                }
                stats.ok.fetch_add(1, Relaxed);
            }
            Ok(Err(e)) => {
                stats.failed.fetch_add(1, Relaxed);
                tracing::debug!(backend = %shared.config.backends[t.backend].name, error = %e, "metrics scrape failed");
            }
            Err(_) => {
                stats.failed.fetch_add(1, Relaxed);
                tracing::debug!(backend = %shared.config.backends[t.backend].name, "metrics scrape timed out");
            }
        }
    }
}

async fn fetch(t: &Target) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(t.addr).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(t.path.as_str())
        .header(header::HOST, t.host.as_str())
        .header(header::ACCEPT, "text/plain")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        driver.abort();
        return Err(format!("status {}", resp.status()).into());
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await?
        .to_bytes();
    driver.abort();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
