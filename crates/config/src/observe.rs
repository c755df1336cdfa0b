//! The `[server]` keys of the history and of alert notifications: `history_*`, `alert_*` and
//! `default_alerts`.

use std::time::Duration;

use crate::error::ErrorKind;
use crate::reader::SectionReader;
use crate::value::{format_duration, parse_duration};
use crate::Address;

/// The keys read here, in the order they are rendered.
#[cfg(test)]
pub(crate) const OBSERVE_KEYS: &[&str] = &[
    "history_interval",
    "history_window",
    "history_long_step",
    "history_long_window",
    "alert_webhook",
    "alert_webhook_timeout",
    "alert_webhook_retries",
    "default_alerts",
];

/// The most rows the two history rings may hold together.
pub const MAX_HISTORY_ROWS: u64 = 1_000_000;
/// The shortest `history_interval`.
pub const MIN_HISTORY_INTERVAL: Duration = Duration::from_millis(10);
/// The longest `history_window` and `history_long_window` (30 days).
pub const MAX_HISTORY_WINDOW: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The most `alert_webhook_retries`.
pub const MAX_WEBHOOK_RETRIES: u32 = 10;

/// Where alert notifications are POSTed: an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// Host and port (port 80 when the URL names none).
    pub address: Address,
    /// The request path, starting with `/`.
    pub path: String,
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.address, self.path)
    }
}

impl std::str::FromStr for WebhookUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            "expected an http:// URL such as http://10.0.0.9:9093/hooks/switchyard (https is \
             not supported; put a local relay in front)"
                .to_string()
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("`{path}` is not a valid path"));
        }
        let address = if authority.contains(':') {
            authority.parse()?
        } else {
            format!("{authority}:80").parse()?
        };
        Ok(WebhookUrl {
            address,
            path: path.to_string(),
        })
    }
}

/// The history and alert notification settings (`[server]` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveSettings {
    /// `history_interval`: how often the series are sampled (the fine resolution).
    pub history_interval: Duration,
    /// `history_window`: how far back the fine resolution reaches.
    pub history_window: Duration,
    /// `history_long_step`: the coarse resolution (means of the samples in each step).
    pub history_long_step: Duration,
    /// `history_long_window`: how far back the coarse resolution reaches.
    pub history_long_window: Duration,
    /// `alert_webhook`: where alert notifications are POSTed; `None`: only logged.
    pub alert_webhook: Option<WebhookUrl>,
    /// `alert_webhook_timeout`: how long one delivery attempt may take.
    pub alert_webhook_timeout: Duration,
    /// `alert_webhook_retries`: further attempts after a failed one (0..=10), with backoff.
    pub alert_webhook_retries: u32,
    /// `default_alerts`: whether the built-in alerts are watched (a same-named `[alert]`
    /// replaces one).
    pub default_alerts: bool,
}

impl Default for ObserveSettings {
    fn default() -> Self {
        ObserveSettings {
            history_interval: Duration::from_secs(1),
            history_window: Duration::from_secs(60 * 60),
            history_long_step: Duration::from_secs(60),
            history_long_window: Duration::from_secs(24 * 60 * 60),
            alert_webhook: None,
            alert_webhook_timeout: Duration::from_secs(5),
            alert_webhook_retries: 3,
            default_alerts: true,
        }
    }
}

impl ObserveSettings {
    /// Rows kept at the fine resolution.
    pub fn fine_rows(&self) -> u64 {
        rows(self.history_window, self.history_interval)
    }

    /// Rows kept at the coarse resolution.
    pub fn long_rows(&self) -> u64 {
        rows(self.history_long_window, self.history_long_step)
    }
}

fn rows(window: Duration, step: Duration) -> u64 {
    let step = step.as_millis().max(1);
    (window.as_millis() / step) as u64
}

fn bounded(lo: Duration, hi: Duration) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        let d = parse_duration(s)?;
        if d < lo || d > hi {
            return Err(format!(
                "must be between {} and {}",
                format_duration(lo),
                format_duration(hi)
            ));
        }
        Ok(d)
    }
}

pub(crate) fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// Reads the keys of [`OBSERVE_KEYS`], then checks them against one another.
pub(crate) fn read_observe(r: &mut SectionReader<'_>) -> ObserveSettings {
    let d = ObserveSettings::default();
    let window = bounded(MIN_HISTORY_INTERVAL, MAX_HISTORY_WINDOW);
    let s = ObserveSettings {
        history_interval: r.value(
            "history_interval",
            d.history_interval,
            bounded(MIN_HISTORY_INTERVAL, Duration::from_secs(60 * 60)),
        ),
        history_window: r.value("history_window", d.history_window, &window),
        history_long_step: r.value(
            "history_long_step",
            d.history_long_step,
            bounded(MIN_HISTORY_INTERVAL, Duration::from_secs(24 * 60 * 60)),
        ),
        history_long_window: r.value("history_long_window", d.history_long_window, &window),
        alert_webhook: r.optional("alert_webhook", |s| s.parse()),
        alert_webhook_timeout: r.value(
            "alert_webhook_timeout",
            d.alert_webhook_timeout,
            bounded(Duration::from_millis(1), Duration::from_secs(60)),
        ),
        alert_webhook_retries: r.value("alert_webhook_retries", d.alert_webhook_retries, |s| {
            let n = crate::value::parse_u64(s)?;
            if n > u64::from(MAX_WEBHOOK_RETRIES) {
                return Err(format!("must be between 0 and {MAX_WEBHOOK_RETRIES}"));
            }
            Ok(n as u32)
        }),
        default_alerts: r.value("default_alerts", d.default_alerts, boolean),
    };
    check(r, &s);
    s
}

/// The checks between keys: each window at least its step, the coarse step at least the
/// interval, and the rows bounded.
fn check(r: &mut SectionReader<'_>, s: &ObserveSettings) {
    let keys = [
        "history_interval",
        "history_window",
        "history_long_step",
        "history_long_window",
    ];
    if keys.iter().any(|k| r.failed(k)) {
        return;
    }
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    if s.history_long_step < s.history_interval {
        problems.push((
            "history_long_step",
            format!(
                "must be at least history_interval ({})",
                format_duration(s.history_interval)
            ),
        ));
    }
    if s.history_window < s.history_interval {
        problems.push((
            "history_window",
            format!(
                "must be at least history_interval ({})",
                format_duration(s.history_interval)
            ),
        ));
    }
    if s.history_long_window < s.history_long_step {
        problems.push((
            "history_long_window",
            format!(
                "must be at least history_long_step ({})",
                format_duration(s.history_long_step)
            ),
        ));
    }
    let total = s.fine_rows() + s.long_rows();
    if total > MAX_HISTORY_ROWS {
        problems.push((
            "history_window",
            format!(
                "keeps {total} rows with the other history_* keys; at most {MAX_HISTORY_ROWS} \
                 (lengthen history_interval or history_long_step, or shorten a window)"
            ),
        ));
    }
    for (key, reason) in problems {
        let value = r.get(key).map(|e| e.value.clone()).unwrap_or_default();
        let line = r.line_of(key);
        r.error(line, Some(key), ErrorKind::InvalidValue { value, reason });
    }
}

/// The keys read here with their values as INI text (empty: unset).
pub(crate) fn observe_values(s: &ObserveSettings) -> Vec<(&'static str, String)> {
    vec![
        ("history_interval", format_duration(s.history_interval)),
        ("history_window", format_duration(s.history_window)),
        ("history_long_step", format_duration(s.history_long_step)),
        (
            "history_long_window",
            format_duration(s.history_long_window),
        ),
        (
            "alert_webhook",
            s.alert_webhook
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        (
            "alert_webhook_timeout",
            format_duration(s.alert_webhook_timeout),
        ),
        ("alert_webhook_retries", s.alert_webhook_retries.to_string()),
        ("default_alerts", s.default_alerts.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        let u: WebhookUrl = "http://hooks.internal/a/b?x=1".parse().unwrap();
        assert_eq!(u.address.port, 80);
        assert_eq!(u.path, "/a/b?x=1");
        assert_eq!(u.to_string(), "http://hooks.internal:80/a/b?x=1");
        let v: WebhookUrl = "http://127.0.0.1:9093".parse().unwrap();
        assert_eq!(v.path, "/");
        assert_eq!(v.to_string().parse::<WebhookUrl>(), Ok(v));
        assert!("https://x/".parse::<WebhookUrl>().is_err());
        assert!("/hook".parse::<WebhookUrl>().is_err());
    }

    #[test]
    fn server_keys_hold_these_in_order() {
        let keys = crate::sections::SERVER_KEYS;
        let at = keys.iter().position(|k| *k == OBSERVE_KEYS[0]).unwrap();
        assert_eq!(&keys[at..at + OBSERVE_KEYS.len()], OBSERVE_KEYS);
    }

    #[test]
    fn rows_per_window() {
        let d = ObserveSettings::default();
        assert_eq!(d.fine_rows(), 3600);
        assert_eq!(d.long_rows(), 1440);
    }
}
