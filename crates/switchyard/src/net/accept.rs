//! The accept loop every TCP listener shares (`listen`, `[listener NAME]`, TCP `[l4 NAME]`):
//! accept until shutdown, pass each connection through the accept limiter (a refused one is
//! closed at once), and back off instead of spinning when accepting fails (out of file
//! descriptors or memory).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::accept_limit::{self, Permit};
use crate::server::Shared;

/// How long accepting pauses after it failed.
const BACKOFF: Duration = Duration::from_millis(50);

/// Accepts on `socket` until `shutdown` says so, handing each admitted connection (with
/// `TCP_NODELAY` set, and its accept-limiter permit to hold while it is open) to `admitted`.
/// `what` names the listener kind in the log line of a failed accept.
pub async fn accept_until_shutdown<F>(
    socket: &TcpListener,
    shared: &Shared,
    shutdown: &mut watch::Receiver<bool>,
    what: &'static str,
    mut admitted: F,
) where
    F: FnMut(TcpStream, SocketAddr, Option<Permit>),
{
    if *shutdown.borrow() {
        return;
    }
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            r = socket.accept() => match r {
                Ok((stream, peer)) => {
                    let Ok(permit) = accept_limit::check(shared, peer) else {
                        continue; // closed at once, counted
                    };
                    let _ = stream.set_nodelay(true);
                    admitted(stream, peer, permit);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }
}
