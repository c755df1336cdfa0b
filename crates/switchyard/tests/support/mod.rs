//! Shared helpers for switchyard's integration tests, in the style of linkerd2-proxy's:
//! - [`proxy`]: a config builder that starts switchyard in-process, and its `/stats`;
//! - [`server`]: hyper backends (echo, fixed, custom handlers) that count connections and
//!   requests, a silent one and a dead address;
//! - [`client`]: a one-connection hyper client; [`raw`]: a byte-level TCP client;
//! - [`h2c`]: HTTP/2 clients, well-behaved, rapid-reset and raw frames;
//! - [`body`]: fixed, channel-fed and generated bodies, and a streaming digest;
//! - [`ws`]: WebSocket frames at the byte level and a recording WebSocket backend.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod body;
pub mod client;
pub mod diagnose;
pub mod h2c;
pub mod plugins;
pub mod prom;
pub mod proxy;
pub mod raw;
pub mod reload;
pub mod server;
pub mod tls;
pub mod ws;

use std::future::Future;
use std::time::Duration;

/// The generous bound for anything that should happen "soon".
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` every 10 ms until it returns true; panics after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
