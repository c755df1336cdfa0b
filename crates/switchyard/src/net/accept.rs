//! The accept loop every TCP listener shares (`listen`, `[listener NAME]`, TCP `[l4 NAME]`):
//! accept until shutdown, pass each connection through the accept limiter (a refused one is
//! closed at once), and back off instead of spinning when accepting fails (out of file
//! descriptors or memory).
//!
//! After each connection the reactor wakes for, the loop takes up to [`BURST`] more that are
//! already queued with plain non-blocking `accept` calls: a refused one is closed without
//! ever being registered with the reactor (under a flood of new connections that saves two
//! `epoll_ctl` calls per refusal), an admitted one is registered then. After a full burst the
//! loop yields, so requests on the same thread get their turn during a flood.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::accept_limit::{self, Permit};
use crate::server::Shared;

/// How long accepting pauses after it failed.
const BACKOFF: Duration = Duration::from_millis(50);

/// Connections taken per wake-up beyond the first, before yielding to other tasks.
pub const BURST: usize = 32;

/// Accepts on `socket` until `shutdown` says so, handing each admitted connection (with
/// `TCP_NODELAY` set, and its accept-limiter permit to hold while it is open) to `admitted`.
/// When `closed` turns true (a reload replaced or removed the port), takes the connections
/// already queued on the socket, then returns: the caller drops the socket, and connections
/// still queued would be reset with it. `what` names the listener kind in the log line of a
/// failed accept.
pub async fn accept_until_shutdown<F>(
    socket: &TcpListener,
    shared: &Shared,
    shutdown: &mut watch::Receiver<bool>,
    closed: Option<watch::Receiver<bool>>,
    what: &'static str,
    mut admitted: F,
) where
    F: FnMut(TcpStream, SocketAddr, Option<Permit>),
{
    if *shutdown.borrow() {
        return;
    }
    let mut closed = closed;
    let closing = async {
        match closed.as_mut() {
            // An error: the flag's owner is gone, so is the port.
            Some(c) => drop(c.wait_for(|v| *v).await),
            None => std::future::pending().await,
        }
    };
    let mut closing = std::pin::pin!(closing);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            () = &mut closing => {
                while accept_queued(socket, shared, &mut admitted) == BURST {}
                return;
            }
            r = socket.accept() => match r {
                Ok((stream, peer)) => {
                    if let Ok(permit) = accept_limit::check(shared, peer) {
                        let _ = stream.set_nodelay(true);
                        admitted(stream, peer, permit);
                    } // else closed at once, counted
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        if accept_queued(socket, shared, &mut admitted) == BURST {
            tokio::task::yield_now().await;
        }
    }
}

/// Accepts up to [`BURST`] connections already queued on `socket` without waiting (see the
/// module documentation); returns how many it took.
fn accept_queued<F>(socket: &TcpListener, shared: &Shared, admitted: &mut F) -> usize
where
    F: FnMut(TcpStream, SocketAddr, Option<Permit>),
{
    let raw = socket2::SockRef::from(socket);
    for taken in 0..BURST {
        // Would-block (the queue is empty) or an error: the reactor's accept takes over,
        // and reports an error that persists.
        let Ok((conn, addr)) = raw.accept() else {
            return taken;
        };
        let Some(peer) = addr.as_socket() else {
            continue;
        };
        let Ok(permit) = accept_limit::check(shared, peer) else {
            continue; // `conn` dropped: closed at once, counted
        };
        let conn: std::net::TcpStream = conn.into();
        if conn.set_nonblocking(true).is_err() {
            continue;
        }
        if let Ok(stream) = TcpStream::from_std(conn) {
            let _ = stream.set_nodelay(true);
            admitted(stream, peer, permit);
        }
    }
    BURST
}
