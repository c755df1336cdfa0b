//! A short human-readable overview of a config (what `switchyard check` prints).

use std::fmt::Write as _;

use crate::model::Config;
use crate::value::format_list;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Renders the summary; see [`Config::summary`].
pub(crate) fn summary(config: &Config) -> String {
    let s = &config.server;
    let mut out = String::new();
    let listen: Vec<String> = s.listen.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "listen: {}", format_list(&listen));
    if s.threads == 0 {
        let _ = writeln!(out, "threads: one per core");
    } else {
        let _ = writeln!(out, "threads: {}", s.threads);
    }
    match s.admin_listen {
        Some(a) => {
            let _ = writeln!(out, "admin: {a}");
        }
        None => {
            let _ = writeln!(out, "admin: off");
        }
    }
    let _ = writeln!(
        out,
        "{}:",
        plural(config.backends.len(), "backend", "backends")
    );
    for b in &config.backends {
        let _ = writeln!(out, "  {} {} (weight {})", b.name, b.address, b.weight);
    }
    let _ = writeln!(out, "{}:", plural(config.routes.len(), "route", "routes"));
    for r in &config.routes {
        let hosts = if r.hosts.is_empty() {
            "any host".to_string()
        } else {
            format_list(&r.hosts)
        };
        let _ = writeln!(
            out,
            "  {}: {} {} -> {} via {}",
            r.name,
            hosts,
            r.path_prefix,
            format_list(&r.backends),
            r.balancer
        );
    }
    if !config.l4.is_empty() {
        let _ = writeln!(
            out,
            "{}:",
            plural(config.l4.len(), "l4 listener", "l4 listeners")
        );
    }
    for l in &config.l4 {
        let _ = writeln!(
            out,
            "  {}: {} {} -> {} via {}",
            l.name,
            l.protocol,
            l.listen,
            format_list(&l.backends),
            l.balancer
        );
    }
    if !config.listeners.is_empty() {
        let _ = writeln!(
            out,
            "{}:",
            plural(config.listeners.len(), "listener", "listeners")
        );
    }
    for l in &config.listeners {
        let listen: Vec<String> = l.listen.iter().map(ToString::to_string).collect();
        let fallback = l
            .fallback
            .as_ref()
            .map(|f| format!(", else {f}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}: {} on {}{}",
            l.name,
            l.protocols,
            format_list(&listen),
            fallback
        );
    }
    if !config.acls.is_empty() {
        let _ = writeln!(out, "{}:", plural(config.acls.len(), "acl", "acls"));
    }
    for a in &config.acls {
        let rules: Vec<String> = a.rules.iter().map(ToString::to_string).collect();
        let mut on = a
            .routes
            .iter()
            .map(|r| format!("route {r}"))
            .collect::<Vec<_>>();
        on.extend(a.l4.iter().map(|l| format!("l4 {l}")));
        on.extend(a.listeners.iter().map(|l| format!("listener {l}")));
        let _ = writeln!(
            out,
            "  {}: {}, else {} on {}",
            a.name,
            format_list(&rules),
            a.default,
            format_list(&on)
        );
    }
    if !config.limits.is_empty() {
        let _ = writeln!(out, "{}:", plural(config.limits.len(), "limit", "limits"));
    }
    for l in &config.limits {
        let scope = match (&l.path_prefix, l.routes.is_empty()) {
            (None, true) => String::new(),
            (Some(p), true) => format!(" on {p}"),
            (None, false) => format!(" on routes {}", format_list(&l.routes)),
            (Some(p), false) => format!(" on {p} of routes {}", format_list(&l.routes)),
        };
        let _ = writeln!(
            out,
            "  {}: {} per {}, burst {}{}",
            l.name, l.rate, l.key, l.burst, scope
        );
    }
    if !config.budgets.is_empty() {
        let _ = writeln!(
            out,
            "{}:",
            plural(config.budgets.len(), "budget", "budgets")
        );
    }
    for b in &config.budgets {
        let per = if b.per_model { " and model" } else { "" };
        let mut scope = String::new();
        if !b.models.is_empty() {
            scope.push_str(&format!(" for {}", format_list(&b.models)));
        }
        if !b.routes.is_empty() {
            scope.push_str(&format!(" on routes {}", format_list(&b.routes)));
        }
        let _ = writeln!(
            out,
            "  {}: {} tokens/m per {}{per}, burst {}{scope}",
            b.name, b.tokens_per_minute, b.key, b.burst
        );
    }
    let alerts = &config.alerts;
    if !alerts.is_empty() {
        let _ = writeln!(out, "{}:", plural(alerts.len(), "alert", "alerts"));
    }
    for a in alerts {
        let cmp = match a.comparison {
            crate::AlertComparison::Above => "above",
            crate::AlertComparison::Below => "below",
        };
        let _ = writeln!(
            out,
            "  {}: {} {cmp} {} for {}, {}",
            a.name,
            a.series,
            a.threshold,
            crate::value::format_duration(a.for_),
            a.severity
        );
    }
    if let Some(w) = &config.server.observe.alert_webhook {
        let _ = writeln!(out, "alert notifications: POST {w}");
    }
    out.truncate(out.trim_end().len());
    out
}
