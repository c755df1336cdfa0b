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

use super::conn::UpstreamConn;

/// How long a pooled connection stays idle before its read buffer is freed.
const SHED_AFTER: Duration = Duration::from_secs(1);

struct Idle {
    conn: Box<UpstreamConn>,
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

    /// Takes the most recently used idle connection to `backend` that is still open.
    pub fn take(&self, backend: usize) -> Option<Box<UpstreamConn>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(backend)?;
        let now = coarse_now();
        while let Some(mut entry) = list.pop_back() {
            let fresh = now.saturating_duration_since(entry.since) < self.idle_timeout;
            if fresh && entry.conn.is_reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn put(&self, backend: usize, conn: Box<UpstreamConn>) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(backend) {
            if list.len() >= self.max_idle {
                list.pop_front();
            }
            list.push_back(Idle {
                conn,
                since: coarse_now(),
            });
        }
    }

    /// Closes connections idle longer than the timeout, or closed by the backend meanwhile,
    /// and lets connections idle for a second or more give up their read buffers (a busy
    /// connection keeps its buffer; an idle one costs little more than its socket).
    pub fn sweep(&self) {
        let now = coarse_now();
        for list in self.idle.borrow_mut().iter_mut() {
            list.retain_mut(|e| {
                let idle = now.saturating_duration_since(e.since);
                if idle >= SHED_AFTER {
                    e.conn.shed_buffer();
                }
                idle < self.idle_timeout && e.conn.is_reusable()
            });
        }
    }

    /// Closes the idle connections to `backend` (its slot has a new occupant).
    pub fn clear_backend(&self, backend: usize) {
        if let Some(list) = self.idle.borrow_mut().get_mut(backend) {
            list.clear();
        }
    }

    /// Closes every idle connection (shutdown).
    pub fn clear(&self) {
        for list in self.idle.borrow_mut().iter_mut() {
            list.clear();
        }
    }
}
