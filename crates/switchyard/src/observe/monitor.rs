//! The monitor thread: every `history_interval` it reads the counters and backend states into
//! a [`Reading`], records it in the [`Sampler`] (history and alerts), logs the alerts that fired
//! or resolved and queues their notifications for the webhook (see [`super::webhook`]).
//!
//! The sampler sits behind a mutex taken only by this thread and the admin thread; the data
//! plane never touches it. Notifications go through a bounded queue: when it is full they are
//! dropped and counted, so a slow receiver never holds the sampler back.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use switchyard_config::{AlertComparison, AlertConfig, AlertSeverity, Config};
use tokio::sync::{mpsc, watch};

use super::alerts::{Comparison, Condition};
use super::history::TierSpec;
use super::sampler::{AlertEvent, BackendReading, Reading, Rule, Sampler, Severity};
use crate::server::Shared;

/// Notifications waiting for the webhook at most.
pub const QUEUE: usize = 256;

/// How the webhook's deliveries went.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Notifications the receiver accepted (a 2xx answer).
    pub sent: AtomicU64,
    /// Notifications given up after every attempt failed.
    pub failed: AtomicU64,
    /// Notifications dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// The history and alerts of a running server (a field of [`Shared`]).
#[derive(Debug)]
pub struct Monitor {
    sampler: Mutex<Sampler>,
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// How the webhook's deliveries went.
    pub notifications: Arc<NotifyStats>,
}

/// A config alert as the sampler's rule.
pub fn rule(a: &AlertConfig) -> Rule {
    Rule {
        name: a.name.clone(),
        series: a.series.clone(),
        condition: Condition {
            comparison: match a.comparison {
                AlertComparison::Above => Comparison::Above,
                AlertComparison::Below => Comparison::Below,
            },
            threshold: a.threshold,
            resolve_threshold: a.resolve,
            for_ms: a.for_.as_millis() as u64,
            resolve_for_ms: a.resolve_for.as_millis() as u64,
        },
        severity: match a.severity {
            AlertSeverity::Info => Severity::Info,
            AlertSeverity::Warning => Severity::Warning,
            AlertSeverity::Critical => Severity::Critical,
        },
    }
}

impl Monitor {
    /// The history and rules `config` asks for, over `slots` backend slots.
    pub fn new(config: &Config, slots: usize) -> Self {
        let o = &config.server.observe;
        let tiers = [
            TierSpec {
                step_ms: o.history_interval.as_millis() as u64,
                len: o.fine_rows() as usize,
            },
            TierSpec {
                step_ms: o.history_long_step.as_millis() as u64,
                len: o.long_rows() as usize,
            },
        ];
        let rules: Vec<Rule> = config.effective_alerts().iter().map(rule).collect();
        // The config crate checks series names against the same list; should they ever
        // disagree, the history still runs, without alerts.
        let sampler = Sampler::new(slots, &tiers, rules).unwrap_or_else(|e| {
            tracing::error!(error = %e, "alerts disabled");
            Sampler::new(slots, &tiers, Vec::new()).expect("no rules, no unknown series")
        });
        Monitor {
            sampler: Mutex::new(sampler),
            interval_ms: o.history_interval.as_millis() as u64,
            notifications: Arc::default(),
        }
    }

    /// Watches the alerts `config` asks for from now on (a reload): unchanged rules keep their
    /// state, removed rules' firing alerts resolve (see `sampler::rules`). The history itself
    /// is untouched.
    pub fn set_rules(
        &self,
        config: &Config,
        now_ms: u64,
    ) -> Result<(), super::sampler::UnknownSeries> {
        let rules = config.effective_alerts().iter().map(rule).collect();
        self.sampler().set_rules(rules, now_ms)
    }

    /// The sampler, for reading (the admin thread) or sampling (the monitor thread).
    pub fn sampler(&self) -> MutexGuard<'_, Sampler> {
        self.sampler.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The counters and backend states now.
pub fn reading(shared: &Shared, now_ms: u64) -> Reading {
    let t = shared.stats.totals();
    let mut latency = super::histogram::Snapshot::default();
    for slot in &shared.routing().stat_slots {
        latency.add(&shared.stats.route(*slot).latency);
    }
    let membership = shared.directory.snapshot();
    let backends = membership
        .slots
        .iter()
        .map(|slot| {
            slot.as_ref().map(|b| {
                let figures = b.state.figures(now_ms);
                BackendReading {
                    name: b.name().to_string(),
                    up: b.state.is_available(now_ms),
                    in_flight: b.state.in_flight(),
                    waiting: figures.and_then(|f| f.waiting).map(|w| w as f64),
                    kv_cache_usage: figures.and_then(|f| f.kv_cache_usage),
                }
            })
        })
        .collect();
    Reading {
        requests: t.requests,
        responses: t.status.iter().sum(),
        errors: t.status[5],
        latency,
        active_connections: t.conns_accepted.saturating_sub(t.conns_closed),
        backends,
    }
}

/// A notification as the webhook receives it.
pub fn payload(e: &AlertEvent, at: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "alert": e.rule,
        "series": e.series,
        "severity": e.severity.name(),
        "status": if e.firing { "firing" } else { "resolved" },
        "value": e.value.is_finite().then_some(e.value),
        "at": crate::audit::line::rfc3339(at),
    })
}

/// Queues `doc` for the webhook without waiting: when the queue is full it is dropped and
/// counted.
pub fn enqueue(tx: &mpsc::Sender<serde_json::Value>, doc: serde_json::Value, stats: &NotifyStats) {
    if tx.try_send(doc).is_err() {
        stats.dropped.fetch_add(1, Relaxed);
    }
}

/// Samples once and hands the transitions to `notify`.
fn tick(shared: &Shared, notify: Option<&mpsc::Sender<serde_json::Value>>) {
    let now = shared.clock.now_ms();
    let r = reading(shared, now);
    let events = shared.monitor.sampler().sample(now, &r);
    let wall = SystemTime::now();
    for e in &events {
        let severity = e.severity.name();
        if e.firing {
            tracing::warn!(alert = %e.rule, series = %e.series, severity, value = e.value, "alert firing");
        } else {
            tracing::info!(alert = %e.rule, series = %e.series, severity, value = e.value, "alert resolved");
        }
        if let Some(tx) = notify {
            enqueue(tx, payload(e, wall), &shared.monitor.notifications);
        }
    }
}

/// Runs the monitor until shutdown.
pub fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "monitor: cannot build runtime");
            return;
        }
    };
    rt.block_on(async move {
        tracing::info!(
            interval_ms = shared.monitor.interval_ms,
            memory_bytes = shared.monitor.sampler().memory_bytes(),
            "history sampler started"
        );
        let mut notifier = Notifier::default();
        let mut timer = tokio::time::interval(Duration::from_millis(shared.monitor.interval_ms));
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|v| *v) => return,
                _ = timer.tick() => {
                    notifier.follow(&shared);
                    tick(&shared, notifier.tx.as_ref());
                }
            }
        }
    });
}

/// The webhook's delivery task for the settings in force: a reload that changes
/// `alert_webhook`, `alert_webhook_timeout` or `alert_webhook_retries` replaces it (the old
/// one delivers what it has queued, then ends).
#[derive(Default)]
struct Notifier {
    settings: Option<(Option<switchyard_config::WebhookUrl>, Duration, u32)>,
    tx: Option<mpsc::Sender<serde_json::Value>>,
}

impl Notifier {
    /// Starts, replaces or stops the delivery task to match the config in force.
    fn follow(&mut self, shared: &Arc<Shared>) {
        let routing = shared.routing();
        let o = &routing.config.server.observe;
        let now = (
            o.alert_webhook.clone(),
            o.alert_webhook_timeout,
            o.alert_webhook_retries,
        );
        if self.settings.as_ref() == Some(&now) {
            return;
        }
        tracing::info!(
            webhook = now.0.as_ref().map(ToString::to_string),
            "alert notifications"
        );
        self.tx = now.0.clone().map(|url| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let settings = super::webhook::Settings {
                url,
                timeout: now.1,
                retries: now.2,
            };
            let stats = Arc::clone(&shared.monitor.notifications);
            tokio::spawn(super::webhook::deliver(rx, settings, stats));
            tx
        });
        self.settings = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rules_map_to_sampler_rules() {
        let mut a = AlertConfig::new("x", "backend:*:up", AlertComparison::Below, 1.0);
        a.for_ = Duration::from_secs(10);
        a.resolve_for = Duration::from_millis(1500);
        a.severity = AlertSeverity::Critical;
        let r = rule(&a);
        assert_eq!(r.condition.comparison, Comparison::Below);
        assert_eq!(
            (r.condition.for_ms, r.condition.resolve_for_ms),
            (10_000, 1_500)
        );
        assert_eq!(r.severity, Severity::Critical);
    }

    #[test]
    fn the_series_lists_agree_with_the_config_crate() {
        assert_eq!(
            super::super::sampler::GLOBAL_SERIES,
            switchyard_config::GLOBAL_SERIES
        );
        assert_eq!(
            super::super::sampler::BACKEND_FIELDS,
            switchyard_config::BACKEND_FIELDS
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(2);
        let stats = NotifyStats::default();
        for i in 0..5 {
            enqueue(&tx, serde_json::json!(i), &stats);
        }
        assert_eq!(stats.dropped.load(Relaxed), 3);
    }

    #[test]
    fn payloads_carry_every_field() {
        let e = AlertEvent {
            rule: "backend_down".into(),
            series: "backend:a:up".into(),
            severity: Severity::Critical,
            firing: true,
            value: 0.0,
            at_ms: 5,
        };
        let at = std::time::UNIX_EPOCH + Duration::from_secs(86_400);
        let p = payload(&e, at);
        assert_eq!(
            p,
            serde_json::json!({"alert": "backend_down", "series": "backend:a:up",
                "severity": "critical", "status": "firing", "value": 0.0,
                "at": "1970-01-02T00:00:00.000Z"})
        );
    }
}
