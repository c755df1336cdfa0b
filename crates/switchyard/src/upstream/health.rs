//! Active health checks: a TCP connect or an HTTP request to each backend with `health`, every
//! `health_interval`, each within `health_timeout`. `health_fall` consecutive failures mark the
//! backend down until `health_rise` consecutive passes bring it back. They run beside the
//! metrics scrapers, off the data plane, and combine with passive health: a backend marked down
//! by either is skipped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use switchyard_config::HealthCheck;
use tokio::net::TcpStream;

use crate::server::Shared;

/// Health state as shown in `/stats`.
pub const UNKNOWN: u8 = 0;
/// Passing.
pub const UP: u8 = 1;
/// Failed `health_fall` times in a row.
pub const DOWN: u8 = 2;

/// Per backend, how its checks went.
#[derive(Debug, Default)]
pub struct HealthStats {
    /// Checks passed.
    pub ok: AtomicU64,
    /// Checks failed.
    pub failed: AtomicU64,
    /// [`UNKNOWN`], [`UP`] or [`DOWN`].
    pub state: AtomicU8,
}

impl HealthStats {
    /// The state's name.
    pub fn state_name(&self) -> &'static str {
        match self.state.load(Relaxed) {
            UP => "up",
            DOWN => "down",
            _ => "unknown",
        }
    }
}

/// Checks backend `i` forever.
pub async fn check_loop(shared: Arc<Shared>, i: usize, check: HealthCheck) {
    let cfg = &shared.config.server;
    let addr = shared.addrs[i];
    let host = shared.config.backends[i].address.to_string();
    let name = shared.config.backends[i].name.clone();
    let stats = &shared.health[i];
    let state = &shared.backends[i];
    let mut tick = tokio::time::interval(cfg.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut passes, mut failures) = (0u32, 0u32);
    loop {
        tick.tick().await;
        let ok = tokio::time::timeout(cfg.health_timeout, probe(addr, &host, &check))
            .await
            .unwrap_or(false);
        if ok {
            stats.ok.fetch_add(1, Relaxed);
            passes += 1;
            failures = 0;
            match stats.state.load(Relaxed) {
                DOWN if passes >= cfg.health_rise => {
                    state.mark_up();
                    stats.state.store(UP, Relaxed);
                    tracing::info!(backend = %name, "health check passing again: backend up");
                }
                UNKNOWN => stats.state.store(UP, Relaxed),
                _ => {}
            }
        } else {
            stats.failed.fetch_add(1, Relaxed);
            failures += 1;
            passes = 0;
            if stats.state.load(Relaxed) != DOWN && failures >= cfg.health_fall {
                state.mark_down_until(u64::MAX);
                stats.state.store(DOWN, Relaxed);
                tracing::warn!(backend = %name, check = %check, failures, "health check failing: backend down");
            }
        }
    }
}

/// One check: `true` when it passes.
async fn probe(addr: SocketAddr, host: &str, check: &HealthCheck) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let HealthCheck::Http {
        method,
        path,
        status,
    } = check
    else {
        return true;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return false;
    };
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method(method.as_str())
        .uri(path.as_str())
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new());
    let passed = match req {
        Ok(req) => sender
            .send_request(req)
            .await
            .is_ok_and(|resp| resp.status().as_u16() == *status),
        Err(_) => false,
    };
    driver.abort();
    passed
}
