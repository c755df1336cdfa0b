//! HTTP/2 to backends (`protocol = h2c`): one multiplexed connection per backend per reactor
//! thread, every request a stream of it.
//!
//! Where HTTP/1.1 needs a pool of connections (one exchange at a time on each), HTTP/2 needs
//! one: this thread's requests to a backend share it, up to the backend's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (further requests wait in hyper's queue for a free
//! stream). The connection is hyper's HTTP/2 client, driven by a task on the reactor thread;
//! when it closes (the backend went away, sent GOAWAY, or a protocol error) the next request
//! opens a new one. Request and response bodies are passed frame by frame, trailers included,
//! which is what gRPC needs.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::tls::{UpStream, UpstreamTls};
use crate::l7::body::RequestBody;
use crate::l7::proxy::LocalExec;

/// A request body on its way to an HTTP/2 backend: what was read ahead of forwarding, then
/// the rest of the client's body, frame by frame (trailers too).
pub struct H2Body {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
    /// Set once the client's body has ended (or was abandoned), for a streamed body.
    ended: Option<Rc<Cell<bool>>>,
}

impl H2Body {
    /// The body of `body`: a copy of what was read ahead when that is all of it (so the
    /// request can be sent again), else the client's stream itself, taken from `body`.
    pub fn from_request(body: &mut RequestBody) -> Self {
        let rest = if body.rest_is_end() {
            None
        } else {
            body.rest.take()
        };
        H2Body {
            prefix: body.prefix.clone(),
            ended: rest.as_ref().map(|_| Rc::new(Cell::new(false))),
            rest,
        }
    }

    /// For a body streamed from the client (not all read ahead), a flag set when it ends.
    pub fn end_flag(&self) -> Option<Rc<Cell<bool>>> {
        self.ended.clone()
    }

    fn mark_ended(&self) {
        if let Some(e) = &self.ended {
            e.set(true);
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        let frame = match this.rest.as_mut() {
            Some(rest) => ready!(Pin::new(rest).poll_frame(cx)),
            None => None,
        };
        match &frame {
            Some(Ok(f)) if !f.is_trailers() => {}
            _ => this.mark_ended(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = self.rest.as_ref().map(Body::size_hint).unwrap_or_else(|| {
            let mut h = SizeHint::new();
            h.set_exact(0);
            h
        });
        hint.set_lower(hint.lower() + prefix);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

impl Drop for H2Body {
    fn drop(&mut self) {
        self.mark_ended();
    }
}

/// The sending side of a backend's connection.
pub type Sender = SendRequest<H2Body>;

enum Entry {
    /// A connection is being opened; requests wait for it rather than open their own.
    Opening {
        generation: u64,
        done: Rc<Notify>,
    },
    Open {
        generation: u64,
        sender: Sender,
    },
}

/// What a request finds in [`H2Conns`] for its backend.
pub enum Lookup {
    /// An open connection.
    Open(Sender),
    /// Another request is opening one: wait for this, then look again.
    Wait(Rc<Notify>),
    /// None: the caller opens it (the slot is now marked as opening; call
    /// [`H2Conns::opened`] or [`H2Conns::failed`]).
    Connect,
}

/// This thread's HTTP/2 connections, by backend slot.
pub struct H2Conns {
    slots: RefCell<Vec<Option<Entry>>>,
}

impl H2Conns {
    /// A table for `slots` backend slots.
    pub fn new(slots: usize) -> Self {
        H2Conns {
            slots: RefCell::new((0..slots).map(|_| None).collect()),
        }
    }

    /// The connection to the backend in `slot` (of `generation`): open, being opened, or to
    /// be opened by the caller.
    pub fn lookup(&self, slot: usize, generation: u64) -> Lookup {
        let mut slots = self.slots.borrow_mut();
        let Some(entry) = slots.get_mut(slot) else {
            return Lookup::Connect;
        };
        match entry {
            Some(Entry::Open {
                generation: g,
                sender,
            }) if *g == generation && !sender.is_closed() => return Lookup::Open(sender.clone()),
            Some(Entry::Opening {
                generation: g,
                done,
            }) if *g == generation => return Lookup::Wait(Rc::clone(done)),
            _ => {}
        }
        *entry = Some(Entry::Opening {
            generation,
            done: Rc::new(Notify::new()),
        });
        Lookup::Connect
    }

    /// Keeps `sender` as the connection to the backend in `slot`, and wakes the requests
    /// that waited for it.
    pub fn opened(&self, slot: usize, generation: u64, sender: Sender) {
        self.replace(slot, Some(Entry::Open { generation, sender }));
    }

    /// Opening the connection to `slot` failed: the requests that waited try themselves.
    pub fn failed(&self, slot: usize) {
        self.replace(slot, None);
    }

    /// Forgets the connection to `slot` (its backend changed, or it closed); streams open
    /// on it finish.
    pub fn clear(&self, slot: usize) {
        self.replace(slot, None);
    }

    fn replace(&self, slot: usize, new: Option<Entry>) {
        let old = match self.slots.borrow_mut().get_mut(slot) {
            Some(entry) => std::mem::replace(entry, new),
            None => None,
        };
        if let Some(Entry::Opening { done, .. }) = old {
            done.notify_waiters();
        }
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.slots
            .borrow()
            .iter()
            .flatten()
            .filter(|e| matches!(e, Entry::Open { sender, .. } if !sender.is_closed()))
            .count()
    }
}

/// Why a connection to an HTTP/2 backend could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection failed.
    Io(std::io::Error),
    /// The TCP connection took longer than the connect timeout.
    Timeout,
    /// The HTTP/2 handshake failed (the backend does not speak HTTP/2 with prior knowledge?).
    Handshake(hyper::Error),
}

/// Opens a connection to `addr` and runs the HTTP/2 handshake, spawning the task that drives
/// the connection on this thread.
/// With `tls`, the TLS handshake (ALPN `h2`) is part of the connect and of its timeout.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
    builder: &Builder<LocalExec>,
) -> Result<Sender, ConnectError> {
    let open = async {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        UpStream::open(tcp, tls).await
    };
    let stream = match tokio::time::timeout(timeout, open).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    let handshake = builder.handshake(TokioIo::new(stream));
    let (sender, conn) = match tokio::time::timeout(timeout, handshake).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Handshake(e)),
        Ok(Ok(pair)) => pair,
    };
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP/2 backend connection ended");
        }
    });
    Ok(sender)
}

/// The request for an HTTP/2 backend: `parts` (an origin-form target, a `Host` header) with
/// the authority moved into the URI (`:authority`), and `TE: trailers` for gRPC, the one
/// `TE` value HTTP/2 allows and gRPC servers may insist on.
pub fn request(parts: &Parts, body: H2Body) -> Request<H2Body> {
    let mut headers = parts.headers.clone();
    let authority = headers.remove(header::HOST);
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = authority
        .as_ref()
        .and_then(|a| a.to_str().ok())
        .and_then(|a| {
            Uri::builder()
                .scheme("http")
                .authority(a)
                .path_and_query(pq)
                .build()
                .ok()
        })
        .unwrap_or_else(|| parts.uri.clone());
    if crate::l7::grpc::is_grpc(&headers) {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req
}
