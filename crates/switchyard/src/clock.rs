//! The monotonic clock the data plane gives the sans-io balancers.

use std::time::Instant;

/// Milliseconds since the server started, never going backwards.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    /// Milliseconds since start.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// Milliseconds since start at `t` (0 for instants before start).
    pub fn ms_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }
}

thread_local! {
    static COARSE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// How often a reactor thread refreshes its coarse clock.
pub const COARSE_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// This thread's coarse "now": refreshed every [`COARSE_TICK`] by the reactor (as nginx caches
/// its time once per event-loop turn), so the hot path can stamp idle times and deadlines
/// without reading the clock. It lags real time by at most one tick; on a thread that never
/// ticks it reads the real clock.
pub fn coarse_now() -> Instant {
    COARSE.with(|c| c.get()).unwrap_or_else(Instant::now)
}

/// Refreshes this thread's coarse clock (called by the reactor's ticker).
pub fn tick_coarse() {
    COARSE.with(|c| c.set(Some(Instant::now())));
}
