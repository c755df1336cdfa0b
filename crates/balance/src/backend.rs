//! The shared, lock-free state of one backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Weight of a new latency sample in the moving average (the rest is the old average).
const EWMA_ALPHA: f64 = 0.2;

/// Time constant of the peak-EWMA latency's decay, in milliseconds (as linkerd's balancer).
pub const PEAK_EWMA_DECAY_MS: f64 = 10_000.0;

/// What every reactor thread knows about one backend: its configured weight, how many requests
/// it is serving right now, how fast it has been answering, and whether it is up.
///
/// All fields are atomics updated with relaxed ordering: they are statistics that guide choices,
/// not synchronisation, so a slightly stale read is harmless and no lock is ever taken.
///
/// Up/down is set from outside: passive health (see [`crate::outlier`]) and active checks mark
/// the backend down until a time on the caller's clock.
#[derive(Debug)]
pub struct BackendState {
    name: String,
    weight: u32,
    in_flight: AtomicU64,
    /// EWMA of latency in microseconds, as `f64` bits; 0 until the first sample.
    ewma_us: AtomicU64,
    /// Down until this time (caller's milliseconds); 0 when up.
    down_until_ms: AtomicU64,
    /// Peak-EWMA of response latency in microseconds, as `f64` bits; 0 until the first sample.
    peak_ewma_us: AtomicU64,
    /// When `peak_ewma_us` was last updated (caller's milliseconds).
    peak_ewma_at_ms: AtomicU64,
    /// Avoid until this time (caller's milliseconds) after a 429/503; 0 when not penalised.
    penalty_until_ms: AtomicU64,
    /// The engine's own figures, from its metrics endpoint.
    figures: Figures,
}

/// The engine's figures as last scraped, with switchyard's in-flight count at that moment.
#[derive(Debug, Default)]
struct Figures {
    waiting: AtomicU64,
    running: AtomicU64,
    /// KV-cache usage 0..1, as `f64` bits (NaN bits when the engine does not report it).
    kv_cache: AtomicU64,
    /// GPU utilisation 0..1, as `f64` bits (NaN bits when unknown).
    gpu_util: AtomicU64,
    /// GPU framebuffer memory in use 0..1, as `f64` bits (NaN bits when unknown).
    gpu_memory: AtomicU64,
    in_flight_at_scrape: AtomicU64,
    /// Figures are trusted until this time (caller's milliseconds); 0 = never scraped.
    valid_until_ms: AtomicU64,
    scraped_at_ms: AtomicU64,
}

/// What an engine reported about its load (see [`BackendState::record_figures`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadFigures {
    /// Requests queued in the engine, not yet running.
    pub waiting: Option<u64>,
    /// Requests the engine is running.
    pub running: Option<u64>,
    /// KV-cache usage, 0..1.
    pub kv_cache_usage: Option<f64>,
    /// GPU utilisation, 0..1.
    pub gpu_util: Option<f64>,
    /// GPU memory in use, 0..1 (framebuffer used over used + free).
    pub gpu_memory_usage: Option<f64>,
    /// Tokens the engine has generated since it started (a counter). Read by the progress
    /// check from each scrape; not kept in [`BackendState`], so
    /// [`figures`](BackendState::figures) reports it as `None`.
    pub generation_tokens: Option<u64>,
}

impl BackendState {
    /// A backend that is up, idle, and has no latency history. A weight of 0 is raised to 1.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        BackendState {
            name: name.into(),
            weight: weight.max(1),
            in_flight: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0f64.to_bits()),
            down_until_ms: AtomicU64::new(0),
            peak_ewma_us: AtomicU64::new(0f64.to_bits()),
            peak_ewma_at_ms: AtomicU64::new(0),
            penalty_until_ms: AtomicU64::new(0),
            figures: Figures::default(),
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured weight (at least 1).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Requests currently being served by this backend, across all threads.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: Arc::clone(self),
        }
    }

    /// Whether the backend may be chosen at `now_ms`.
    pub fn is_available(&self, now_ms: u64) -> bool {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        until == 0 || now_ms >= until
    }

    /// Whether the backend is marked down at `now_ms` (the opposite of
    /// [`is_available`](Self::is_available)).
    pub fn is_down(&self, now_ms: u64) -> bool {
        !self.is_available(now_ms)
    }

    /// Marks the backend down until `until_ms` (an ejection or an active health check). Never
    /// shortens a longer mark: an ejection does not end a health check's "until it passes".
    pub fn mark_down_until(&self, until_ms: u64) {
        self.down_until_ms
            .fetch_max(until_ms.max(1), Ordering::Relaxed);
    }

    /// Marks the backend up at once.
    pub fn mark_up(&self) {
        self.down_until_ms.store(0, Ordering::Relaxed);
    }

    /// Feeds one latency sample, in microseconds, into the moving average.
    pub fn observe_latency_us(&self, sample_us: u64) {
        let old = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        let sample = sample_us as f64;
        let new = if old == 0.0 {
            sample
        } else {
            old + (sample - old) * EWMA_ALPHA
        };
        self.ewma_us.store(new.to_bits(), Ordering::Relaxed);
    }

    /// The moving average of latency in microseconds (0 before the first sample).
    pub fn ewma_latency_us(&self) -> f64 {
        f64::from_bits(self.ewma_us.load(Ordering::Relaxed))
    }

    /// Feeds a latency sample into the peak-EWMA: a sample above the average replaces it at
    /// once (a backend that slows down is noticed on its first slow answer), one below pulls
    /// it down with a weight that grows with the time since the last sample (time constant
    /// [`PEAK_EWMA_DECAY_MS`]), so a fast backend's record fades rather than sticks.
    pub fn observe_peak_latency_us(&self, sample_us: u64, now_ms: u64) {
        let old = f64::from_bits(self.peak_ewma_us.load(Ordering::Relaxed));
        let last = self.peak_ewma_at_ms.swap(now_ms, Ordering::Relaxed);
        let sample = sample_us as f64;
        let new = if old == 0.0 || sample > old {
            sample
        } else {
            let elapsed = now_ms.saturating_sub(last) as f64;
            let w = (-elapsed / PEAK_EWMA_DECAY_MS).exp();
            old * w + sample * (1.0 - w)
        };
        self.peak_ewma_us.store(new.to_bits(), Ordering::Relaxed);
    }

    /// The peak-EWMA latency in microseconds, decayed towards zero for the time since the last
    /// sample, so a backend that has not been tried for a while gets tried again (0 before the
    /// first sample).
    pub fn peak_latency_us(&self, now_ms: u64) -> f64 {
        let v = f64::from_bits(self.peak_ewma_us.load(Ordering::Relaxed));
        let last = self.peak_ewma_at_ms.load(Ordering::Relaxed);
        let idle = now_ms.saturating_sub(last) as f64;
        v * (-idle / PEAK_EWMA_DECAY_MS).exp()
    }

    /// Stores figures scraped at `now_ms`, trusted until `now_ms + max_age_ms`. The in-flight
    /// count at this moment is remembered: requests sent after it are not in the figures yet.
    pub fn record_figures(&self, f: LoadFigures, now_ms: u64, max_age_ms: u64) {
        let fig = &self.figures;
        fig.waiting
            .store(f.waiting.unwrap_or(u64::MAX), Ordering::Relaxed);
        fig.running
            .store(f.running.unwrap_or(u64::MAX), Ordering::Relaxed);
        fig.kv_cache.store(
            f.kv_cache_usage.unwrap_or(f64::NAN).to_bits(),
            Ordering::Relaxed,
        );
        fig.gpu_util
            .store(f.gpu_util.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
        fig.gpu_memory.store(
            f.gpu_memory_usage.unwrap_or(f64::NAN).to_bits(),
            Ordering::Relaxed,
        );
        fig.in_flight_at_scrape
            .store(self.in_flight(), Ordering::Relaxed);
        fig.scraped_at_ms.store(now_ms, Ordering::Relaxed);
        fig.valid_until_ms
            .store(now_ms.saturating_add(max_age_ms).max(1), Ordering::Relaxed);
    }

    /// The figures if they are fresh at `now_ms`: stale or missing figures are `None`, never
    /// read as an idle engine.
    pub fn figures(&self, now_ms: u64) -> Option<LoadFigures> {
        let fig = &self.figures;
        if now_ms >= fig.valid_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let count = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|v| *v != u64::MAX);
        let ratio =
            |a: &AtomicU64| Some(f64::from_bits(a.load(Ordering::Relaxed))).filter(|v| !v.is_nan());
        Some(LoadFigures {
            waiting: count(&fig.waiting),
            running: count(&fig.running),
            kv_cache_usage: ratio(&fig.kv_cache),
            gpu_util: ratio(&fig.gpu_util),
            gpu_memory_usage: ratio(&fig.gpu_memory),
            generation_tokens: None,
        })
    }

    /// When figures were last scraped (caller's milliseconds), if ever.
    pub fn figures_scraped_at(&self) -> Option<u64> {
        let at = self.figures.scraped_at_ms.load(Ordering::Relaxed);
        (self.figures.valid_until_ms.load(Ordering::Relaxed) != 0).then_some(at)
    }

    /// The engine's queue as best known at `now_ms`: waiting + running from fresh figures plus
    /// the requests switchyard sent since they were scraped; without fresh queue figures,
    /// switchyard's own in-flight count.
    pub fn queue_estimate(&self, now_ms: u64) -> u64 {
        let in_flight = self.in_flight();
        match self.figures(now_ms) {
            Some(LoadFigures {
                waiting: Some(w),
                running: Some(r),
                ..
            }) => {
                let since = in_flight
                    .saturating_sub(self.figures.in_flight_at_scrape.load(Ordering::Relaxed));
                w + r + since
            }
            _ => in_flight,
        }
    }

    /// Records that the backend asked for less traffic (429/503) until `until_ms`.
    pub fn penalize_until(&self, until_ms: u64) {
        self.penalty_until_ms.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// Whether the backend asked for less traffic and the time it asked for has not passed.
    pub fn is_penalized(&self, now_ms: u64) -> bool {
        now_ms < self.penalty_until_ms.load(Ordering::Relaxed)
    }
}

/// A request in flight on a backend; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<BackendState>,
}

impl InFlight {
    /// The backend this request runs on.
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_guards() {
        let b = Arc::new(BackendState::new("a", 1));
        let g1 = b.start_request();
        let g2 = b.start_request();
        assert_eq!(b.in_flight(), 2);
        drop(g1);
        assert_eq!(b.in_flight(), 1);
        drop(g2);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn ewma_moves_toward_samples() {
        let b = BackendState::new("a", 1);
        assert_eq!(b.ewma_latency_us(), 0.0);
        b.observe_latency_us(1_000);
        assert_eq!(b.ewma_latency_us(), 1_000.0);
        b.observe_latency_us(2_000);
        assert!((b.ewma_latency_us() - 1_200.0).abs() < 1e-9);
    }

    #[test]
    fn weight_zero_is_raised_to_one() {
        assert_eq!(BackendState::new("a", 0).weight(), 1);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let b = BackendState::new("a", 1);
        assert_eq!(b.peak_latency_us(0), 0.0);
        b.observe_peak_latency_us(1_000, 0);
        b.observe_peak_latency_us(5_000, 1);
        assert_eq!(b.peak_latency_us(1), 5_000.0);
        // A fast sample right after barely moves it; after a long pause it counts fully.
        b.observe_peak_latency_us(1_000, 2);
        assert!(b.peak_latency_us(2) > 4_900.0);
        b.observe_peak_latency_us(1_000, 100_000);
        assert!(b.peak_latency_us(100_000) < 1_100.0);
        // Untouched, the figure fades so the backend is tried again.
        assert!(b.peak_latency_us(200_000) < 1.0);
    }

    #[test]
    fn penalty_lasts_until_its_time() {
        let b = BackendState::new("a", 1);
        assert!(!b.is_penalized(0));
        b.penalize_until(1_000);
        b.penalize_until(500); // an earlier end does not shorten it
        assert!(b.is_penalized(999));
        assert!(!b.is_penalized(1_000));
    }

    #[test]
    fn figures_expire_and_queue_estimate_falls_back() {
        let b = Arc::new(BackendState::new("a", 1));
        let _two: Vec<_> = (0..2).map(|_| b.start_request()).collect();
        assert_eq!(b.queue_estimate(0), 2); // never scraped: own in-flight count
        let f = LoadFigures {
            waiting: Some(7),
            running: Some(3),
            kv_cache_usage: Some(0.5),
            gpu_util: None,
            gpu_memory_usage: Some(0.25),
            generation_tokens: None,
        };
        b.record_figures(f, 1_000, 5_000);
        assert_eq!(b.figures(1_001), Some(f));
        assert_eq!(b.queue_estimate(1_001), 10);
        let _third = b.start_request(); // sent after the scrape: not in the figures yet
        assert_eq!(b.queue_estimate(1_002), 11);
        assert_eq!(b.figures(6_000), None); // stale
        assert_eq!(b.queue_estimate(6_000), 3);
        // Figures without queue counts do not count as an empty queue either.
        b.record_figures(LoadFigures::default(), 7_000, 5_000);
        assert_eq!(b.queue_estimate(7_001), 3);
    }
}
