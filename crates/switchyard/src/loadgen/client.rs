//! The HTTP side of the load generator: a streamed chat completion timed from the SSE stream,
//! over a small pool of HTTP/1.1 keep-alive connections (hyper), and one-off `GET`s for the
//! engines' metrics. Each completion carries its conversation's number in
//! [`CONVERSATION_HEADER`], for balancers that keep a session on one backend
//! (`hash_key = header:x-conversation-id`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::sse::{SseEvent, SseParser};
use super::stats::{ErrorKind, Outcome};

/// The request header naming the conversation a turn belongs to.
pub const CONVERSATION_HEADER: &str = "x-conversation-id";
/// Most bytes of generated text kept per reply (to resend in the conversation's next turn).
pub const MAX_REPLY_BYTES: usize = 256 * 1024;
/// Most bytes read of an error response or a metrics page.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long the end of a response body may take after `data: [DONE]` for its connection to be
/// reused; past it the connection is dropped (the request still counts as complete).
const TAIL_WAIT: Duration = Duration::from_millis(500);

/// An `http://host:port/path` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The host as written, without brackets for IPv6.
    pub host: String,
    /// The port (80 when not written).
    pub port: u16,
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
    /// The path and query, at least `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `text`; only `http://` is supported.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "`{text}`: scheme `{other}` is not supported, use http://"
                ))
            }
            None => return Err(format!("`{text}` has no scheme: write http://{text}")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{text}` has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(Self {
            host,
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_string(),
            path: if path.is_empty() { "/".into() } else { path },
        })
    }

    /// This base URL with `path` appended (a `/` is not doubled).
    pub fn join(&self, path: &str) -> Self {
        let base = self.path.trim_end_matches('/');
        let path = path.trim_start_matches('/');
        Self {
            path: format!("{base}/{path}"),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// Opens an HTTP/1.1 connection to `url`'s host; the connection's task runs on the current
/// runtime until the sender is dropped.
async fn connect(url: &HttpUrl) -> Result<Sender, String> {
    let stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect to {}: {e}", url.authority))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {}: {e}", url.authority))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(url: &HttpUrl, method: Method, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
    let mut b = Request::builder()
        .method(method)
        .uri(url.path.as_str())
        .header(HOST, url.authority.as_str());
    if !body.is_empty() {
        b = b
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream");
    }
    b.body(Full::new(body))
        .map_err(|e| format!("request to {url}: {e}"))
}

/// The result of one streamed completion: how it went, and the reply text for the next turn.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// Timings, tokens, error.
    pub outcome: Outcome,
    /// The generated text (at most [`MAX_REPLY_BYTES`]); `None` when the request failed.
    pub reply: Option<String>,
    /// The proxy's `x-switchyard-route` header, when it sent one (`explain = true`).
    pub route: Option<String>,
}

/// Sends streamed chat completions to one target, reusing idle connections.
#[derive(Debug)]
pub struct StreamClient {
    url: HttpUrl,
    timeout: Duration,
    idle: Mutex<Vec<Sender>>,
    max_idle: usize,
}

impl StreamClient {
    /// A client for `url` keeping at most `max_idle` idle connections; each exchange must
    /// finish within `timeout`.
    pub fn new(url: HttpUrl, timeout: Duration, max_idle: usize) -> Self {
        Self {
            url,
            timeout,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An idle connection that is still open, or a new one.
    async fn checkout(&self) -> Result<Sender, String> {
        loop {
            let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
            match pooled {
                Some(mut s) => {
                    if !s.is_closed() && s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                None => return connect(&self.url).await,
            }
        }
    }

    fn checkin(&self, sender: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(sender);
            }
        }
    }

    /// Sends `body` as a streamed chat completion of conversation `conversation` and reads
    /// the SSE stream to `[DONE]`. Never fails: failures are in the outcome.
    pub async fn stream(&self, body: Bytes, conversation: u64, measured: bool) -> Streamed {
        let start = Instant::now();
        let mut progress = Progress::default();
        let exchange = self.exchange(body, conversation, start, &mut progress);
        let result = tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(ErrorKind::Timeout));
        let ok = result.is_ok();
        Streamed {
            outcome: Outcome {
                measured,
                status: progress.status,
                ttft: progress.ttft,
                total: progress.done.unwrap_or_else(|| start.elapsed()),
                tokens: progress.usage_tokens.unwrap_or(progress.text_chunks),
                error: result.err(),
            },
            reply: ok.then_some(progress.reply),
            route: progress.route,
        }
    }

    async fn exchange(
        &self,
        body: Bytes,
        conversation: u64,
        start: Instant,
        p: &mut Progress,
    ) -> Result<(), ErrorKind> {
        let mut sender = self.checkout().await.map_err(|_| ErrorKind::Connect)?;
        let mut req = request(&self.url, Method::POST, body).map_err(|_| ErrorKind::Protocol)?;
        req.headers_mut()
            .insert(CONVERSATION_HEADER, http::HeaderValue::from(conversation));
        let resp = sender.send_request(req).await.map_err(|_| ErrorKind::Io)?;
        let status = resp.status();
        p.status = Some(status.as_u16());
        p.route = resp
            .headers()
            .get("x-switchyard-route")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(super::samples::MAX_ROUTE_BYTES).collect());
        let mut body = resp.into_body();
        if !status.is_success() {
            // Read what is small enough so the connection can be reused.
            let mut read = 0usize;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                read += frame.data_ref().map_or(0, |d| d.len());
                if read > MAX_BODY_BYTES {
                    return Err(ErrorKind::Status(status.as_u16()));
                }
            }
            if http_body::Body::is_end_stream(&body) {
                self.checkin(sender);
            }
            return Err(ErrorKind::Status(status.as_u16()));
        }
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        while p.done.is_none() {
            let Some(frame) = body.frame().await else {
                return Err(ErrorKind::Incomplete);
            };
            let frame = frame.map_err(|_| ErrorKind::Io)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            parser
                .push(&data, &mut events)
                .map_err(|_| ErrorKind::Protocol)?;
            for ev in events.drain(..) {
                match ev {
                    SseEvent::Done => {
                        p.done = Some(start.elapsed());
                    }
                    SseEvent::Chunk(c) => {
                        if c.error.is_some() {
                            return Err(ErrorKind::StreamError);
                        }
                        if let Some(n) = c.completion_tokens {
                            p.usage_tokens = Some(n);
                        }
                        if !c.content.is_empty() {
                            p.ttft.get_or_insert_with(|| start.elapsed());
                            p.text_chunks += 1;
                            if p.reply.len() + c.content.len() <= MAX_REPLY_BYTES {
                                p.reply.push_str(&c.content);
                            }
                        }
                    }
                }
            }
        }
        // The rest of the body (normally just the end of the chunked encoding), so the
        // connection can serve the next request.
        let tail = async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    return false;
                }
            }
            true
        };
        if tokio::time::timeout(TAIL_WAIT, tail).await == Ok(true) {
            self.checkin(sender);
        }
        Ok(())
    }
}

/// What an exchange has seen so far (kept when it times out).
#[derive(Debug, Default)]
struct Progress {
    status: Option<u16>,
    ttft: Option<Duration>,
    done: Option<Duration>,
    text_chunks: u64,
    usage_tokens: Option<u64>,
    reply: String,
    route: Option<String>,
}

/// `GET url` on a new connection within `timeout`; the body as text (at most
/// [`MAX_BODY_BYTES`]). Errors are messages naming the URL.
pub async fn get_text(url: &HttpUrl, timeout: Duration) -> Result<String, String> {
    let fetch = async {
        let mut sender = connect(url).await?;
        let req = request(url, Method::GET, Bytes::new())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url}: status {status}"));
        }
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("GET {url}: reading the body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > MAX_BODY_BYTES {
                    return Err(format!("GET {url}: body over {MAX_BODY_BYTES} bytes"));
                }
            }
        }
        String::from_utf8(buf).map_err(|_| format!("GET {url}: body is not UTF-8"))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .unwrap_or_else(|_| Err(format!("GET {url}: no answer within {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        assert_eq!(
            u.join("/v1/chat/completions").to_string(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        let u = HttpUrl::parse("http://[::1]:9000/gw/").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority, "[::1]:9000");
        assert_eq!(u.join("/v1/x").path, "/gw/v1/x");
        let u = HttpUrl::parse("http://engine/metrics").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/metrics"));
        assert!(HttpUrl::parse("https://x:1")
            .unwrap_err()
            .contains("http://"));
        assert!(HttpUrl::parse("127.0.0.1:80").is_err());
        assert!(HttpUrl::parse("not a url").is_err());
    }
}
