//! A reactor thread's side of [`ports`](super::ports): it takes the sockets handed to it (at
//! start, then by each reload that adds or replaces a port) and runs their accept loops, which
//! end when the port is closed or at shutdown.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::ports::Socket;
use crate::l7::proxy::Worker;
use crate::server::Shared;

/// Starts each socket that comes in on `sockets`, until the sender is gone.
pub async fn run(
    thread: usize,
    worker: Rc<Worker>,
    mut sockets: mpsc::UnboundedReceiver<Socket>,
    active: Rc<Cell<usize>>,
    shutdown: watch::Receiver<bool>,
) {
    while let Some(socket) = sockets.recv().await {
        if let Err(e) = start(thread, &worker, socket, &active, &shutdown) {
            tracing::error!("reactor {thread}: {e}");
        }
    }
}

/// Why a socket could not be run.
#[derive(Debug)]
struct StartFailed {
    section: String,
    reason: String,
}

impl std::fmt::Display for StartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot run {}: {}", self.section, self.reason)
    }
}

/// Spawns the accept (or receive) loop of `socket` on this thread.
fn start(
    thread: usize,
    worker: &Rc<Worker>,
    socket: Socket,
    active: &Rc<Cell<usize>>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), StartFailed> {
    let shared: &Arc<Shared> = &worker.shared;
    match socket {
        Socket::Listener(state, l) => {
            let failed = |reason: String| StartFailed {
                section: format!("[listener {}]", state.config.name),
                reason,
            };
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| failed(e.to_string()))?;
            let tunnels = match &state.fallback {
                None => None,
                Some(port) => Some(Rc::new(
                    crate::l4::tcp::Listener::new(Arc::clone(shared), thread, Arc::clone(port))
                        .map_err(|e| failed(format!("no fallback: {e}")))?,
                )),
            };
            tokio::task::spawn_local(super::listeners::accept_loop(
                l,
                Rc::clone(worker),
                state,
                thread,
                tunnels,
                Rc::clone(active),
                shutdown.clone(),
            ));
        }
        Socket::Tcp(port, l) => {
            let failed = |reason: String| StartFailed {
                section: format!("[l4 {}]", port.config.name),
                reason,
            };
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| failed(e.to_string()))?;
            let tunnels =
                crate::l4::tcp::Listener::new(Arc::clone(shared), thread, Arc::clone(&port))
                    .map_err(|e| failed(e.to_string()))?;
            tokio::task::spawn_local(crate::l4::tcp::accept_loop(
                l,
                Rc::new(tunnels),
                Rc::clone(active),
                shutdown.clone(),
            ));
        }
        Socket::Udp(port, s) => {
            let failed = |reason: String| StartFailed {
                section: format!("[l4 {}]", port.config.name),
                reason,
            };
            let s = tokio::net::UdpSocket::from_std(s).map_err(|e| failed(e.to_string()))?;
            let sessions =
                crate::l4::udp::Listener::new(Arc::clone(shared), thread, Arc::clone(&port))
                    .map_err(|e| failed(e.to_string()))?;
            // Counted in `active` until it has ended its sessions (closed, or at shutdown).
            active.set(active.get() + 1);
            let (active, shutdown) = (Rc::clone(active), shutdown.clone());
            tokio::task::spawn_local(async move {
                crate::l4::udp::serve(s, Rc::new(sessions), shutdown).await;
                active.set(active.get() - 1);
            });
        }
    }
    Ok(())
}
