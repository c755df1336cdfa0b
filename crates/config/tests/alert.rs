//! `[alert NAME]` and the `history_*` / `alert_*` keys of `[server]`: parsing, defaults,
//! validation, rendering and diffs.

use std::time::Duration;
use switchyard_config::{parse, AlertComparison, AlertSeverity};

const BASE: &str = "[backend b]\naddress = h:1\n[route r]\nbackends = b\n";

#[test]
fn defaults_and_built_in_alerts() {
    let c = parse(BASE, "a").unwrap();
    let o = &c.server.observe;
    assert_eq!(o.history_interval, Duration::from_secs(1));
    assert_eq!(o.history_window, Duration::from_secs(3600));
    assert_eq!(o.history_long_step, Duration::from_secs(60));
    assert_eq!(o.history_long_window, Duration::from_secs(86400));
    assert_eq!(o.alert_webhook, None);
    assert_eq!(o.alert_webhook_timeout, Duration::from_secs(5));
    assert_eq!(o.alert_webhook_retries, 3);
    let names: Vec<String> = c.effective_alerts().into_iter().map(|a| a.name).collect();
    assert_eq!(
        names,
        [
            "backend_down",
            "error_rate",
            "latency_p99",
            "kv_cache_saturation"
        ]
    );
    let off = parse(&format!("[server]\ndefault_alerts = false\n{BASE}"), "a").unwrap();
    assert!(off.effective_alerts().is_empty());
}

#[test]
fn alerts_parse_replace_built_ins_and_round_trip() {
    let text = format!(
        "[server]\nalert_webhook = http://127.0.0.1:9093/hook\nhistory_interval = 100ms\n{BASE}\
         [alert error_rate]\nseries = error_rate\nabove = 0.2\nresolve = 0.1\nfor = 5s\n\
         [alert slow]\nseries = backend:*:waiting\nabove = 10\nseverity = critical\n\
         [alert idle]\nseries = requests_per_second\nbelow = 1\nresolve_for = 1m\nseverity = info\n"
    );
    let c = parse(&text, "a").unwrap();
    let e = c.alert("error_rate").unwrap();
    assert_eq!((e.threshold, e.resolve), (0.2, 0.1));
    assert_eq!(
        (e.for_, e.resolve_for),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    assert_eq!(e.severity, AlertSeverity::Warning);
    let s = c.alert("slow").unwrap();
    assert_eq!((s.comparison, s.resolve), (AlertComparison::Above, 10.0));
    assert_eq!(s.resolve_for, Duration::ZERO);
    let i = c.alert("idle").unwrap();
    assert_eq!(i.comparison, AlertComparison::Below);
    assert_eq!(i.resolve_for, Duration::from_secs(60));
    let effective = c.effective_alerts();
    assert_eq!(effective.len(), 6, "three built in, three sections");
    let er: Vec<_> = effective
        .iter()
        .filter(|a| a.name == "error_rate")
        .collect();
    assert_eq!(er.len(), 1);
    assert_eq!(
        er[0].threshold, 0.2,
        "the section replaces the built-in rule"
    );
    assert_eq!(parse(&c.to_ini(), "b"), Ok(c.clone()));
    assert!(c.summary().contains("slow: backend:*:waiting above 10"));
}

#[test]
fn alert_errors_name_the_key() {
    let cases = [
        ("series = nope\nabove = 1\n", "series"),
        ("series = backend:a:up\nbelow = 1\n", "series"),
        ("series = error_rate\n", "above"),
        ("series = error_rate\nabove = 1\nbelow = 0\n", "below"),
        (
            "series = error_rate\nabove = 0.1\nresolve = 0.2\n",
            "resolve",
        ),
        ("series = backend:*:up\nbelow = 1\nresolve = 0\n", "resolve"),
        ("series = error_rate\nabove = NaN\n", "above"),
        (
            "series = error_rate\nabove = 1\nseverity = page\n",
            "severity",
        ),
        ("series = error_rate\nabove = 1\nfor = 2d\n", "for"),
    ];
    for (body, key) in cases {
        let errors = parse(&format!("{BASE}[alert x]\n{body}"), "a").unwrap_err();
        assert!(
            errors.iter().any(|e| e.key.as_deref() == Some(key)),
            "{body}: {errors}"
        );
    }
}

#[test]
fn history_keys_are_checked_against_one_another() {
    let cases = [
        (
            "history_interval = 1m\nhistory_long_step = 1s\n",
            "history_long_step",
        ),
        (
            "history_interval = 10s\nhistory_window = 5s\n",
            "history_window",
        ),
        (
            "history_long_step = 1h\nhistory_long_window = 30m\n",
            "history_long_window",
        ),
        (
            "history_interval = 10ms\nhistory_window = 24h\n",
            "history_window",
        ),
        ("history_interval = 5ms\n", "history_interval"),
        ("alert_webhook = https://x/\n", "alert_webhook"),
        ("alert_webhook_retries = 11\n", "alert_webhook_retries"),
        ("default_alerts = maybe\n", "default_alerts"),
    ];
    for (server, key) in cases {
        let errors = parse(&format!("[server]\n{server}{BASE}"), "a").unwrap_err();
        assert!(
            errors.iter().any(|e| e.key.as_deref() == Some(key)),
            "{server}: {errors}"
        );
    }
}

#[test]
fn alert_and_history_changes_are_diffed() {
    let old = parse(
        &format!("{BASE}[alert a]\nseries = error_rate\nabove = 1\n"),
        "a",
    )
    .unwrap();
    let new = parse(
        &format!(
            "[server]\nhistory_window = 2h\n{BASE}[alert a]\nseries = error_rate\nabove = 2\n\
             [alert b]\nseries = backends_down\nabove = 0\n"
        ),
        "b",
    )
    .unwrap();
    let changes: Vec<String> = switchyard_config::diff(&old, &new)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        changes.iter().any(|c| c.contains("history_window")),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"alert a: above 1 -> 2".to_string()),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"alert b: added".to_string()),
        "{changes:?}"
    );
}
