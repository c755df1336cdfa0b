//! The monitor: reads each backend's `metrics` endpoint every `metrics_interval` and stores
//! the figures in its shared state, where balancers read them, and runs the active health
//! checks, for static and registered backends alike.
//!
//! It runs on a thread of its own (a current-thread runtime), off the data plane. One scrape is
//! a fresh connection, a GET, and a body of at most [`MAX_BODY`] bytes, all within
//! `metrics_timeout`; a failed scrape leaves the previous figures to go stale after
//! `metrics_max_age`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::metrics;
use crate::server::Shared;
use crate::upstream::directory::Backend;

/// Largest metrics body read.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Scrape counts per backend, for `/stats`.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    /// Successful scrapes.
    pub ok: AtomicU64,
    /// Failed scrapes (connect, status, timeout, body).
    pub failed: AtomicU64,
    /// How the last scrape went (written by the monitor once a scrape, read by the admin
    /// plane's diagnostics).
    last: Mutex<Option<LastScrape>>,
}

/// How one scrape went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastScrape {
    /// When it ended, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Why it failed; `None` if it succeeded.
    pub error: Option<String>,
}

impl ScrapeStats {
    /// Counts a scrape and remembers how it went.
    pub fn record(&self, error: Option<String>) {
        let counter = if error.is_some() {
            &self.failed
        } else {
            &self.ok
        };
        counter.fetch_add(1, Relaxed);
        *self.lock() = Some(LastScrape {
            unix_ms: super::errlog::unix_ms(),
            error,
        });
    }

    /// How the last scrape went, if there was one.
    pub fn last(&self) -> Option<LastScrape> {
        self.lock().clone()
    }

    /// Forgets everything: its slot has a new backend.
    pub fn reset(&self) {
        self.ok.store(0, Relaxed);
        self.failed.store(0, Relaxed);
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LastScrape>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where one backend's figures come from.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path.
    pub path: String,
    /// TLS, when the figures come from a `tls = true` backend's own address.
    pub tls: Option<Arc<crate::upstream::tls::UpstreamTls>>,
}

/// Checks that every static backend's exporter address resolves (an error names the
/// backend), so a config with a typo fails at start rather than scraping nothing.
pub fn check_targets(config: &switchyard_config::Config) -> Result<(), String> {
    for b in &config.backends {
        if let Some(a) = b.metrics.as_ref().and_then(|m| m.address.as_ref()) {
            let resolves = (a.host.as_str(), a.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .is_some();
            if !resolves {
                return Err(format!(
                    "backend {:?}: metrics address {a} does not resolve",
                    b.name
                ));
            }
        }
    }
    Ok(())
}

/// Where `backend`'s figures come from, if it has `metrics` (an exporter's address is
/// resolved here; `None` while it does not resolve).
async fn target(backend: &Backend) -> Option<Target> {
    let m = backend.config.metrics.as_ref()?;
    let (addr, host, tls) = match &m.address {
        None => (
            backend.addr,
            backend.config.address.to_string(),
            backend.tls.clone(),
        ),
        Some(a) => {
            let addr = tokio::net::lookup_host((a.host.as_str(), a.port))
                .await
                .ok()
                .and_then(|mut it| it.next())?;
            (addr, a.to_string(), None)
        }
    };
    Some(Target {
        addr,
        host,
        path: m.path.clone(),
        tls,
    })
}

/// How often the monitor looks for backends that joined or left the directory.
pub const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs the scrapers and the active health checks until shutdown: one scraper and one checker
/// task per backend that has `metrics` or `health`, static or registered, started when the
/// backend appears in the directory and stopped when it leaves.
pub fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "monitor: cannot build runtime");
            return;
        }
    };
    rt.block_on(async move {
        // Per slot: the generation whose tasks run, and the tasks.
        let mut running: Vec<Option<(u64, Vec<tokio::task::AbortHandle>)>> =
            (0..shared.directory.capacity()).map(|_| None).collect();
        let mut seen_version = None;
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|v| *v) => break,
                _ = tick.tick() => {}
            }
            let version = shared.directory.version();
            if seen_version == Some(version) {
                continue;
            }
            seen_version = Some(version);
            let snapshot = shared.directory.snapshot();
            for (slot, occupant) in snapshot.slots.iter().enumerate() {
                let current = occupant.as_ref().map(|b| b.generation);
                if running[slot].as_ref().map(|(g, _)| *g) == current {
                    continue;
                }
                if let Some((_, tasks)) = running[slot].take() {
                    tasks.iter().for_each(tokio::task::AbortHandle::abort);
                }
                let Some(backend) = occupant else { continue };
                shared.scrapes[slot].reset();
                shared.health[slot].reset();
                let mut tasks = Vec::new();
                if backend.config.metrics.is_some() {
                    let task = tokio::spawn(scrape_loop(Arc::clone(&shared), Arc::clone(backend)));
                    tasks.push(task.abort_handle());
                }
                if let Some(check) = &backend.config.health {
                    let task = tokio::spawn(super::health::check_loop(
                        Arc::clone(&shared),
                        Arc::clone(backend),
                        check.clone(),
                    ));
                    tasks.push(task.abort_handle());
                }
                running[slot] = Some((backend.generation, tasks));
            }
        }
        for (_, tasks) in running.into_iter().flatten() {
            tasks.iter().for_each(tokio::task::AbortHandle::abort);
        }
    });
}

async fn scrape_loop(shared: Arc<Shared>, backend: Arc<Backend>) {
    let cfg = &shared.config.server;
    let mut tick = tokio::time::interval(cfg.metrics_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stats = &shared.scrapes[backend.slot];
    let name = backend.name();
    let mut progress = super::health::ProgressWatch::new(&backend);
    let mut t: Option<Target> = None;
    loop {
        tick.tick().await;
        if t.is_none() {
            t = target(&backend).await;
        }
        let Some(t) = &t else {
            stats.record(Some("the metrics address does not resolve".to_string()));
            tracing::debug!(backend = %name, "metrics address does not resolve");
            continue;
        };
        match tokio::time::timeout(cfg.metrics_timeout, fetch(t)).await {
            Ok(Ok(text)) => {
                let figures = metrics::parse(&text);
                let now = shared.clock.now_ms();
                backend
                    .state
                    .record_figures(figures, now, cfg.metrics_max_age.as_millis() as u64);
                if let Some(p) = &mut progress {
                    p.observe(&shared, now, &figures);
                }
                stats.record(None);
            }
            Ok(Err(e)) => {
                stats.record(Some(e.to_string()));
                tracing::debug!(backend = %name, error = %e, "metrics scrape failed");
            }
            Err(_) => {
                stats.record(Some(format!(
                    "no answer within metrics_timeout ({:?})",
                    cfg.metrics_timeout
                )));
                tracing::debug!(backend = %name, "metrics scrape timed out");
            }
        }
    }
}

async fn fetch(t: &Target) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(t.addr).await?;
    let _ = tcp.set_nodelay(true);
    let stream = crate::upstream::tls::UpStream::open(tcp, t.tls.as_deref()).await?;
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
