//! The monotonic clock the data plane gives the sans-io balancers.

use std::time::{Instant, SystemTime};

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
    /// The wall-clock time at an instant, taken on the last tick: [`wall_at`]'s anchor.
    static WALL: std::cell::Cell<Option<(Instant, SystemTime)>> =
        const { std::cell::Cell::new(None) };
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

/// Refreshes this thread's coarse clock and its wall-clock anchor (called by the reactor's
/// ticker).
pub fn tick_coarse() {
    let now = Instant::now();
    COARSE.with(|c| c.set(Some(now)));
    WALL.with(|w| w.set(Some((now, SystemTime::now()))));
}

/// The wall-clock time at `t` (an instant read on this thread), without reading the wall
/// clock: the anchor taken on the reactor's last tick moved by the monotonic time since. It
/// differs from `SystemTime::now()` at `t` only if the wall clock was stepped within the last
/// [`COARSE_TICK`]; on a thread that never ticks it reads the wall clock.
pub fn wall_at(t: Instant) -> SystemTime {
    match WALL.with(|w| w.get()) {
        Some((at, wall)) if t >= at => wall + (t - at),
        Some((at, wall)) => wall - (at - t),
        None => SystemTime::now(),
    }
}

/// Deadlines checked by the reactor's coarse ticker instead of tokio's timer wheel.
///
/// Registering a tokio timer takes the time driver's lock and a wheel insertion, twice per
/// request for a response timeout that almost never fires. A reactor thread instead keeps its
/// pending deadlines in this table (no lock: one thread), and its ticker marks and wakes the
/// expired ones every [`COARSE_TICK`], so a deadline fires up to one tick late.
#[derive(Debug, Default)]
pub struct Deadlines {
    entries: std::cell::RefCell<Vec<Slot>>,
    free: std::cell::RefCell<Vec<usize>>,
}

#[derive(Debug, Default)]
struct Slot {
    deadline: Option<Instant>,
    waker: Option<std::task::Waker>,
    expired: bool,
}

impl Deadlines {
    /// Runs `fut` until it completes (`Some`) or `deadline` passes (`None`).
    pub async fn run<F: std::future::Future>(
        &self,
        deadline: Instant,
        fut: F,
    ) -> Option<F::Output> {
        let key = self.insert(deadline);
        let _guard = Remove { table: self, key };
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(v));
            }
            let mut entries = self.entries.borrow_mut();
            let slot = &mut entries[key];
            if slot.expired {
                return std::task::Poll::Ready(None);
            }
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
        .await
    }

    fn insert(&self, deadline: Instant) -> usize {
        let slot = Slot {
            deadline: Some(deadline),
            waker: None,
            expired: false,
        };
        let mut entries = self.entries.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(key) => {
                entries[key] = slot;
                key
            }
            None => {
                entries.push(slot);
                entries.len() - 1
            }
        }
    }

    /// Marks every deadline at or before `now` expired and wakes its task.
    pub fn expire(&self, now: Instant) {
        let mut woken = Vec::new();
        for slot in self.entries.borrow_mut().iter_mut() {
            if slot.deadline.is_some_and(|d| d <= now) && !slot.expired {
                slot.expired = true;
                woken.extend(slot.waker.take());
            }
        }
        // Wake outside the borrow: a woken task may register a new deadline.
        for w in woken {
            w.wake();
        }
    }

    /// Deadlines pending (for tests and statistics).
    pub fn pending(&self) -> usize {
        self.entries.borrow().len() - self.free.borrow().len()
    }
}

struct Remove<'a> {
    table: &'a Deadlines,
    key: usize,
}

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        self.table.entries.borrow_mut()[self.key] = Slot::default();
        self.table.free.borrow_mut().push(self.key);
    }
}

/// Milliseconds since the Unix epoch now, from the system clock (0 if it is before the
/// epoch): for timestamps shown to people, never for measuring.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wall_time_follows_the_monotonic_clock_from_the_last_tick() {
        std::thread::spawn(|| {
            let before = SystemTime::now();
            let t = Instant::now();
            // No tick yet on this thread: the wall clock itself.
            assert!(wall_at(t) >= before);
            tick_coarse();
            let (at, wall) = WALL.with(|w| w.get()).unwrap();
            let later = at + Duration::from_millis(250);
            assert_eq!(wall_at(later), wall + Duration::from_millis(250));
            assert_eq!(wall_at(t), wall - (at - t));
            let off = wall_at(Instant::now())
                .duration_since(SystemTime::now())
                .unwrap_or_else(|e| e.duration());
            assert!(off < Duration::from_millis(50), "{off:?}");
        })
        .join()
        .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn completes_or_expires() {
        let table = Deadlines::default();
        let now = Instant::now();
        assert_eq!(
            table.run(now + Duration::from_secs(60), async { 7 }).await,
            Some(7)
        );
        assert_eq!(table.pending(), 0);
        let pending = table.run(now + Duration::from_millis(1), std::future::pending::<()>());
        let expire = async {
            tokio::task::yield_now().await;
            table.expire(now + Duration::from_millis(2));
        };
        let (r, ()) = tokio::join!(pending, expire);
        assert_eq!(r, None);
        assert_eq!(table.pending(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn expiry_before_the_deadline_does_nothing() {
        let table = Deadlines::default();
        let now = Instant::now();
        let fut = table.run(now + Duration::from_secs(10), async {
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            1
        });
        let expire = async {
            tokio::task::yield_now().await;
            table.expire(now);
        };
        let (r, ()) = tokio::join!(fut, expire);
        assert_eq!(r, Some(1));
    }
}
