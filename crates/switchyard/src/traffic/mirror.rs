//! Mirroring's bookkeeping, shared by every reactor thread: how many copies are out (bounded
//! by `mirror_max_in_flight`) and what became of them, for `/stats`. The copies themselves are
//! sent by [`crate::l7`] (see `l7/proxy/mirror.rs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Mirrored requests' counters.
#[derive(Debug, Default)]
pub struct Mirrors {
    /// Copies out now.
    in_flight: AtomicUsize,
    /// Copies sent.
    pub sent: AtomicU64,
    /// Copies the mirror answered (any status).
    pub answered: AtomicU64,
    /// Copies that failed: no backend, connect, timeout, reset (the client never knows).
    pub failed: AtomicU64,
    /// Sampled requests not copied: the body was above `mirror_max_body`.
    pub skipped_too_large: AtomicU64,
    /// Sampled requests not copied: `mirror_max_in_flight` copies were out already.
    pub skipped_busy: AtomicU64,
}

impl Mirrors {
    /// Takes a place for one more copy, unless `max` are out (then counted as skipped); a
    /// place taken is given back with [`Mirrors::release`].
    pub fn admit(&self, max: usize) -> bool {
        let taken = self
            .in_flight
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            self.skipped_busy.fetch_add(1, Relaxed);
        }
        taken.is_ok()
    }

    /// Gives back a place taken by [`Mirrors::admit`].
    pub fn release(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// `/stats`' view.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "in_flight": self.in_flight.load(Relaxed),
            "sent": self.sent.load(Relaxed),
            "answered": self.answered.load(Relaxed),
            "failed": self.failed.load(Relaxed),
            "skipped_too_large": self.skipped_too_large.load(Relaxed),
            "skipped_busy": self.skipped_busy.load(Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_out_are_bounded_and_given_back() {
        let m = Mirrors::default();
        assert!(m.admit(2) && m.admit(2));
        assert!(!m.admit(2));
        assert_eq!(m.skipped_busy.load(Relaxed), 1);
        m.release();
        assert!(m.admit(2));
        m.release();
        assert_eq!(m.report()["in_flight"], 1);
    }
}
