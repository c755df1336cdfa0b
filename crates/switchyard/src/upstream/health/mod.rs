//! Active health checks and the progress check.
//!
//! Active checks (`health = tcp | http ... | ai [completion] | script ...`) run for each
//! backend that has one, every `health_interval` plus or minus `health_jitter`, each within
//! `health_timeout` ([`probe`], [`script`]). `health_fall` consecutive failures mark the
//! backend down until `health_rise` consecutive passes bring it back.
//!
//! The progress check ([`progress`]) judges a backend with `progress_timeout` from its scraped
//! metrics: requests running while the generated-token counter stands still for the timeout
//! mark it down, until the counter moves again or no request is running.
//!
//! Both run beside the metrics scrapers on the monitor thread, off the data plane, and share
//! one [`HealthStats`] per backend: the backend is down while either says so. They combine
//! with passive health: a backend marked down by any of them is skipped.

pub mod probe;
pub mod progress;
pub mod schedule;
pub mod script;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use switchyard_balance::BackendState;
use switchyard_config::{Address, HealthCheck, ModelId};

use crate::server::Shared;
use crate::upstream::directory::Backend;
pub use progress::ProgressWatch;

/// Health state as shown in `/stats`.
pub const UNKNOWN: u8 = 0;
/// Passing.
pub const UP: u8 = 1;
/// Failed `health_fall` times in a row, or stalled.
pub const DOWN: u8 = 2;

/// Per backend, how its checks went.
#[derive(Debug, Default)]
pub struct HealthStats {
    /// Active checks passed.
    pub ok: AtomicU64,
    /// Active checks failed, plus scrapes that found the engine stalled.
    pub failed: AtomicU64,
    /// [`UNKNOWN`], [`UP`] or [`DOWN`]: the active check's state, or [`DOWN`] while the
    /// progress check finds the engine stalled.
    pub state: AtomicU8,
    /// What each source says; the lock keeps the backend's mark in step with both.
    sources: Mutex<Sources>,
}

/// The verdicts behind [`HealthStats::state`].
#[derive(Debug, Default, Clone, Copy)]
struct Sources {
    /// The active check's state ([`UNKNOWN`], [`UP`] or [`DOWN`]).
    check: u8,
    /// Whether the progress check finds the engine stalled.
    stalled: bool,
}

impl Sources {
    fn combined(self) -> u8 {
        if self.stalled {
            DOWN
        } else {
            self.check
        }
    }
}

/// A change of a backend's combined health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The state before.
    pub old: u8,
    /// The state after.
    pub new: u8,
}

impl Change {
    /// Whether this change took the backend out of rotation.
    pub fn went_down(self) -> bool {
        self.old != DOWN && self.new == DOWN
    }

    /// Whether this change put the backend back into rotation.
    pub fn came_back(self) -> bool {
        self.old == DOWN && self.new != DOWN
    }
}

impl HealthStats {
    /// Forgets everything: its slot has a new backend (by the monitor, the only writer then).
    pub fn reset(&self) {
        self.ok.store(0, Relaxed);
        self.failed.store(0, Relaxed);
        self.state.store(UNKNOWN, Relaxed);
        *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = Sources::default();
    }

    /// The state's name.
    pub fn state_name(&self) -> &'static str {
        match self.state.load(Relaxed) {
            UP => "up",
            DOWN => "down",
            _ => "unknown",
        }
    }

    /// Records the active check's state and marks `backend` down or up when the combined
    /// state enters or leaves [`DOWN`].
    pub fn set_check(&self, state: u8, backend: &BackendState) -> Change {
        self.update(backend, |s| s.check = state)
    }

    /// Records whether the progress check finds the engine stalled, marking `backend` as
    /// [`set_check`](Self::set_check) does.
    pub fn set_stalled(&self, stalled: bool, backend: &BackendState) -> Change {
        self.update(backend, |s| s.stalled = stalled)
    }

    /// Whether the progress check currently holds the backend down.
    pub fn is_stalled(&self) -> bool {
        self.lock().stalled
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, backend: &BackendState, f: impl FnOnce(&mut Sources)) -> Change {
        let mut sources = self.lock();
        let old = sources.combined();
        f(&mut sources);
        let new = sources.combined();
        let change = Change { old, new };
        if change.went_down() {
            backend.mark_down_until(u64::MAX);
        } else if change.came_back() {
            backend.mark_up();
        }
        self.state.store(new, Relaxed);
        change
    }
}

/// What a check needs to know about its backend.
#[derive(Debug, Clone)]
pub struct Target {
    /// The backend's name.
    pub name: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The configured address (the `Host` header, and the script's environment).
    pub address: Address,
    /// The models it declares.
    pub models: Vec<ModelId>,
    /// With `tls = true`, HTTP checks run over TLS.
    pub tls: Option<Arc<crate::upstream::tls::UpstreamTls>>,
}

/// Checks `backend` forever (until the monitor aborts the task: the backend left its slot).
pub async fn check_loop(shared: Arc<Shared>, backend: Arc<Backend>, check: HealthCheck) {
    let cfg = &shared.config.server;
    let i = backend.slot;
    let b = &backend.config;
    let target = Target {
        name: b.name.clone(),
        addr: backend.addr,
        address: b.address.clone(),
        models: b.models.clone(),
        tls: backend.tls.clone(),
    };
    let stats = &shared.health[i];
    let state = &backend.state;
    let mut schedule = schedule::Schedule::new(
        cfg.health_interval,
        cfg.health_jitter,
        schedule::seed(i, &target.name),
    );
    let mut next = tokio::time::Instant::now() + schedule.first();
    let (mut passes, mut failures) = (0u32, 0u32);
    let mut own = UNKNOWN;
    loop {
        tokio::time::sleep_until(next).await;
        let started = tokio::time::Instant::now();
        next = started + schedule.wait();
        let result = match tokio::time::timeout(
            cfg.health_timeout,
            probe::run(&target, &check, cfg.health_timeout),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(probe::ProbeError::Timeout(cfg.health_timeout)),
        };
        match result {
            Ok(()) => {
                stats.ok.fetch_add(1, Relaxed);
                passes = passes.saturating_add(1);
                failures = 0;
                let rises = match own {
                    DOWN => passes >= cfg.health_rise,
                    UNKNOWN => true,
                    _ => false,
                };
                if rises {
                    let was_down = own == DOWN;
                    own = UP;
                    let change = stats.set_check(UP, state);
                    if change.came_back() {
                        tracing::info!(backend = %target.name, check = %check, "health check passing again: backend up");
                    } else if was_down {
                        tracing::info!(backend = %target.name, check = %check, "health check passing again; the backend stays down while its engine makes no progress");
                    }
                }
            }
            Err(e) => {
                stats.failed.fetch_add(1, Relaxed);
                failures = failures.saturating_add(1);
                passes = 0;
                if own != DOWN && failures >= cfg.health_fall {
                    own = DOWN;
                    stats.set_check(DOWN, state);
                    tracing::warn!(backend = %target.name, check = %check, failures, reason = %e, "health check failing: backend down");
                } else {
                    tracing::debug!(backend = %target.name, check = %check, failures, reason = %e, "health check failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_source_holds_the_backend_down() {
        let b = BackendState::new("a", 1);
        let h = HealthStats::default();
        assert_eq!(h.state_name(), "unknown");
        assert!(!h.set_check(UP, &b).went_down());
        assert_eq!(h.state_name(), "up");
        // The engine stalls: down, though its check passes.
        assert!(h.set_stalled(true, &b).went_down());
        assert!(b.is_down(0) && h.is_stalled());
        // The check fails too, then passes again: still down while stalled.
        assert_eq!(
            h.set_check(DOWN, &b),
            Change {
                old: DOWN,
                new: DOWN
            }
        );
        assert_eq!(
            h.set_check(UP, &b),
            Change {
                old: DOWN,
                new: DOWN
            }
        );
        assert!(b.is_down(0));
        assert_eq!(h.state_name(), "down");
        // Progress resumes: back up.
        assert!(h.set_stalled(false, &b).came_back());
        assert!(b.is_available(0));
        assert_eq!(h.state_name(), "up");
        // The check alone takes it down and brings it back.
        assert!(h.set_check(DOWN, &b).went_down());
        assert!(b.is_down(0));
        assert!(h.set_check(UP, &b).came_back());
        assert!(b.is_available(0));
    }

    #[test]
    fn a_stall_without_an_active_check_goes_back_to_unknown() {
        let b = BackendState::new("a", 1);
        let h = HealthStats::default();
        assert!(h.set_stalled(true, &b).went_down());
        assert_eq!(h.state_name(), "down");
        assert_eq!(
            h.set_stalled(false, &b),
            Change {
                old: DOWN,
                new: UNKNOWN
            }
        );
        assert!(b.is_available(0));
        assert_eq!(h.state_name(), "unknown");
    }
}
