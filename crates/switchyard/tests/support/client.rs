//! A small HTTP/1.1 client: one connection per [`Client`], requests sent one after another on it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::body::{empty, full, Body};

/// One client connection.
pub struct Client {
    sender: SendRequest<Body>,
    conn: Option<JoinHandle<Result<(), hyper::Error>>>,
}

/// A response read to its end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `x-switchyard-error` header.
    pub fn proxy_error(&self) -> Option<&str> {
        self.header("x-switchyard-error")
    }
}

/// A request builder for `method path` with `Host: test.local`.
pub fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "test.local")
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        Client {
            sender,
            conn: Some(tokio::spawn(conn)),
        }
    }

    /// Sends a request and returns the response head with its streaming body.
    pub async fn send(&mut self, req: Request<Body>) -> Response<Incoming> {
        self.try_send(req).await.expect("request failed")
    }

    /// Sends a request; the error if the connection failed.
    pub async fn try_send(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        self.sender.ready().await?;
        self.sender.send_request(req).await
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&mut self, req: Request<Body>) -> Answer {
        let resp = self.send(req).await;
        read(resp).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Answer {
        self.request(request(Method::GET, path).body(empty()).unwrap())
            .await
    }

    /// `POST path` with a body of known length.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Answer {
        self.request(request(Method::POST, path).body(full(body)).unwrap())
            .await
    }

    /// Whether the connection is closed (as far as the client has noticed).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(conn) = &self.conn {
            conn.abort();
        }
    }
}

/// Reads a response to its end.
pub async fn read(resp: Response<Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET path` on a new connection.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    Client::connect(addr).await.get(path).await
}

/// `GET path` on a new connection with `Authorization: Bearer token` (none if `None`).
pub async fn get_authorized(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    let mut req = request(Method::GET, path);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    Client::connect(addr)
        .await
        .request(req.body(empty()).unwrap())
        .await
}

/// Reads response body frames until the data received so far contains `needle`; returns all
/// the data received. Panics if the body ends first.
pub async fn read_until(body: &mut Incoming, received: &mut Vec<u8>, needle: &[u8]) {
    while !contains(received, needle) {
        let frame = body
            .frame()
            .await
            .unwrap_or_else(|| {
                panic!(
                    "body ended before {:?}; got {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(received)
                )
            })
            .expect("body frame");
        if let Ok(data) = frame.into_data() {
            received.extend_from_slice(&data);
        }
    }
}

/// Sends `GET path` on `c`, expects 200, and reads its streamed body until `needle` has come
/// (within [`super::DEADLINE`]); the rest of the body, and what was read.
pub async fn stream_until(c: &mut Client, path: &str, needle: &[u8]) -> (Incoming, Vec<u8>) {
    let resp = c
        .send(request(Method::GET, path).body(empty()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    tokio::time::timeout(super::DEADLINE, read_until(&mut body, &mut got, needle))
        .await
        .unwrap_or_else(|_| panic!("{:?} in time", String::from_utf8_lossy(needle)));
    (body, got)
}

/// Reads the rest of a body, appending it to `received`.
pub async fn read_rest(body: &mut Incoming, received: &mut Vec<u8>) {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            received.extend_from_slice(&data);
        }
    }
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
