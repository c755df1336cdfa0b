//! Test backends: hyper HTTP/1.1 servers on 127.0.0.1:0 that count the connections they accept
//! and the requests they receive, with ready-made handlers (echo, fixed text) and a silent one.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::body::{full, Body};

/// A running backend. Dropping it stops accepting (connections already open live on).
pub struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }

    /// Requests received so far (counted when the head arrives, before the handler runs).
    pub fn requests(&self) -> usize {
        self.requests.load(SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` on a new port.
pub async fn serve<F, Fut>(handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), handler)
}

/// Serves `handler` over HTTP/2 with prior knowledge (h2c) on a new port.
pub async fn serve_h2<F, Fut>(handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve_with(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        handler,
        true,
    )
}

/// Serves `handler` over HTTP/2 with prior knowledge on `listener`.
pub fn serve_h2_on<F, Fut>(listener: TcpListener, handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve_with(listener, handler, true)
}

/// Serves `handler` on `listener`.
pub fn serve_on<F, Fut>(listener: TcpListener, handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve_with(listener, handler, false)
}

fn serve_with<F, Fut>(listener: TcpListener, handler: F, h2: bool) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let task = {
        let (accepted, requests) = (Arc::clone(&accepted), Arc::clone(&requests));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, SeqCst);
                let (handler, requests) = (Arc::clone(&handler), Arc::clone(&requests));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        requests.fetch_add(1, SeqCst);
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let io = TokioIo::new(stream);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, svc)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        })
    };
    Backend {
        addr,
        accepted,
        requests,
        task,
    }
}

/// A response with `status` and a body.
pub fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r
}

/// A backend answering every request with 200 and `text`.
pub async fn fixed(text: &'static str) -> Backend {
    serve(move |_req| async move { respond(StatusCode::OK, text) }).await
}

/// A backend answering with a JSON description of the request: `method`, `uri`, `headers`
/// (a list of `[name, value]` in order) and `body` (as text).
pub async fn echo() -> Backend {
    serve(echo_handler).await
}

/// [`echo`] over HTTP/2 with prior knowledge; the document also has the request's `version`.
pub async fn echo_h2() -> Backend {
    serve_h2(echo_handler).await
}

async fn echo_handler(req: Request<Incoming>) -> Response<Body> {
    {
        let (parts, body) = req.into_parts();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let doc = json!({
            "version": format!("{:?}", parts.version),
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        let mut r = respond(StatusCode::OK, doc.to_string());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// All values of header `name` in an [`echo`] document (names are lowercase).
pub fn echoed_headers(doc: &serde_json::Value, name: &str) -> Vec<String> {
    doc["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_string())
        .collect()
}

/// A TCP server running a hand-written script on each connection, for backends that misbehave.
pub struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawBackend {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `script` on every accepted connection.
pub async fn serve_raw<F, Fut>(script: F) -> RawBackend
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let task = {
        let accepted = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, SeqCst);
                tokio::spawn(script(stream));
            }
        })
    };
    RawBackend {
        addr,
        accepted,
        task,
    }
}

/// A backend that accepts and reads everything but never answers.
pub async fn silent() -> RawBackend {
    serve_raw(|mut stream| async move {
        let mut buf = [0u8; 4096];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
}

/// Reads one request head (up to its empty line) from `stream`; false if the peer closed first.
pub async fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// An address where nothing listens (a port bound, then released), free for a test to listen
/// on. On 127.0.0.2, where the tests' own servers never bind: a port freed on 127.0.0.1 could
/// be taken at once by a server of another test running in parallel.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    l.local_addr().unwrap()
}

/// A TCP backend that echoes every byte, and half-closes after the client's.
pub async fn tcp_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
            });
        }
    });
    addr
}
