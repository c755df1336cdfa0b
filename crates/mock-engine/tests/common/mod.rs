//! Test helpers: engines on port 0, a small hyper HTTP/1.1 client, SSE and
//! Prometheus parsing.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Arguments for a fast engine: no TTFT, no decode delay.
pub fn fast_args() -> MockEngineArgs {
    MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 0.0,
        ..Default::default()
    }
}

/// Starts an engine on 127.0.0.1:0.
pub async fn start(args: MockEngineArgs) -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(listener, args).await.unwrap()
}

/// One HTTP/1.1 client connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
}

/// A fully read response.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Self { sender, conn }
    }

    /// Sends a request and returns the response head with its streaming body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Response<Incoming> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "mock");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).unwrap();
        self.sender.ready().await.unwrap();
        self.sender.send_request(req).await.unwrap()
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Answer {
        let resp = self.send(method, path, body).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.request(Method::GET, path, None).await
    }

    pub async fn post_json(&mut self, path: &str, json: &Value) -> Answer {
        self.request(Method::POST, path, Some(json.to_string().into()))
            .await
    }

    /// Closes the connection abruptly (as dropping the client does).
    pub fn close(self) {}
}

impl Drop for Client {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    Client::connect(addr).await.get(path).await
}

/// POST JSON on a fresh connection.
pub async fn post_json(addr: SocketAddr, path: &str, json: &Value) -> Answer {
    Client::connect(addr).await.post_json(path, json).await
}

/// The value of the sample of metric `name` (any labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}')?.1,
            None => rest,
        };
        rest.trim().parse().ok()
    })
}

/// Scrapes `/metrics` and reads one metric.
pub async fn scrape(addr: SocketAddr, name: &str) -> f64 {
    let text = get(addr, "/metrics").await.text();
    metric(&text, name).unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

/// Polls `check` until it returns true, panicking after `timeout`.
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
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "SSE body must end with a blank line"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect()
}

/// A chat request body.
pub fn chat(content: &str, max_tokens: u32, stream: bool) -> Value {
    serde_json::json!({
        "model": "mock-llama",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}
