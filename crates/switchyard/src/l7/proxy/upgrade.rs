//! Protocol switches on the request path: WebSocket upgrades (the backend's 101, then a
//! spliced tunnel, within the route's `max_websockets`) and h2c upgrades (the connection
//! handed to HTTP/2, see [`crate::net::h2c_upgrade`]).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::l7::body::{Exchange, ProxyBody};
use crate::l7::error::ProxyError;
use crate::l7::tunnel::{splice, Carried};
use crate::l7::ws_frames::Violation;
use crate::net::conn::ConnCtx;
use crate::observe::stats::{Bump, ThreadStats};
use crate::routing::Routing;
use crate::upstream::conn::UpstreamConn;

/// A client's request to switch protocols, kept until the backend agrees.
pub(super) struct Upgrade {
    /// Resolves to the client connection once hyper has sent the 101.
    pub(super) on_upgrade: hyper::upgrade::OnUpgrade,
    /// The protocol asked for (`Upgrade: websocket`), which a 101 agrees to.
    pub(super) protocol: HeaderValue,
    /// The route's tunnel count, taken for this one (released when this is dropped).
    pub(super) slot: Option<TunnelSlot>,
}

/// One of a route's `max_websockets` tunnels, held from the handshake to the tunnel's end.
pub(super) struct TunnelSlot {
    open: Arc<std::sync::atomic::AtomicU32>,
    /// The route's counter slot (see [`Routing::stat_slots`]).
    stat_slot: usize,
    /// The route's `websocket_max_frame`.
    max_frame: usize,
}

impl TunnelSlot {
    /// Takes a slot of `route`, or says the route is full.
    pub(super) fn take(routing: &Routing, route: usize) -> Result<Self, ProxyError> {
        use std::sync::atomic::Ordering::Relaxed;
        let max = routing.config.routes[route].max_websockets;
        let open = &routing.websockets[route];
        if open.fetch_add(1, Relaxed) >= max {
            open.fetch_sub(1, Relaxed);
            return Err(ProxyError::TooManyWebSockets {
                route: routing.config.routes[route].name.clone(),
                max,
            });
        }
        let config = &routing.config;
        Ok(TunnelSlot {
            open: Arc::clone(open),
            stat_slot: routing.stat_slots[route],
            max_frame: config.routes[route].websocket_max_frame(&config.server),
        })
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Agrees to an `Upgrade: h2c` request that can be served on stream 1 (`frame`, see
/// [`crate::net::h2c_upgrade`]): the 101, with the connection handed to HTTP/2 once it is
/// sent, where the request is served like any other.
pub(super) fn h2c_upgrade(
    ctx: &Arc<ConnCtx>,
    req: &mut Request<Incoming>,
    frame: Bytes,
    exchange: Exchange,
) -> Response<ProxyBody> {
    ctx.set_h2c_upgrade(crate::net::conn::PendingH2c {
        on_upgrade: hyper::upgrade::on(req),
        frame,
    });
    let mut resp = Response::new(ProxyBody::empty(exchange));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    resp
}

/// The `Upgrade` value of an HTTP/1.1 WebSocket handshake (`Connection: upgrade` and
/// `Upgrade: websocket`), if the request is one.
pub(super) fn websocket_upgrade(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket") {
        req.headers().get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Splices the upgraded client connection and the backend's until both end, the tunnel is
/// idle for `idle`, a side fails, or the client sends a frame its route does not accept
/// (`websocket_max_frame`, RFC 6455), counted in `stats`. Bytes the backend sent after its
/// 101 go first.
pub(super) async fn tunnel(
    upgrade: Upgrade,
    conn: Box<UpstreamConn>,
    idle: std::time::Duration,
    in_flight: Option<switchyard_balance::InFlight>,
    stats: Arc<ThreadStats>,
) {
    let Upgrade {
        on_upgrade, slot, ..
    } = upgrade;
    let Ok(client) = on_upgrade.await else {
        return;
    };
    let client = hyper_util::rt::TokioIo::new(client);
    let UpstreamConn { stream, buf, .. } = *conn;
    let route = slot.as_ref().map(|s| s.stat_slot);
    let max_frame = slot
        .as_ref()
        .map_or(switchyard_config::DEFAULT_WEBSOCKET_MAX_FRAME, |s| {
            s.max_frame
        });
    let carried = Carried::WebSocket {
        max_frame: max_frame as u64,
    };
    let counters = route.and_then(|r| stats.routes.get(r));
    let on_reject = |violation: Violation| {
        if let Some(r) = counters {
            let counter = match violation {
                Violation::FrameTooLarge { .. } => &r.websocket_frames_too_large,
                _ => &r.websocket_protocol_errors,
            };
            counter.bump(1);
        }
        tracing::debug!(%violation, "websocket frame refused");
    };
    let (ended, moved) = splice(client, stream, idle, carried, &buf, on_reject).await;
    drop(in_flight);
    drop(slot);
    tracing::debug!(
        ?ended,
        up = moved.up,
        down = moved.down,
        "websocket tunnel closed"
    );
}
