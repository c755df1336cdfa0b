//! `[alert NAME]`: a rule over one history series (a global one, or `backend:*:FIELD` for one
//! alert per backend): the threshold that fires it, the one that resolves it (hysteresis), how
//! long each must hold, and its severity. Also the built-in rules `default_alerts` adds.

use std::time::Duration;

use crate::error::ErrorKind;
use crate::reader::SectionReader;
use crate::value::{format_duration, parse_duration};

/// The keys of `[alert NAME]`, in the order they are rendered.
pub(crate) const ALERT_KEYS: &[&str] = &[
    "series",
    "above",
    "below",
    "resolve",
    "for",
    "resolve_for",
    "severity",
];

/// The server-wide series an alert (and `/history`) may name.
pub const GLOBAL_SERIES: [&str; 7] = [
    "requests_per_second",
    "error_rate",
    "latency_p50_ms",
    "latency_p99_ms",
    "active_connections",
    "backends_up",
    "backends_down",
];

/// The per-backend fields, named as `backend:*:FIELD` in an alert.
pub const BACKEND_FIELDS: [&str; 4] = ["in_flight", "waiting", "kv_cache_usage", "up"];

/// Whether an alert fires above or below its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertComparison {
    /// `above = X`: fires while the value is greater than X.
    Above,
    /// `below = X`: fires while the value is less than X.
    Below,
}

/// How bad an alert is (`severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertSeverity {
    /// `info`.
    Info,
    /// `warning` (the default).
    #[default]
    Warning,
    /// `critical`.
    Critical,
}

impl std::fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        })
    }
}

impl std::str::FromStr for AlertSeverity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(AlertSeverity::Info),
            "warning" => Ok(AlertSeverity::Warning),
            "critical" => Ok(AlertSeverity::Critical),
            _ => Err("expected info, warning or critical".to_string()),
        }
    }
}

/// An `[alert NAME]` section (or a built-in rule).
///
/// The thresholds are finite numbers (the parser refuses NaN and infinities), so equality is
/// total.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// The section's name: the alert's name in logs, `/admin/alerts` and notifications.
    pub name: String,
    /// `series`: a global series or `backend:*:FIELD`.
    pub series: String,
    /// `above` or `below`.
    pub comparison: AlertComparison,
    /// The threshold it fires past.
    pub threshold: f64,
    /// `resolve`: the threshold it resolves on the other side of (default: `threshold`).
    pub resolve: f64,
    /// `for`: how long the condition must hold before it fires (default 0s).
    pub for_: Duration,
    /// `resolve_for`: how long it must be back before it resolves (default: `for`).
    pub resolve_for: Duration,
    /// `severity`.
    pub severity: AlertSeverity,
}

impl Eq for AlertConfig {}

impl AlertConfig {
    /// A rule on `series` with the other keys at their defaults.
    pub fn new(name: &str, series: &str, comparison: AlertComparison, threshold: f64) -> Self {
        AlertConfig {
            name: name.to_string(),
            series: series.to_string(),
            comparison,
            threshold,
            resolve: threshold,
            for_: Duration::ZERO,
            resolve_for: Duration::ZERO,
            severity: AlertSeverity::Warning,
        }
    }
}

/// The rules `default_alerts = true` adds (a same-named `[alert]` replaces one).
pub fn default_alerts() -> Vec<AlertConfig> {
    use AlertComparison::{Above, Below};
    let secs = Duration::from_secs;
    vec![
        AlertConfig {
            for_: secs(10),
            resolve_for: secs(10),
            severity: AlertSeverity::Critical,
            ..AlertConfig::new("backend_down", "backend:*:up", Below, 1.0)
        },
        AlertConfig {
            resolve: 0.02,
            for_: secs(30),
            resolve_for: secs(30),
            ..AlertConfig::new("error_rate", "error_rate", Above, 0.05)
        },
        AlertConfig {
            for_: secs(60),
            resolve_for: secs(60),
            ..AlertConfig::new("latency_p99", "latency_p99_ms", Above, 5000.0)
        },
        AlertConfig {
            resolve: 0.85,
            for_: secs(30),
            resolve_for: secs(30),
            ..AlertConfig::new(
                "kv_cache_saturation",
                "backend:*:kv_cache_usage",
                Above,
                0.95,
            )
        },
    ]
}

impl crate::Config {
    /// The rules watched: the `[alert]` sections, plus the built-in ones not replaced by a
    /// same-named section when `default_alerts` is on.
    pub fn effective_alerts(&self) -> Vec<AlertConfig> {
        let mut out = Vec::new();
        if self.server.observe.default_alerts {
            out.extend(
                default_alerts()
                    .into_iter()
                    .filter(|d| !self.alerts.iter().any(|a| a.name == d.name)),
            );
        }
        out.extend(self.alerts.iter().cloned());
        out
    }

    /// The `[alert NAME]` section named `name`, if there is one.
    pub fn alert(&self, name: &str) -> Option<&AlertConfig> {
        self.alerts.iter().find(|a| a.name == name)
    }
}

fn series(s: &str) -> Result<String, String> {
    let ok = GLOBAL_SERIES.contains(&s)
        || s.strip_prefix("backend:*:")
            .is_some_and(|f| BACKEND_FIELDS.contains(&f));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected one of {} or backend:*:FIELD with FIELD one of {}",
            GLOBAL_SERIES.join(", "),
            BACKEND_FIELDS.join(", ")
        ))
    }
}

fn number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err("expected a number such as 0.05 or 5000".to_string()),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > crate::sections::MAX_DURATION {
        return Err("must be at most 24h".to_string());
    }
    Ok(d)
}

/// Reads `[alert NAME]`; `None` if a required key is missing or a key is invalid.
pub(crate) fn read_alert(r: &mut SectionReader<'_>, name: &str) -> Option<AlertConfig> {
    let series = r.required("series", series);
    let above = r.optional("above", number);
    let below = r.optional("below", number);
    let resolve = r.optional("resolve", number);
    let for_ = r.value("for", Duration::ZERO, duration);
    let resolve_for = r.optional("resolve_for", duration);
    let severity = r.value("severity", AlertSeverity::Warning, |s| s.parse());
    let (comparison, threshold) = match (above, below) {
        (Some(v), None) => (AlertComparison::Above, v),
        (None, Some(v)) => (AlertComparison::Below, v),
        (Some(_), Some(_)) => {
            let value = r.get("below").map(|e| e.value.clone()).unwrap_or_default();
            let kind = ErrorKind::InvalidValue {
                value,
                reason: "give either `above` or `below`, not both".to_string(),
            };
            r.error(r.line_of("below"), Some("below"), kind);
            return None;
        }
        (None, None) => {
            if !r.failed("above") && !r.failed("below") {
                let kind = ErrorKind::MissingKey {
                    key: "above".to_string(),
                };
                r.error(r.line_of("above"), Some("above"), kind);
            }
            return None;
        }
    };
    let resolve = resolve.unwrap_or(threshold);
    let wrong_side = match comparison {
        AlertComparison::Above => resolve > threshold,
        AlertComparison::Below => resolve < threshold,
    };
    if wrong_side {
        let value = r
            .get("resolve")
            .map(|e| e.value.clone())
            .unwrap_or_default();
        let (side, key) = match comparison {
            AlertComparison::Above => ("at most", "above"),
            AlertComparison::Below => ("at least", "below"),
        };
        let kind = ErrorKind::InvalidValue {
            value,
            reason: format!(
                "must be {side} `{key}` ({threshold}): the alert resolves on the other side"
            ),
        };
        r.error(r.line_of("resolve"), Some("resolve"), kind);
        return None;
    }
    if r.had_errors() {
        return None;
    }
    Some(AlertConfig {
        name: name.to_string(),
        series: series?,
        comparison,
        threshold,
        resolve,
        resolve_for: resolve_for.unwrap_or(for_),
        for_,
        severity,
    })
}

/// Every `[alert NAME]` key with its value as INI text, in canonical order (empty: unset).
pub(crate) fn alert_values(a: &AlertConfig) -> Vec<(&'static str, String)> {
    let (above, below) = match a.comparison {
        AlertComparison::Above => (a.threshold.to_string(), String::new()),
        AlertComparison::Below => (String::new(), a.threshold.to_string()),
    };
    vec![
        ("series", a.series.clone()),
        ("above", above),
        ("below", below),
        ("resolve", a.resolve.to_string()),
        ("for", format_duration(a.for_)),
        ("resolve_for", format_duration(a.resolve_for)),
        ("severity", a.severity.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names() {
        assert!(series("error_rate").is_ok());
        assert!(series("backend:*:kv_cache_usage").is_ok());
        assert!(series("backend:a:up").is_err());
        assert!(series("backend:*:nope").is_err());
        assert!(series("nope").unwrap_err().contains("latency_p99_ms"));
    }

    #[test]
    fn numbers_are_finite() {
        assert_eq!(number("0.05"), Ok(0.05));
        assert_eq!(number("-3"), Ok(-3.0));
        assert!(number("NaN").is_err());
        assert!(number("inf").is_err());
    }

    #[test]
    fn defaults_are_valid_rules() {
        for d in default_alerts() {
            assert!(series(&d.series).is_ok(), "{}", d.series);
        }
    }
}
