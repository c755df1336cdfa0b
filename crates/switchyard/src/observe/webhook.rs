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

use super::monitor::NotifyStats;

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
    stats: Arc<NotifyStats>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A receiver answering each connection's request with the next status of `statuses`;
    /// returns its URL and the bodies it read.
    async fn receiver(statuses: Vec<u16>) -> (WebhookUrl, Arc<std::sync::Mutex<Vec<String>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap())
            .parse()
            .unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        tokio::spawn(async move {
            for status in statuses {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                // Read the head and the body (its length from Content-Length).
                loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(at) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= at + 4 + len {
                            kept.lock().unwrap().push(text[at + 4..].to_string());
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn failed_attempts_are_retried_then_counted() {
        let (url, seen) = receiver(vec![503, 200, 500, 500]).await;
        let (tx, rx) = mpsc::channel(4);
        let stats = Arc::new(NotifyStats::default());
        let settings = Settings {
            url,
            timeout: Duration::from_secs(10),
            retries: 1,
        };
        tx.send(serde_json::json!({"n": 1})).await.unwrap();
        tx.send(serde_json::json!({"n": 2})).await.unwrap();
        drop(tx);
        deliver(rx, settings, Arc::clone(&stats)).await;
        assert_eq!(stats.sent.load(Relaxed), 1, "503 then 200");
        assert_eq!(stats.failed.load(Relaxed), 1, "500 twice: no retry left");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [r#"{"n":1}"#, r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":2}"#]
        );
    }
}
