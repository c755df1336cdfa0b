//! Backend state and load-balancing algorithms for switchyard.
//!
//! This crate is sans-io: it opens no sockets and reads no clock. The proxy feeds it what it
//! observes (a request started or finished, a connect failed, a latency sample, the current time
//! in milliseconds on its own monotonic clock) and asks it to pick a backend. That keeps every
//! algorithm unit-, property- and simulation-testable, fast and deterministic.
//!
//! - [`BackendState`] is the shared, lock-free state of one backend (weight, in-flight count,
//!   EWMA latency, up/down). One instance per backend is shared by all reactor threads.
//! - [`Balancer`] is an algorithm. Each reactor thread owns its own instance per route, so an
//!   algorithm may keep mutable state (round-robin position, a random generator) without locks.
//! - [`registry`] maps the names used in configuration (`balancer = NAME`) to constructors:
//!   adding an algorithm is one new file plus one line there.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
pub mod consistent_hash;
pub mod gpu;
pub mod least_conn;
pub mod least_queue;
pub mod outlier;
pub mod prefix_cache;
pub mod registry;
pub mod response_time;
mod rng;
pub mod round_robin;
pub mod sample;

pub use backend::{BackendState, InFlight, LoadFigures, PEAK_EWMA_DECAY_MS};
pub use consistent_hash::hash_bytes;
pub use registry::{build, is_known, names};
pub use rng::SplitMix64;

use std::fmt;
use std::sync::Arc;

/// What the proxy knows about the request being balanced.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// Milliseconds on the caller's monotonic clock; compared with the times given to
    /// [`BackendState::mark_down_until`].
    pub now_ms: u64,
    /// Indices (into the slice given to [`Balancer::pick`]) that must not be chosen, for
    /// instance a backend that just refused the connection this request is being retried after.
    pub exclude: &'a [usize],
    /// The request's affinity key (see [`hash_bytes`]) for balancers that use one
    /// (`consistent_hash`); `None` when the request carries none.
    pub key: Option<u64>,
    /// The request's prompt as a chain of block hashes (see [`prefix_cache::block_chain`]),
    /// for `prefix_cache`; empty when unknown.
    pub prefix: &'a [u64],
}

impl<'a> PickContext<'a> {
    /// A context at time `now_ms` that excludes nothing.
    pub fn at(now_ms: u64) -> Self {
        PickContext {
            now_ms,
            exclude: &[],
            key: None,
            prefix: &[],
        }
    }

    /// Whether backend `index` of `backends` may be chosen: it is up and not excluded.
    pub fn eligible(&self, index: usize, backend: &BackendState) -> bool {
        backend.is_available(self.now_ms) && !self.exclude.contains(&index)
    }
}

/// The eligible backend with the smallest `key`, scanning from `*next` round the group so that
/// ties go to each backend in turn; `*next` moves past the one chosen. Shared by the balancers
/// that rank every backend (`least_queue`, `gpu`).
pub(crate) fn rotating_min<K: PartialOrd>(
    backends: &[Arc<BackendState>],
    ctx: &PickContext<'_>,
    next: &mut usize,
    mut key: impl FnMut(&BackendState) -> K,
) -> Option<usize> {
    let n = backends.len();
    let mut best: Option<(usize, K)> = None;
    for k in 0..n {
        let i = (*next + k) % n;
        let b = &backends[i];
        if !ctx.eligible(i, b) {
            continue;
        }
        let v = key(b);
        if best.as_ref().is_none_or(|(_, bv)| v < *bv) {
            best = Some((i, v));
        }
    }
    let (chosen, _) = best?;
    *next = (chosen + 1) % n;
    Some(chosen)
}

/// A load-balancing algorithm over a group of backends.
///
/// Instances are per thread (`&mut self`), so an implementation needs no interior mutability for
/// its own state; what is shared across threads lives in [`BackendState`].
pub trait Balancer: Send + fmt::Debug {
    /// The name this algorithm is registered under.
    fn name(&self) -> &'static str;

    /// Picks one backend from `backends`, returning its index, or `None` when no backend is
    /// eligible (all down or excluded). The slice is the route's backend group; it is the same
    /// slice, in the same order, on every call for a given instance.
    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize>;

    /// A new instance for another reactor thread that shares what this one shares between
    /// threads (`prefix_cache`: its index), or `None` when instances share nothing and each
    /// thread builds its own from the registry.
    fn share(&self, seed: u64) -> Option<Box<dyn Balancer>> {
        let _ = seed;
        None
    }

    /// Entries in the balancer's own index, for algorithms that keep one (`prefix_cache`).
    fn index_len(&self) -> Option<usize> {
        None
    }

    /// Why backend `chosen` was picked by the last call to [`Balancer::pick`], as
    /// `name=value` terms (for the `x-switchyard-route` header of routes with `explain`).
    fn explain(
        &self,
        backends: &[Arc<BackendState>],
        chosen: usize,
        ctx: &PickContext<'_>,
    ) -> String {
        let _ = ctx;
        let b = &backends[chosen];
        format!("in_flight={} weight={}", b.in_flight(), b.weight())
    }
}
