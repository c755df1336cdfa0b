//! The sampler: turns a reading of the counters, taken every `history_interval`, into one row
//! of the history (rates and percentiles over the interval, not since start) and evaluates the
//! alert rules on it.
//!
//! Sans-io: the caller reads the counters ([`Reading`]) and passes the time; the server's
//! monitor thread does that on a timer (see `observe::monitor`).

mod rules;

use super::alerts::{Alert, Condition, Transition};
use super::histogram::Snapshot;
use super::history::{History, TierSpec};

/// The server-wide series, in row order.
pub const GLOBAL_SERIES: [&str; 7] = [
    "requests_per_second",
    "error_rate",
    "latency_p50_ms",
    "latency_p99_ms",
    "active_connections",
    "backends_up",
    "backends_down",
];

/// The series each backend slot has, as `backend:NAME:FIELD`.
pub const BACKEND_FIELDS: [&str; 4] = ["in_flight", "waiting", "kv_cache_usage", "up"];

/// One backend's figures at a reading.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendReading {
    /// Its name.
    pub name: String,
    /// Whether balancers may pick it.
    pub up: bool,
    /// Requests in flight through this proxy.
    pub in_flight: u64,
    /// The engine's waiting requests, from a fresh scrape.
    pub waiting: Option<f64>,
    /// The engine's KV-cache usage (0..=1), from a fresh scrape.
    pub kv_cache_usage: Option<f64>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Requests received since start.
    pub requests: u64,
    /// Responses sent since start.
    pub responses: u64,
    /// Of those, 5xx responses (the proxy's own and the backends').
    pub errors: u64,
    /// Every route's request latency since start, merged.
    pub latency: Snapshot,
    /// Client connections open.
    pub active_connections: u64,
    /// Per backend slot, its backend if the slot is taken.
    pub backends: Vec<Option<BackendReading>>,
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// For information.
    Info,
    /// Needs a look.
    Warning,
    /// Needs someone now.
    Critical,
}

impl Severity {
    /// Its name in the API and notifications.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// An alert rule: a series (a global one, or `backend:*:FIELD` for one alert per backend) and
/// its condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// The series watched.
    pub series: String,
    /// When it fires and resolves.
    pub condition: Condition,
    /// How bad it is.
    pub severity: Severity,
}

/// An alert that fired or resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: String,
    /// The series it watched (`backend:NAME:FIELD` for a per-backend rule).
    pub series: String,
    /// The rule's severity.
    pub severity: Severity,
    /// `true` when it fired, `false` when it resolved.
    pub firing: bool,
    /// The value that made it change.
    pub value: f64,
    /// When (clock milliseconds).
    pub at_ms: u64,
}

/// What a rule watches.
#[derive(Debug)]
enum Target {
    /// A global series (its column) with its alert.
    Global(usize, Alert),
    /// A backend field (its index) with one alert per slot, and the name of the backend each
    /// alert belongs to (a slot's new occupant starts afresh).
    Backends(usize, Vec<Option<(String, Alert)>>),
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    target: Target,
}

/// The last reading's counters the next interval is measured from.
#[derive(Debug)]
struct Previous {
    at_ms: u64,
    requests: u64,
    responses: u64,
    errors: u64,
    latency: Snapshot,
}

/// The history and the alerts. See the module documentation.
#[derive(Debug)]
pub struct Sampler {
    history: History,
    slots: usize,
    /// Per slot, the backend whose figures its columns hold.
    occupants: Vec<Option<String>>,
    previous: Option<Previous>,
    rules: Vec<RuleState>,
    row: Vec<f32>,
    /// Resolutions of firing alerts whose rule a reload removed, for the next sample to
    /// report (see [`rules`]).
    retired: Vec<AlertEvent>,
}

/// Why a rule cannot be watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSeries(pub String);

impl std::fmt::Display for UnknownSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown series {:?}; try one of {} or backend:*:{{{}}}",
            self.0,
            GLOBAL_SERIES.join(", "),
            BACKEND_FIELDS.join(",")
        )
    }
}

impl std::error::Error for UnknownSeries {}

/// A fresh target (inactive alerts) for `rule` over `slots` backend slots.
fn target(rule: &Rule, slots: usize) -> Result<Target, UnknownSeries> {
    match parse_series(&rule.series) {
        Some(Ok(col)) => Ok(Target::Global(col, Alert::new(rule.condition.clone()))),
        Some(Err(("*", f))) => Ok(Target::Backends(f, vec![None; slots])),
        _ => Err(UnknownSeries(rule.series.clone())),
    }
}

/// Where a series name points: a global column, or a backend field for a named backend (or
/// every backend, `*`).
fn parse_series(name: &str) -> Option<Result<usize, (&str, usize)>> {
    if let Some(i) = GLOBAL_SERIES.iter().position(|s| *s == name) {
        return Some(Ok(i));
    }
    let rest = name.strip_prefix("backend:")?;
    let (backend, field) = rest.rsplit_once(':')?;
    let f = BACKEND_FIELDS.iter().position(|s| *s == field)?;
    (!backend.is_empty()).then_some(Err((backend, f)))
}

impl Sampler {
    /// A sampler for `slots` backend slots keeping `tiers` of history and watching `rules`.
    pub fn new(slots: usize, tiers: &[TierSpec], rules: Vec<Rule>) -> Result<Self, UnknownSeries> {
        let mut names: Vec<String> = GLOBAL_SERIES.iter().map(|s| s.to_string()).collect();
        for slot in 0..slots {
            for f in BACKEND_FIELDS {
                names.push(format!("#{slot}:{f}"));
            }
        }
        let width = names.len();
        let rules = rules
            .into_iter()
            .map(|rule| {
                let target = target(&rule, slots)?;
                Ok(RuleState { rule, target })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sampler {
            history: History::new(names, tiers),
            slots,
            occupants: vec![None; slots],
            previous: None,
            rules,
            row: vec![f32::NAN; width],
            retired: Vec::new(),
        })
    }

    /// Records `reading` taken at `now_ms` and returns the alerts that fired or resolved.
    pub fn sample(&mut self, now_ms: u64, reading: &Reading) -> Vec<AlertEvent> {
        self.row.iter_mut().for_each(|v| *v = f32::NAN);
        if let Some(p) = &self.previous {
            let secs = now_ms.saturating_sub(p.at_ms) as f64 / 1000.0;
            let requests = reading.requests.saturating_sub(p.requests);
            let responses = reading.responses.saturating_sub(p.responses);
            let errors = reading.errors.saturating_sub(p.errors);
            if secs > 0.0 {
                self.row[0] = (requests as f64 / secs) as f32;
            }
            self.row[1] = if responses == 0 {
                0.0
            } else {
                (errors as f64 / responses as f64) as f32
            };
            let window = reading.latency.since(&p.latency);
            if window.count() > 0 {
                self.row[2] = window.quantile(0.50) as f32 / 1000.0;
                self.row[3] = window.quantile(0.99) as f32 / 1000.0;
            }
        }
        self.row[4] = reading.active_connections as f32;
        let (mut up, mut down) = (0u32, 0u32);
        for slot in 0..self.slots {
            let b = reading.backends.get(slot).and_then(Option::as_ref);
            let name = b.map(|b| b.name.as_str());
            if self.occupants[slot].as_deref() != name {
                for f in BACKEND_FIELDS {
                    self.history.clear(&format!("#{slot}:{f}"));
                }
                self.occupants[slot] = name.map(str::to_string);
            }
            if let Some(b) = b {
                let base = GLOBAL_SERIES.len() + slot * BACKEND_FIELDS.len();
                self.row[base] = b.in_flight as f32;
                self.row[base + 1] = b.waiting.map_or(f32::NAN, |v| v as f32);
                self.row[base + 2] = b.kv_cache_usage.map_or(f32::NAN, |v| v as f32);
                self.row[base + 3] = if b.up { 1.0 } else { 0.0 };
                if b.up {
                    up += 1;
                } else {
                    down += 1;
                }
            }
        }
        self.row[5] = up as f32;
        self.row[6] = down as f32;
        self.history.record(now_ms, &self.row);
        self.previous = Some(Previous {
            at_ms: now_ms,
            requests: reading.requests,
            responses: reading.responses,
            errors: reading.errors,
            latency: reading.latency.clone(),
        });
        let mut events = std::mem::take(&mut self.retired);
        events.extend(self.evaluate(now_ms));
        events
    }

    fn evaluate(&mut self, now_ms: u64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let value = |v: f32| v.is_finite().then_some(f64::from(v));
        for r in &mut self.rules {
            let rule = &r.rule;
            let mut push = |series: String, t: Transition| {
                let (firing, v) = match t {
                    Transition::Fired(v) => (true, v),
                    Transition::Resolved(v) => (false, v),
                };
                events.push(AlertEvent {
                    rule: rule.name.clone(),
                    series,
                    severity: rule.severity,
                    firing,
                    value: v,
                    at_ms: now_ms,
                });
            };
            match &mut r.target {
                Target::Global(col, alert) => {
                    if let Some(t) = alert.evaluate(value(self.row[*col]), now_ms) {
                        push(rule.series.clone(), t);
                    }
                }
                Target::Backends(field, alerts) => {
                    for (slot, entry) in alerts.iter_mut().enumerate() {
                        let occupant = self.occupants[slot].as_deref();
                        if entry.as_ref().map(|(n, _)| n.as_str()) != occupant {
                            // A backend that left resolves its firing alert.
                            if let Some((name, a)) = entry.take() {
                                if a.is_firing() {
                                    let v = a.last_value().unwrap_or(f64::NAN);
                                    push(
                                        format!("backend:{name}:{}", BACKEND_FIELDS[*field]),
                                        Transition::Resolved(v),
                                    );
                                }
                            }
                            *entry = occupant
                                .map(|n| (n.to_string(), Alert::new(rule.condition.clone())));
                        }
                        let Some((name, alert)) = entry else { continue };
                        let col = GLOBAL_SERIES.len() + slot * BACKEND_FIELDS.len() + *field;
                        if let Some(t) = alert.evaluate(value(self.row[col]), now_ms) {
                            push(format!("backend:{name}:{}", BACKEND_FIELDS[*field]), t);
                        }
                    }
                }
            }
        }
        events
    }

    /// The alerts firing now: `(rule, series, severity, value, since_ms)`.
    pub fn firing(&self) -> Vec<(String, String, Severity, Option<f64>, u64)> {
        let mut out = Vec::new();
        for r in &self.rules {
            let rule = &r.rule;
            let mut add = |series: String, a: &Alert| {
                if let super::alerts::State::Firing { since, .. } = a.state() {
                    out.push((
                        rule.name.clone(),
                        series,
                        rule.severity,
                        a.last_value(),
                        since,
                    ));
                }
            };
            match &r.target {
                Target::Global(_, a) => add(rule.series.clone(), a),
                Target::Backends(field, alerts) => {
                    for (name, a) in alerts.iter().flatten() {
                        add(format!("backend:{name}:{}", BACKEND_FIELDS[*field]), a);
                    }
                }
            }
        }
        out
    }

    /// The rules watched.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &r.rule)
    }

    /// The points of `series` (a global name or `backend:NAME:FIELD`) since `since_ms`.
    pub fn query(&self, series: &str, since_ms: u64) -> Option<super::history::Points> {
        match parse_series(series)? {
            Ok(_) => self.history.query(series, since_ms),
            Err((backend, f)) => {
                let slot = self
                    .occupants
                    .iter()
                    .position(|o| o.as_deref() == Some(backend))?;
                self.history
                    .query(&format!("#{slot}:{}", BACKEND_FIELDS[f]), since_ms)
            }
        }
    }

    /// Every series that can be queried now.
    pub fn series(&self) -> Vec<String> {
        let mut out: Vec<String> = GLOBAL_SERIES.iter().map(|s| s.to_string()).collect();
        for name in self.occupants.iter().flatten() {
            for f in BACKEND_FIELDS {
                out.push(format!("backend:{name}:{f}"));
            }
        }
        out
    }

    /// Bytes the history holds once its window is full.
    pub fn memory_bytes(&self) -> usize {
        self.history.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::alerts::Comparison;
    use super::super::histogram::Histogram;
    use super::*;

    fn tiers() -> Vec<TierSpec> {
        vec![TierSpec {
            step_ms: 1_000,
            len: 60,
        }]
    }

    fn backend(name: &str, up: bool, kv: Option<f64>) -> Option<BackendReading> {
        Some(BackendReading {
            name: name.into(),
            up,
            in_flight: 3,
            waiting: Some(1.0),
            kv_cache_usage: kv,
        })
    }

    fn rule(name: &str, series: &str, comparison: Comparison, threshold: f64) -> Rule {
        Rule {
            name: name.into(),
            series: series.into(),
            condition: Condition {
                comparison,
                threshold,
                resolve_threshold: threshold,
                for_ms: 2_000,
                resolve_for_ms: 0,
            },
            severity: Severity::Critical,
        }
    }

    #[test]
    fn rates_and_percentiles_are_per_interval() {
        let mut s = Sampler::new(1, &tiers(), vec![]).unwrap();
        let h = Histogram::default();
        let mut r = Reading::default();
        for _ in 0..100 {
            h.record(100_000); // 100 ms: before the first sample
        }
        h.merge_into(&mut r.latency);
        s.sample(0, &r);
        let h2 = Histogram::default();
        for _ in 0..10 {
            h2.record(2_000); // 2 ms during the interval
        }
        let mut r2 = r.clone();
        h2.merge_into(&mut r2.latency);
        r2.requests = 500;
        r2.responses = 500;
        r2.errors = 50;
        r2.backends = vec![backend("a", true, Some(0.5))];
        s.sample(2_000, &r2);
        let last = |name: &str| s.query(name, 0).unwrap().points.last().unwrap().1;
        assert_eq!(last("requests_per_second"), Some(250.0));
        assert_eq!(last("error_rate"), Some(0.1));
        let p99 = last("latency_p99_ms").unwrap();
        assert!(
            (2.0..2.3).contains(&p99),
            "{p99}: the interval's, not since start"
        );
        assert_eq!(last("backends_up"), Some(1.0));
        assert_eq!(last("backend:a:kv_cache_usage"), Some(0.5));
        assert_eq!(last("backend:a:in_flight"), Some(3.0));
        assert!(s.query("backend:b:in_flight", 0).is_none());
        assert!(s.series().contains(&"backend:a:up".to_string()));
        let first = s.query("requests_per_second", 0).unwrap().points[0].1;
        assert_eq!(first, None, "no rate before a second reading");
    }

    #[test]
    fn a_backend_rule_fires_per_backend_and_resolves_when_it_returns() {
        let rules = vec![rule("backend_down", "backend:*:up", Comparison::Below, 1.0)];
        let mut s = Sampler::new(2, &tiers(), rules).unwrap();
        let mut r = Reading {
            backends: vec![backend("a", true, None), backend("b", false, None)],
            ..Reading::default()
        };
        assert!(s.sample(0, &r).is_empty());
        assert!(s.sample(1_000, &r).is_empty());
        let fired = s.sample(2_000, &r);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].series, "backend:b:up");
        assert!(fired[0].firing);
        assert_eq!(s.firing().len(), 1);
        r.backends[1] = backend("b", true, None);
        let resolved = s.sample(3_000, &r);
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing);
        assert!(s.firing().is_empty());
    }

    #[test]
    fn a_backend_that_leaves_resolves_its_alert_and_its_slot_starts_afresh() {
        let rules = vec![rule(
            "kv",
            "backend:*:kv_cache_usage",
            Comparison::Above,
            0.9,
        )];
        let mut s = Sampler::new(1, &tiers(), rules).unwrap();
        let mut r = Reading {
            backends: vec![backend("a", true, Some(0.99))],
            ..Reading::default()
        };
        s.sample(0, &r);
        assert_eq!(s.sample(2_000, &r).len(), 1);
        r.backends[0] = backend("c", true, Some(0.99));
        let events = s.sample(3_000, &r);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].series, "backend:a:kv_cache_usage");
        assert!(!events[0].firing);
        let points = s.query("backend:c:kv_cache_usage", 0).unwrap().points;
        assert_eq!(
            points.iter().filter(|(_, v)| v.is_some()).count(),
            1,
            "the slot's past belonged to a"
        );
    }

    #[test]
    fn unknown_series_are_refused() {
        let bad = vec![rule("x", "nope", Comparison::Above, 1.0)];
        let e = Sampler::new(1, &tiers(), bad).unwrap_err();
        assert!(e.to_string().contains("requests_per_second"));
        let named = vec![rule("x", "backend:a:up", Comparison::Below, 1.0)];
        assert!(
            Sampler::new(1, &tiers(), named).is_err(),
            "rules watch every backend (*) or a global series"
        );
    }
}
