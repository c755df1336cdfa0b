//! What a configuration reload may change in place, and what needs a restart.
//!
//! [`split_restart`] takes the running config and a new one and returns the config to apply:
//! the new one, except that every restart-only setting keeps its running value, plus the list
//! of restart-only settings that differ (so the applied config is always what is in force).
//! [`redact_ini`] hides secret-looking values in rendered INI text.

use crate::model::Config;
use crate::render::server_values;

/// `[server]` keys whose new value takes effect only on a restart: the main `listen` sockets
/// and the settings every connection on them is built with, threads, the admin plane, the
/// audit log, the connection builders, pool sizes and slot tables, the monitor's timers and
/// the history's ring buffers (sized at start), the accept limiter. (`audit_*` and `h2_*`
/// keys are included by prefix.)
///
/// `[listener NAME]` and `[l4 NAME]` sections are the ports a reload may add, move or remove
/// (new sockets are bound before old ones close); `[server] listen` stays restart-only: it is
/// the port the server is known by (`ServerHandle::listen_addrs`, the startup log), and its
/// connections share the restart-only `[server]` settings (PROXY protocol, timeouts, HTTP/2).
pub const RESTART_SERVER_KEYS: &[&str] = &[
    "listen",
    "threads",
    "admin_listen",
    "admin_token_file",
    "admin_max_failures",
    "admin_block_time",
    "admin_session_ttl",
    "admin_max_sessions",
    "drain_timeout",
    "client_header_timeout",
    "client_keepalive_timeout",
    "max_header_bytes",
    "max_headers",
    "proxy_protocol",
    "proxy_protocol_timeout",
    "max_connections",
    "max_connections_per_ip",
    "max_connection_rate_per_ip",
    "ban_after",
    "ban_time",
    "max_tracked_ips",
    "upstream_keepalive",
    "upstream_keepalive_timeout",
    "max_registered_backends",
    "metrics_interval",
    "metrics_timeout",
    "metrics_max_age",
    "health_interval",
    "health_timeout",
    "health_rise",
    "health_fall",
    "health_jitter",
    "history_interval",
    "history_window",
    "history_long_step",
    "history_long_window",
    "cache_max_bytes",
];

/// `[server]` keys read per request, applied in place by a reload.
pub const RELOADABLE_SERVER_KEYS: &[&str] = &[
    "trusted_proxies",
    "upstream_connect_timeout",
    "upstream_response_timeout",
    "fail_threshold",
    "fail_timeout",
    "fail_timeout_max",
    "max_ejected_percent",
    "retries",
    "retry_budget",
    "config_history",
    "websocket_max_frame",
    "default_alerts",
    "alert_webhook",
    "alert_webhook_timeout",
    "alert_webhook_retries",
    "mirror_max_body",
    "mirror_max_in_flight",
];

/// Whether the `[server]` key `key` needs a restart to change.
pub fn is_restart_key(key: &str) -> bool {
    RESTART_SERVER_KEYS.contains(&key) || key.starts_with("audit_") || key.starts_with("h2_")
}

/// The config to apply when `new` replaces `running`, and the restart-only `[server] KEY`
/// settings that differ, which keep their running values. Every section (`[listener NAME]`,
/// `[l4 NAME]` and `[alert NAME]` included) is taken from `new`.
pub fn split_restart(running: &Config, new: &Config) -> (Config, Vec<String>) {
    let pending: Vec<String> = server_values(&running.server)
        .into_iter()
        .zip(server_values(&new.server))
        .filter(|((k, a), (_, b))| is_restart_key(k) && a != b)
        .map(|((k, _), _)| format!("[server] {k}"))
        .collect();
    let mut applied = new.clone();
    let (r, a) = (&running.server, &mut applied.server);
    a.listen = r.listen.clone();
    a.threads = r.threads;
    a.admin_listen = r.admin_listen;
    a.admin_token_file = r.admin_token_file.clone();
    a.admin_max_failures = r.admin_max_failures;
    a.admin_block_time = r.admin_block_time;
    a.admin_sessions = r.admin_sessions;
    a.drain_timeout = r.drain_timeout;
    a.client_header_timeout = r.client_header_timeout;
    a.client_keepalive_timeout = r.client_keepalive_timeout;
    a.max_header_bytes = r.max_header_bytes;
    a.max_headers = r.max_headers;
    a.proxy_protocol = r.proxy_protocol;
    a.proxy_protocol_timeout = r.proxy_protocol_timeout;
    a.accept = r.accept;
    a.h2 = r.h2;
    a.upstream_keepalive = r.upstream_keepalive;
    a.upstream_keepalive_timeout = r.upstream_keepalive_timeout;
    a.max_registered_backends = r.max_registered_backends;
    a.metrics_interval = r.metrics_interval;
    a.metrics_timeout = r.metrics_timeout;
    a.metrics_max_age = r.metrics_max_age;
    a.health_interval = r.health_interval;
    a.health_timeout = r.health_timeout;
    a.health_rise = r.health_rise;
    a.health_fall = r.health_fall;
    a.health_jitter = r.health_jitter;
    a.audit = r.audit.clone();
    // The history's timers and ring buffers are fixed at start; the alert settings reload.
    a.observe.history_interval = r.observe.history_interval;
    a.observe.history_window = r.observe.history_window;
    a.observe.history_long_step = r.observe.history_long_step;
    a.observe.history_long_window = r.observe.history_long_window;
    (applied, pending)
}

/// The names of the `[kind NAME]` sections added, removed or changed between `old` and `new`,
/// as `[kind NAME]`.
pub fn changed_sections<T: PartialEq>(
    kind: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
) -> Vec<String> {
    let mut out = Vec::new();
    sections(&mut out, kind, old, new, name);
    out
}

/// Adds `[kind NAME]` for each section added, removed or changed between `old` and `new`.
fn sections<T: PartialEq>(
    out: &mut Vec<String>,
    kind: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
) {
    for o in old {
        match new.iter().find(|n| name(n) == name(o)) {
            Some(n) if n == o => {}
            _ => out.push(format!("[{kind} {}]", name(o))),
        }
    }
    for n in new {
        if !old.iter().any(|o| name(o) == name(n)) {
            out.push(format!("[{kind} {}]", name(n)));
        }
    }
}

/// What stands for a redacted value.
pub const REDACTED: &str = "<redacted>";

/// Whether the value of `key` is hidden by [`redact_ini`]: its name says it is a secret
/// (`token`, `secret`, `password`, `key`), and it is not a file or directory setting
/// (`*_file`, `*_dir`, `*_path`) or a key *selector* (`key`, `hash_key`: `api_key`,
/// `header:NAME`...).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let named = ["token", "secret", "password", "key"]
        .iter()
        .any(|w| k.contains(w));
    let path = k.ends_with("_file") || k.ends_with("_dir") || k.ends_with("_path");
    let selector = k == "key" || k == "hash_key";
    named && !path && !selector
}

/// `text` (INI) with the value of every [secret key](is_secret_key) replaced by
/// [`REDACTED`], unless the value is a file path (starts with `/`, `./` or `../`), and in
/// route header rules (`request_header_set = authorization: Bearer ...`) the values of
/// credential headers (`authorization`, `cookie`, names with `auth`, `token`, `secret`,
/// `password` or `key`).
pub fn redact_ini(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        let redacted = match trimmed.split_once('=') {
            Some((k, v))
                if !trimmed.starts_with([';', '#', '['])
                    && is_secret_key(k.trim())
                    && !is_path(v.trim()) =>
            {
                Some(format!("{} = {REDACTED}", k.trim_end()))
            }
            // Header rules carry credentials too (`authorization: Bearer ...`): only those
            // entries' values are hidden.
            Some((k, v))
                if !trimmed.starts_with([';', '#', '['])
                    && crate::rewrite::is_header_pairs_key(k.trim()) =>
            {
                crate::rewrite::redact_header_pairs(v.trim(), REDACTED)
                    .map(|shown| format!("{} = {shown}", k.trim_end()))
            }
            _ => None,
        };
        out.push_str(redacted.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `posted` (INI text sent back by a client) with every value that [`redact_ini`] hid put
/// back from `running` (the config in force, rendered and not redacted): a `key = VALUE` line
/// whose value contains [`REDACTED`] takes the running value of the same key in the same
/// section when the posted value is exactly what `redact_ini` shows for it. So a config read
/// with `GET /admin/config`, edited elsewhere and posted back keeps its secrets; a value the
/// client changed around the placeholder is left as it was posted.
pub fn unredact_ini(posted: &str, running: &str) -> String {
    if !posted.contains(REDACTED) {
        return posted.to_string();
    }
    // (section, key) -> (the value as redact_ini shows it, the value).
    let mut hidden: std::collections::HashMap<(String, String), (String, String)> =
        std::collections::HashMap::new();
    let mut section = String::new();
    for (raw, shown) in running.lines().zip(redact_ini(running).lines()) {
        let t = raw.trim();
        if let Some(h) = t.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = normalise_header(h);
        } else if let (Some((k, v)), Some((_, sv))) = (t.split_once('='), shown.split_once('=')) {
            if sv.contains(REDACTED) {
                let key = (section.clone(), k.trim().to_string());
                hidden.insert(key, (sv.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    let mut out = String::with_capacity(posted.len());
    let mut section = String::new();
    for line in posted.lines() {
        let t = line.trim();
        let mut restored = None;
        if let Some(h) = t.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = normalise_header(h);
        } else if let Some((k, v)) = t.split_once('=') {
            let key = (section.clone(), k.trim().to_string());
            if let Some((shown, value)) = hidden.get(&key) {
                if v.trim() == shown {
                    restored = Some(format!("{} = {value}", k.trim_end()));
                }
            }
        }
        out.push_str(restored.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// A section header's contents with runs of whitespace as one space.
fn normalise_header(h: &str) -> String {
    h.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_path(v: &str) -> bool {
    v.is_empty() || v.starts_with('/') || v.starts_with("./") || v.starts_with("../")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[server]\nlisten = 127.0.0.1:8080\nretries = 1\n\
        [backend a]\naddress = 127.0.0.1:1\n[backend b]\naddress = 127.0.0.1:2\n\
        [route r]\nbackends = a\n[l4 t]\nlisten = 127.0.0.1:9000\nbackends = a\n";

    fn parse(text: &str) -> Config {
        crate::parse(text, "t.ini").unwrap()
    }

    #[test]
    fn every_server_key_is_classified() {
        let c = parse(BASE);
        for (k, _) in server_values(&c.server) {
            assert!(
                is_restart_key(k) != RELOADABLE_SERVER_KEYS.contains(&k),
                "[server] {k} must be in exactly one of the two lists"
            );
        }
    }

    #[test]
    fn restart_only_changes_keep_running_values_and_are_listed() {
        let running = parse(BASE);
        let new = parse(
            &BASE
                .replace(
                    "127.0.0.1:8080",
                    "127.0.0.1:8081\nthreads = 3\nh2_max_reset_streams = 7\nretries = 3",
                )
                .replace("retries = 1\n", "")
                .replace("[route r]\nbackends = a", "[route r]\nbackends = b")
                .replace("127.0.0.1:9000", "127.0.0.1:9001")
                .replace(
                    "retries = 3",
                    "retries = 3\nhistory_window = 2m\ndefault_alerts = false",
                ),
        );
        let (applied, pending) = split_restart(&running, &new);
        assert_eq!(
            pending,
            [
                "[server] listen",
                "[server] threads",
                "[server] h2_max_reset_streams",
                "[server] history_window",
            ]
        );
        assert_eq!(applied.server.listen, running.server.listen);
        assert_eq!(applied.server.threads, running.server.threads);
        assert_eq!(applied.server.h2, running.server.h2);
        assert_eq!(
            applied.server.observe.history_window,
            running.server.observe.history_window
        );
        // Reloadable: taken from the new config, sections and alert settings included.
        assert_eq!(applied.server.retries, 3);
        assert_eq!(applied.routes[0].backends, ["b"]);
        assert_eq!(applied.l4, new.l4);
        assert!(!applied.server.observe.default_alerts);
        assert_eq!(
            changed_sections("l4", &running.l4, &new.l4, |l| &l.name),
            ["[l4 t]"]
        );
        // Nothing restart-only differs: the new config as it is.
        let (same, none) = split_restart(&running, &running);
        assert!(none.is_empty());
        assert_eq!(same, running);
    }

    #[test]
    fn posted_placeholders_take_the_running_values_back() {
        let running = "[server]\nlisten = 127.0.0.1:1\n[route r]\nbackends = a\n\
            request_header_set = x-tenant: blue; authorization: Bearer s3cret\n\
            api_token = tok-123\n";
        let shown = redact_ini(running);
        assert!(!shown.contains("s3cret") && !shown.contains("tok-123"));
        // Posted back with another key edited: the secrets come back.
        let posted = shown.replace("backends = a", "backends = b");
        let back = unredact_ini(&posted, running);
        assert!(back.contains("authorization: Bearer s3cret"), "{back}");
        assert!(back.contains("api_token = tok-123"), "{back}");
        assert!(back.contains("backends = b"));
        // A value changed around the placeholder is the client's: left as posted.
        let posted = shown.replace("x-tenant: blue", "x-tenant: green");
        let back = unredact_ini(&posted, running);
        assert!(
            back.contains("x-tenant: green; authorization: <redacted>"),
            "{back}"
        );
        // In another section the same key is not the running one's.
        let posted = "[route other]\napi_token = <redacted>\n";
        assert_eq!(unredact_ini(posted, running), posted);
    }

    #[test]
    fn redaction_hides_secret_values_but_not_paths_or_selectors() {
        let text = "[server]\nadmin_token_file = /etc/t\n[limit l]\nkey = api_key\n\
                    [route r]\nhash_key = header:x-user\napi_token = s3cret\n\
                    client_secret = ./secret.txt\npassword=hunter2\n; password = x\n";
        let out = redact_ini(text);
        assert!(!out.contains("s3cret") && !out.contains("hunter2"), "{out}");
        assert!(out.contains("api_token = <redacted>") && out.contains("password = <redacted>"));
        for kept in [
            "admin_token_file = /etc/t",
            "key = api_key",
            "hash_key = header:x-user",
            "client_secret = ./secret.txt",
            "; password = x",
        ] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
    }

    #[test]
    fn redaction_hides_credential_headers_in_header_rules() {
        let text = "[route r]\nrequest_header_set = x-tenant: blue; Authorization: Bearer s3cret\n\
                    request_header_add = x-api-key: k3y\nresponse_header_set = x-a: 1\n";
        let out = redact_ini(text);
        assert!(!out.contains("s3cret") && !out.contains("k3y"), "{out}");
        assert!(out.contains("request_header_set = x-tenant: blue; Authorization: <redacted>\n"));
        assert!(out.contains("request_header_add = x-api-key: <redacted>\n"));
        assert!(out.contains("response_header_set = x-a: 1\n"));
    }
}
