//! The socket side of the PROXY protocol: who may send a header, reading it off a new
//! connection (exactly its bytes, nothing after), and counting what happened.
//!
//! Runs after the accept limiter (which sees the socket peer: behind a load balancer, the
//! balancer's address) and before protocol detection, on ports with `proxy_protocol` on:
//!
//! - From a peer in `trusted_proxies` the header is required, as HAProxy's `accept-proxy`
//!   does: its announced source becomes the client's address. Missing, malformed, of a
//!   version the port does not accept, or not whole within `proxy_protocol_timeout`: closed
//!   and counted.
//! - From any other peer no header is parsed. A connection that starts with a PROXY
//!   signature is closed and counted (it would spoof a client address); any other bytes
//!   are served as from that peer.
//!
//! The header is peeked at until whole, then exactly its length is read: whatever follows
//! stays in the socket for protocol detection and TLS.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_config::{Cidr, ProxyProtocol};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{parse, signature, HeaderError, Parse, Signature, MAX_HEADER_BYTES, V1_MAX_BYTES};
use crate::observe::stats::Bump;

/// How long to wait before peeking again at a header whose bytes are incomplete (a peek does
/// not consume what makes the socket readable).
const REPEEK_PAUSE: Duration = Duration::from_millis(5);
/// What is peeked at first: a v1 header, or a v2 header with IPv6 addresses and some TLVs.
const FIRST_PEEK: usize = 256;

/// One port's PROXY protocol counters on one reactor thread (one writer each).
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Headers accepted from trusted peers.
    pub accepted: AtomicU64,
    /// Trusted peers' connections closed for a missing, malformed or wrong-version header
    /// (or one that closed before it was whole).
    pub rejected: AtomicU64,
    /// Trusted peers' connections closed because the header was not whole within
    /// `proxy_protocol_timeout`.
    pub timeouts: AtomicU64,
    /// Untrusted peers' connections closed because they began with a PROXY signature.
    pub untrusted_signature: AtomicU64,
}

impl ProxyStats {
    /// The counters summed over `threads`, as `/stats` shows them with the port's `mode`.
    pub fn report<'a>(mode: ProxyProtocol, threads: impl Iterator<Item = &'a ProxyStats>) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let mut sums = [0u64; 4];
        for s in threads {
            for (sum, c) in sums.iter_mut().zip([
                &s.accepted,
                &s.rejected,
                &s.timeouts,
                &s.untrusted_signature,
            ]) {
                *sum += c.load(Relaxed);
            }
        }
        json!({
            "mode": mode.to_string(),
            "accepted": sums[0],
            "rejected": sums[1],
            "timeouts": sums[2],
            "untrusted_signature": sums[3],
        })
    }
}

/// A port's PROXY protocol settings.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// Which versions are accepted (callers skip the gate when `Off`).
    pub mode: ProxyProtocol,
    /// `proxy_protocol_timeout`.
    pub timeout: Duration,
    /// `[server] trusted_proxies`.
    pub trusted: &'a [Cidr],
}

/// Why a connection is closed at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A trusted peer's header was missing or invalid.
    Invalid(HeaderError),
    /// A trusted peer's header was not whole in time.
    Timeout,
    /// The peer closed (or the socket failed) before the header was whole.
    Closed,
    /// An untrusted peer began with a PROXY signature.
    Untrusted,
}

impl Gate<'_> {
    /// Admits `stream` from `peer`: the client's address (announced by a trusted peer's
    /// header, else `peer`), with the header consumed; or why it is to be closed. Counted in
    /// `stats` either way. Callers box this future, so a connection's task is no larger on
    /// ports with `proxy_protocol = off`.
    pub async fn admit(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        stats: &ProxyStats,
    ) -> Result<SocketAddr, Refused> {
        let deadline = Instant::now() + self.timeout;
        let trusted = self.trusted.iter().any(|c| c.contains(peer.ip()));
        let r = if trusted {
            read_header(stream, self.mode, deadline)
                .await
                .map(|a| a.map_or(peer, |(src, _)| src))
        } else {
            untrusted(stream, deadline).await.map(|()| peer)
        };
        match r {
            Ok(_) if trusted => stats.accepted.bump(1),
            Err(Refused::Untrusted) => stats.untrusted_signature.bump(1),
            Err(Refused::Timeout) => stats.timeouts.bump(1),
            Err(Refused::Invalid(_) | Refused::Closed) if trusted => stats.rejected.bump(1),
            // An untrusted peer that left: nothing to count.
            Ok(_) | Err(_) => {}
        }
        if let Err(why) = &r {
            tracing::debug!(%peer, ?why, "proxy protocol: connection closed");
        }
        r
    }
}

/// Peeks at `stream` until `first` is whole per `decide`, it closes, or `deadline`.
/// `decide` returns `None` for "need more".
async fn peek_until<T>(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, (Refused, usize)> {
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf[..])).await {
            Err(_) => return Err((Refused::Timeout, seen)),
            Ok(Err(_)) | Ok(Ok(0)) => return Err((Refused::Closed, seen)),
            Ok(Ok(n)) => n,
        };
        if let Some(t) = decide(&buf[..n]) {
            return Ok(t);
        }
        if n == buf.len() {
            // Only a v2 header longer than the first peek gets here; `parse` has bounded it.
            buf.resize(MAX_HEADER_BYTES, 0);
        } else if n == seen {
            if Instant::now() + REPEEK_PAUSE >= deadline {
                return Err((Refused::Timeout, seen));
            }
            tokio::time::sleep(REPEEK_PAUSE).await;
        }
        seen = n;
    }
}

/// Reads a trusted peer's header: its announced addresses (`None`: keep the peer's).
async fn read_header(
    stream: &mut TcpStream,
    mode: ProxyProtocol,
    deadline: Instant,
) -> Result<Option<(SocketAddr, SocketAddr)>, Refused> {
    let mut buf = vec![0u8; FIRST_PEEK.max(V1_MAX_BYTES)];
    let decided = peek_until(stream, &mut buf, deadline, |b| match parse(b, mode) {
        Parse::NeedMore => None,
        done => Some(done),
    })
    .await
    .map_err(|(why, _)| why)?;
    match decided {
        Parse::Done {
            consumed,
            addresses,
        } => {
            // Already in the socket: this read returns at once, and takes nothing after it.
            let read = tokio::time::timeout_at(deadline, stream.read_exact(&mut buf[..consumed]));
            match read.await {
                Ok(Ok(_)) => Ok(addresses),
                Ok(Err(_)) => Err(Refused::Closed),
                Err(_) => Err(Refused::Timeout),
            }
        }
        Parse::Invalid(e) => Err(Refused::Invalid(e)),
        Parse::NeedMore => Err(Refused::Timeout),
    }
}

/// Checks that an untrusted peer does not begin with a PROXY signature. A peer that says
/// nothing within the timeout (a server-speaks-first protocol) is let through; one that
/// stops part way into a signature is not.
async fn untrusted(stream: &mut TcpStream, deadline: Instant) -> Result<(), Refused> {
    let mut buf = vec![0u8; 12];
    let decided = peek_until(stream, &mut buf, deadline, |b| match signature(b) {
        Signature::NeedMore => None,
        s => Some(s),
    })
    .await;
    match decided {
        Ok(Signature::No) => Ok(()),
        Ok(_) => Err(Refused::Untrusted),
        Err((Refused::Timeout, 0)) => Ok(()),
        Err((why, _)) => Err(why),
    }
}
