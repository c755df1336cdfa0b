//! The progress check: an engine that answers `/health` but has stopped producing tokens.
//!
//! [`Progress`] is the sans-io judge: fed each scrape's figures and the time, it says whether
//! the engine is idle, advancing, or has had requests running for `progress_timeout` while its
//! generated-token counter stood still. [`ProgressWatch`] connects it to a backend's shared
//! health: a stall marks the backend down (at once, and logged once at warn); it comes back
//! at once when a scrape shows the counter moved or no request running (no `health_rise`: the
//! counter moving is direct evidence). A scrape without the counter or the running count says
//! nothing either way and releases a stall; a failed scrape is not an observation at all, so
//! the time without progress runs on across it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use switchyard_balance::LoadFigures;

use crate::server::Shared;
use crate::upstream::directory::Backend;
use std::sync::Arc;

/// What one observation showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgment {
    /// The figures lack the generated-token counter or the running count.
    Unknown,
    /// No request running: no progress expected.
    Idle,
    /// The counter moved since the previous observation.
    Advancing,
    /// Requests running and the counter unchanged for `for_ms`, still within the timeout.
    Waiting {
        /// How long the counter has not moved, in milliseconds.
        for_ms: u64,
    },
    /// Requests running and the counter unchanged for at least the timeout.
    Stalled {
        /// How long the counter has not moved, in milliseconds.
        for_ms: u64,
        /// Requests running.
        running: u64,
        /// The counter's value.
        tokens: u64,
    },
}

/// The sans-io progress judge of one engine. It has no clock: every observation brings the
/// caller's time in milliseconds.
#[derive(Debug, Clone)]
pub struct Progress {
    timeout_ms: u64,
    /// The counter at the last observation (None before the first, or after an unknown one).
    tokens: Option<u64>,
    /// When the counter last moved or the engine was last seen idle.
    since_ms: u64,
    stalled: bool,
}

impl Progress {
    /// A judge that calls an engine stalled after `timeout` without progress.
    pub fn new(timeout: Duration) -> Self {
        Progress {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            tokens: None,
            since_ms: 0,
            stalled: false,
        }
    }

    /// Whether the last observation found the engine stalled.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Judges the figures scraped at `now_ms`.
    pub fn observe(&mut self, now_ms: u64, figures: &LoadFigures) -> Judgment {
        let (Some(tokens), Some(running)) = (figures.generation_tokens, figures.running) else {
            self.tokens = None;
            self.stalled = false;
            return Judgment::Unknown;
        };
        let previous = self.tokens.replace(tokens);
        // Any change counts, a drop too (the engine restarted and its counter began again).
        if running == 0 || previous != Some(tokens) {
            self.since_ms = now_ms;
            self.stalled = false;
            return match (running, previous) {
                (0, _) => Judgment::Idle,
                (_, None) => Judgment::Waiting { for_ms: 0 },
                _ => Judgment::Advancing,
            };
        }
        let for_ms = now_ms.saturating_sub(self.since_ms);
        self.stalled = for_ms >= self.timeout_ms;
        if self.stalled {
            Judgment::Stalled {
                for_ms,
                running,
                tokens,
            }
        } else {
            Judgment::Waiting { for_ms }
        }
    }
}

/// The progress check of one backend, fed by its scraper.
#[derive(Debug)]
pub struct ProgressWatch {
    backend: Arc<Backend>,
    judge: Progress,
    /// Whether the missing counter has been logged.
    warned_unknown: bool,
}

impl ProgressWatch {
    /// The check of `backend`, if it has `progress_timeout`.
    pub fn new(backend: &Arc<Backend>) -> Option<Self> {
        let timeout = backend.config.metrics.as_ref()?.progress_timeout?;
        Some(ProgressWatch {
            backend: Arc::clone(backend),
            judge: Progress::new(timeout),
            warned_unknown: false,
        })
    }

    /// Judges the figures scraped at `now_ms` and marks the backend down or up on a change.
    pub fn observe(&mut self, shared: &Shared, now_ms: u64, figures: &LoadFigures) {
        let Some(stats) = shared.health.get(self.backend.slot) else {
            return;
        };
        let state = &self.backend.state;
        let b = &self.backend.config;
        let was_stalled = self.judge.is_stalled();
        let judgment = self.judge.observe(now_ms, figures);
        match judgment {
            Judgment::Stalled {
                for_ms,
                running,
                tokens,
            } => {
                stats.failed.fetch_add(1, Relaxed);
                if !was_stalled {
                    stats.set_stalled(true, state);
                    tracing::warn!(
                        backend = %b.name,
                        running,
                        generated_tokens = tokens,
                        stalled_ms = for_ms,
                        "progress check failing: requests running but no token generated for \
                         progress_timeout: backend down"
                    );
                } else {
                    tracing::debug!(backend = %b.name, running, stalled_ms = for_ms, "engine still stalled");
                }
            }
            Judgment::Unknown => {
                if !self.warned_unknown {
                    self.warned_unknown = true;
                    tracing::warn!(
                        backend = %b.name,
                        "progress check: the metrics have no generated-token counter \
                         (vllm:generation_tokens_total, sglang:generation_tokens_total) or no \
                         running-requests figure; progress cannot be judged"
                    );
                }
                if was_stalled {
                    stats.set_stalled(false, state);
                    tracing::info!(backend = %b.name, "progress can no longer be judged: backend released");
                }
            }
            Judgment::Idle | Judgment::Advancing | Judgment::Waiting { .. } => {
                if was_stalled {
                    stats.set_stalled(false, state);
                    tracing::info!(backend = %b.name, ?judgment, "progress check passing again: backend up");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(running: u64, tokens: u64) -> LoadFigures {
        LoadFigures {
            running: Some(running),
            generation_tokens: Some(tokens),
            ..LoadFigures::default()
        }
    }

    #[test]
    fn advancing_and_idle_engines_are_fine() {
        let mut p = Progress::new(Duration::from_secs(10));
        assert_eq!(
            p.observe(0, &figures(2, 100)),
            Judgment::Waiting { for_ms: 0 }
        );
        assert_eq!(p.observe(1_000, &figures(2, 150)), Judgment::Advancing);
        // Idle: nothing to produce, however long.
        assert_eq!(p.observe(2_000, &figures(0, 150)), Judgment::Idle);
        assert_eq!(p.observe(60_000, &figures(0, 150)), Judgment::Idle);
        assert!(!p.is_stalled());
    }

    #[test]
    fn running_without_tokens_for_the_timeout_is_a_stall() {
        let mut p = Progress::new(Duration::from_secs(10));
        assert_eq!(p.observe(0, &figures(0, 500)), Judgment::Idle);
        // Requests start; the counter stands still. The clock runs from the last idle sight.
        assert_eq!(
            p.observe(1_000, &figures(3, 500)),
            Judgment::Waiting { for_ms: 1_000 }
        );
        assert_eq!(
            p.observe(9_999, &figures(3, 500)),
            Judgment::Waiting { for_ms: 9_999 }
        );
        assert!(!p.is_stalled());
        assert_eq!(
            p.observe(10_000, &figures(3, 500)),
            Judgment::Stalled {
                for_ms: 10_000,
                running: 3,
                tokens: 500
            }
        );
        assert!(p.is_stalled());
        // Still stalled on the next scrape.
        assert!(matches!(
            p.observe(11_000, &figures(3, 500)),
            Judgment::Stalled { for_ms: 11_000, .. }
        ));
        // Tokens flow again: fine at once, and the clock starts over.
        assert_eq!(p.observe(12_000, &figures(3, 501)), Judgment::Advancing);
        assert!(!p.is_stalled());
        assert_eq!(
            p.observe(21_999, &figures(3, 501)),
            Judgment::Waiting { for_ms: 9_999 }
        );
    }

    #[test]
    fn a_stall_ends_when_no_request_is_running() {
        let mut p = Progress::new(Duration::from_millis(100));
        p.observe(0, &figures(1, 7));
        assert!(matches!(
            p.observe(100, &figures(1, 7)),
            Judgment::Stalled { .. }
        ));
        assert_eq!(p.observe(200, &figures(0, 7)), Judgment::Idle);
        assert!(!p.is_stalled());
        // New requests on the same counter get the whole timeout again.
        assert_eq!(
            p.observe(250, &figures(1, 7)),
            Judgment::Waiting { for_ms: 50 }
        );
    }

    #[test]
    fn a_counter_reset_is_progress() {
        let mut p = Progress::new(Duration::from_millis(100));
        p.observe(0, &figures(1, 900));
        assert!(matches!(
            p.observe(500, &figures(1, 900)),
            Judgment::Stalled { .. }
        ));
        assert_eq!(p.observe(600, &figures(1, 3)), Judgment::Advancing);
    }

    #[test]
    fn missing_figures_judge_nothing_and_release() {
        let mut p = Progress::new(Duration::from_millis(100));
        p.observe(0, &figures(1, 5));
        assert!(matches!(
            p.observe(100, &figures(1, 5)),
            Judgment::Stalled { .. }
        ));
        let no_counter = LoadFigures {
            running: Some(1),
            ..LoadFigures::default()
        };
        assert_eq!(p.observe(200, &no_counter), Judgment::Unknown);
        assert!(!p.is_stalled());
        let no_running = LoadFigures {
            generation_tokens: Some(5),
            ..LoadFigures::default()
        };
        assert_eq!(p.observe(300, &no_running), Judgment::Unknown);
        // The counter is back: a fresh start, not a stall carried over.
        assert_eq!(
            p.observe(10_000, &figures(1, 5)),
            Judgment::Waiting { for_ms: 0 }
        );
    }

    #[test]
    fn a_gap_between_scrapes_counts_as_time_without_progress() {
        // Scrapes failed between 0 and 5 s: the counter did not move across the gap.
        let mut p = Progress::new(Duration::from_secs(2));
        p.observe(0, &figures(1, 10));
        assert!(matches!(
            p.observe(5_000, &figures(1, 10)),
            Judgment::Stalled { for_ms: 5_000, .. }
        ));
    }

    #[test]
    fn the_clock_going_nowhere_is_harmless() {
        let mut p = Progress::new(Duration::ZERO);
        p.observe(5, &figures(1, 1));
        // A zero timeout stalls on the first unchanged scrape, even at the same instant.
        assert!(matches!(
            p.observe(5, &figures(1, 1)),
            Judgment::Stalled { for_ms: 0, .. }
        ));
        // An earlier time (not expected from a monotonic clock) saturates to 0.
        assert!(matches!(
            p.observe(1, &figures(1, 1)),
            Judgment::Stalled { for_ms: 0, .. }
        ));
    }
}
