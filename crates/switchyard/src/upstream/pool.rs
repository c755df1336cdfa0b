//! The per-thread pool of idle upstream keep-alive connections.
//!
//! Each reactor thread owns one pool (no lock: it is only ever touched from its thread). Idle
//! connections are kept per backend, newest last; a request takes the newest (warmest) one, and
//! the periodic sweep closes those idle longer than `upstream_keepalive_timeout`. At most
//! `upstream_keepalive` idle connections are kept per backend; a connection returned beyond
//! that is closed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::clock::coarse_now;

use hyper::client::conn::http1::SendRequest;

use crate::l7::body::RequestBody;

/// A handle to send requests on one upstream HTTP/1.1 connection.
pub type Sender = SendRequest<RequestBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by backend index.
pub struct Pool {
    idle: RefCell<Vec<VecDeque<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// A pool for `backends` backends.
    pub fn new(backends: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: RefCell::new((0..backends).map(|_| VecDeque::new()).collect()),
            max_idle,
            idle_timeout,
        }
    }

    /// Takes the most recently used idle connection to `backend` that is still open, with how
    /// long it has been idle.
    pub fn take(&self, backend: usize) -> Option<(Sender, Duration)> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(backend)?;
        let now = coarse_now();
        while let Some(entry) = list.pop_back() {
            let idle_for = now.saturating_duration_since(entry.since);
            if !entry.sender.is_closed() && idle_for < self.idle_timeout {
                return Some((entry.sender, idle_for));
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn put(&self, backend: usize, sender: Sender) {
        if self.max_idle == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(backend) {
            if list.len() >= self.max_idle {
                list.pop_front();
            }
            list.push_back(Idle {
                sender,
                since: coarse_now(),
            });
        }
    }

    /// Closes connections idle longer than the timeout, or already closed by the backend.
    pub fn sweep(&self) {
        let now = coarse_now();
        for list in self.idle.borrow_mut().iter_mut() {
            list.retain(|e| {
                !e.sender.is_closed() && now.saturating_duration_since(e.since) < self.idle_timeout
            });
        }
    }

    /// Closes every idle connection (shutdown).
    pub fn clear(&self) {
        for list in self.idle.borrow_mut().iter_mut() {
            list.clear();
        }
    }
}
