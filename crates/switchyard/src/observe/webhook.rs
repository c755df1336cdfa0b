//! Delivers alert notifications: each one POSTed as JSON to `alert_webhook`, one at a time,
//! each attempt bounded by `alert_webhook_timeout`, retried `alert_webhook_retries` times with
//! a backoff doubling from [`FIRST_BACKOFF`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use switchyard_config::WebhookUrl;
use tokio::sync::mpsc;

use crate::server::Shared;

/// The wait after the first failed attempt; each further one doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The receiver.
    pub url: WebhookUrl,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

/// Delivers the notifications from `rx` until the sender is gone.
pub async fn deliver(
    mut rx: mpsc::Receiver<serde_json::Value>,
    settings: Settings,
    shared: Arc<Shared>,
) {
    let stats = &shared.monitor.notifications;
    while let Some(doc) = rx.recv().await {
        let body = Bytes::from(doc.to_string());
        let mut delivered = false;
        for attempt in 0..=settings.retries {
            if attempt > 0 {
                tokio::time::sleep(FIRST_BACKOFF * 2u32.saturating_pow(attempt - 1).min(64)).await;
            }
            match tokio::time::timeout(settings.timeout, post(&settings.url, body.clone())).await {
                Ok(Ok(())) => {
                    delivered = true;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(attempt, error = %e, url = %settings.url, "alert webhook failed");
                }
                Err(_) => {
                    tracing::debug!(attempt, url = %settings.url, "alert webhook timed out");
                }
            }
        }
        if delivered {
            stats.sent.fetch_add(1, Relaxed);
        } else {
            stats.failed.fetch_add(1, Relaxed);
            tracing::warn!(url = %settings.url, attempts = settings.retries + 1, "alert notification not delivered");
        }
    }
}

/// One attempt: connect, POST, read the answer; `Ok` on a 2xx.
async fn post(url: &WebhookUrl, body: Bytes) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect((url.address.host.as_str(), url.address.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::post(url.path.as_str())
        .header(http::header::HOST, url.address.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
    .await;
    driver.abort();
    result
}
