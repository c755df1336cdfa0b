//! Every error kind, with its line, section and key.

use switchyard_config::{parse, ConfigError, ErrorKind};

/// A valid tail: one backend `a` and one route using it.
const TAIL: &str = "[backend a]\naddress = h:1\n[route r]\nbackends = a\n";

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, "t.ini") {
        Ok(c) => panic!("expected errors, parsed {c:?}"),
        Err(e) => e.0,
    }
}

/// Asserts exactly one error and returns it.
fn one(text: &str) -> ConfigError {
    let mut e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.remove(0)
}

/// Asserts the error's line, section and key.
fn at(e: &ConfigError, line: usize, section: Option<&str>, key: Option<&str>) {
    assert_eq!(
        (e.line, e.section.as_deref(), e.key.as_deref()),
        (line, section, key),
        "{e}"
    );
    assert_eq!(e.file, "t.ini");
}

fn invalid(text: &str, line: usize, section: &str, key: &str) -> (String, String) {
    let e = one(text);
    at(&e, line, Some(section), Some(key));
    match e.kind {
        ErrorKind::InvalidValue { value, reason } => (value, reason),
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn three_problems_give_exactly_three_errors() {
    let text = "[server]\n\
                listn = 0.0.0.0:80\n\
                [backend a]\n\
                address = 300.1.1.1:80\n\
                [route r]\n\
                backends = a, b\n";
    let e = errors(text);
    assert_eq!(e.len(), 3, "{e:#?}");
    at(&e[0], 2, Some("server"), Some("listn"));
    assert!(
        matches!(&e[0].kind, ErrorKind::UnknownKey { suggestion: Some(s), .. } if s == "listen")
    );
    at(&e[1], 4, Some("backend a"), Some("address"));
    assert!(matches!(&e[1].kind, ErrorKind::InvalidValue { value, .. } if value == "300.1.1.1:80"));
    at(&e[2], 6, Some("route r"), Some("backends"));
    assert!(matches!(&e[2].kind, ErrorKind::UnknownBackend { name, .. } if name == "b"));
    let shown = parse(text, "t.ini").unwrap_err().to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("t.ini:2: [server] listn: unknown key (did you mean `listen`?)"));
    assert!(lines[1].starts_with("t.ini:4: [backend a] address: invalid value `300.1.1.1:80`"));
    assert!(lines[2].starts_with("t.ini:6: [route r] backends: no [backend b] section"));
}

#[test]
fn syntax_error() {
    let e = one(&format!("{TAIL}this line has no equals sign\n"));
    at(&e, 5, Some("route r"), None);
    assert!(matches!(e.kind, ErrorKind::Syntax { .. }));
    let e = one(&format!("[server\n{TAIL}"));
    at(&e, 1, None, None);
    assert!(matches!(e.kind, ErrorKind::Syntax { .. }));
    let e = one(&format!("{TAIL}= 3\n"));
    at(&e, 5, Some("route r"), None);
    assert!(e.to_string().contains("missing key"));
}

#[test]
fn key_outside_section() {
    let e = one(&format!("listen = 127.0.0.1:80\n{TAIL}"));
    at(&e, 1, None, Some("listen"));
    assert_eq!(e.kind, ErrorKind::KeyOutsideSection);
}

#[test]
fn unknown_section() {
    let e = one(&format!("{TAIL}\n[upstream x]\nfoo = bar\n"));
    at(&e, 6, Some("upstream x"), None);
    assert_eq!(
        e.kind,
        ErrorKind::UnknownSection {
            kind: "upstream".into(),
            suggestion: None
        }
    );
    assert!(e
        .to_string()
        .contains("[server], [backend NAME], [route NAME]"));
    let e = one(&format!("[servr]\n{TAIL}"));
    assert!(
        matches!(e.kind, ErrorKind::UnknownSection { suggestion: Some(s), .. } if s == "server")
    );
}

#[test]
fn invalid_section_names() {
    for (header, needle) in [
        ("[server main]", "takes no name"),
        ("[backend]", "missing name"),
        ("[backend a b]", "single name"),
        ("[backend a/b]", "A-Z a-z 0-9 _ . -"),
    ] {
        let e = one(&format!("{TAIL}{header}\n"));
        at(&e, 5, Some(&header[1..header.len() - 1]), None);
        assert!(
            matches!(e.kind, ErrorKind::InvalidSectionName { .. }),
            "{e}"
        );
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn duplicate_sections() {
    let e = one(&format!("[server]\n{TAIL}[server]\n"));
    at(&e, 6, Some("server"), None);
    assert_eq!(e.kind, ErrorKind::DuplicateSection { first_line: 1 });
    let e = one(&format!("{TAIL}[backend a]\naddress = h:2\n"));
    at(&e, 5, Some("backend a"), None);
    assert_eq!(e.kind, ErrorKind::DuplicateSection { first_line: 1 });
    let e = one(&format!(
        "{TAIL}[route r]\nbackends = a\npath_prefix = /x\n"
    ));
    at(&e, 5, Some("route r"), None);
    assert_eq!(e.kind, ErrorKind::DuplicateSection { first_line: 3 });
    assert!(e.to_string().contains("first defined on line 3"));
}

#[test]
fn duplicate_key() {
    let e = one("[backend a]\naddress = h:1\nweight = 1\nweight = 2\n[route r]\nbackends = a\n");
    at(&e, 4, Some("backend a"), Some("weight"));
    assert_eq!(e.kind, ErrorKind::DuplicateKey { first_line: 3 });
}

#[test]
fn unknown_key_lists_valid_keys_and_suggests() {
    let e = one("[backend a]\naddress = h:1\nweigth = 2\n[route r]\nbackends = a\n");
    at(&e, 3, Some("backend a"), Some("weigth"));
    assert_eq!(
        e.kind,
        ErrorKind::UnknownKey {
            suggestion: Some("weight".into()),
            valid: vec![
                "address".into(),
                "weight".into(),
                "metrics".into(),
                "models".into(),
                "health".into(),
                "progress_timeout".into(),
                "protocol".into(),
                "tls".into(),
                "tls_ca".into(),
                "tls_server_name".into(),
            ],
        }
    );
    assert_eq!(
        e.to_string(),
        "t.ini:3: [backend a] weigth: unknown key (did you mean `weight`?); \
         valid keys here: address, weight, metrics, models, health, progress_timeout, protocol, \
         tls, tls_ca, tls_server_name"
    );
    // Keys are case-sensitive.
    let e = one(&format!("[server]\nThreads = 2\n{TAIL}"));
    assert!(matches!(e.kind, ErrorKind::UnknownKey { suggestion: Some(s), .. } if s == "threads"));
    // Nothing close: no suggestion.
    let e = one(&format!("{TAIL}colour = blue\n"));
    assert!(matches!(
        e.kind,
        ErrorKind::UnknownKey {
            suggestion: None,
            ..
        }
    ));
}

#[test]
fn missing_keys_are_reported_on_the_header() {
    let e = one("[backend a]\nweight = 2\n[route r]\nbackends = a\n");
    at(&e, 1, Some("backend a"), Some("address"));
    assert_eq!(
        e.kind,
        ErrorKind::MissingKey {
            key: "address".into()
        }
    );
    let e = one("[backend a]\naddress = h:1\n[route r]\nbalancer = least_conn\n");
    at(&e, 3, Some("route r"), Some("backends"));
}

#[test]
fn invalid_server_values() {
    let cases: &[(&str, &str, &str)] = &[
        ("listen", "localhost:80", "IP address and port"),
        ("listen", "127.0.0.1:80, 127.0.0.1:80", "listed twice"),
        ("listen", "127.0.0.1:80,", "empty"),
        ("listen", "", "empty value"),
        ("threads", "1025", "between 0 and 1024"),
        ("threads", "-1", "non-negative"),
        ("admin_listen", "yes", "`off`"),
        ("drain_timeout", "1.5s", "fractional"),
        ("drain_timeout", "25h", "at most 24h"),
        ("client_header_timeout", "0", "greater than 0"),
        ("client_keepalive_timeout", "10x", "unit"),
        ("max_header_bytes", "4k", "between 8k"),
        ("max_header_bytes", "2m", "between 8k"),
        ("max_header_bytes", "99999999999999999999", "too large"),
        ("max_headers", "0", "between 1 and 1000"),
        ("max_headers", "1001", "between 1 and 1000"),
        ("websocket_max_frame", "1x", "unknown size unit"),
        ("websocket_max_frame", "-1", "cannot be negative"),
        ("upstream_connect_timeout", "", "empty"),
        ("upstream_response_timeout", "-5s", "negative"),
        ("upstream_keepalive_timeout", "0s", "greater than 0"),
        ("upstream_keepalive", "65537", "between 0 and 65536"),
        ("fail_threshold", "4294967296", "between 0 and 4294967295"),
        ("fail_timeout", "0ms", "greater than 0"),
        ("health_interval", "0", "greater than 0"),
        ("health_timeout", "25h", "at most 24h"),
        ("health_rise", "0", "between 1 and 100"),
        ("health_fall", "101", "between 1 and 100"),
        ("health_jitter", "51%", "between 0 and 50"),
        ("health_jitter", "-5%", "non-negative"),
        ("health_jitter", "10 %", "non-negative"),
        ("health_jitter", "1.5%", "non-negative"),
        ("admin_token_file", "/etc/admin token", "whitespace"),
        ("audit_log", "", "empty value"),
        ("admin_max_failures", "0", "between 1 and 1000"),
        ("admin_block_time", "500ms", "between 1s and 24h"),
        ("admin_session_ttl", "30s", "between 1m and 7d"),
        ("admin_max_sessions", "0", "between 1 and 10000"),
        ("audit_max_bytes", "512", "between 1k"),
        ("audit_max_age", "8d", "unit"),
        ("audit_max_age", "200h", "at most"),
        ("audit_keep", "1001", "between 0 and 1000"),
        ("audit_sample", "101%", "between 0 and 100"),
        ("audit_queue", "0", "between 1 and"),
    ];
    for (key, value, needle) in cases {
        let (got, reason) = invalid(
            &format!("[server]\n{key} = {value}\n{TAIL}"),
            2,
            "server",
            key,
        );
        assert_eq!(&got, value);
        assert!(reason.contains(needle), "{key} = {value}: {reason}");
    }
}

#[test]
fn invalid_backend_values() {
    for (value, needle) in [
        ("10.0.0.1", "missing port"),
        ("300.1.1.1:80", "not a valid IPv4"),
        ("host:0", "1..=65535"),
        ("host:99999", "1..=65535"),
        ("a b:80", "contains ` `"),
        ("::1:80", "bracketed"),
        ("a..b:80", "empty label"),
    ] {
        let text = format!("[backend a]\naddress = {value}\n[route r]\nbackends = a\n");
        let (got, reason) = invalid(&text, 2, "backend a", "address");
        assert_eq!(got, value);
        assert!(reason.contains(needle), "{value}: {reason}");
    }
    for (value, needle) in [
        ("0", "between 1 and 10000"),
        ("10001", "between 1 and 10000"),
    ] {
        let text =
            format!("[backend a]\naddress = h:1\nweight = {value}\n[route r]\nbackends = a\n");
        let (_, reason) = invalid(&text, 3, "backend a", "weight");
        assert!(reason.contains(needle), "{value}: {reason}");
    }
}

#[test]
fn invalid_health_checks() {
    for (value, needle) in [
        ("udp", "expected `tcp`"),
        ("tcp 80", "expected `tcp`"),
        ("http GET health", "PATH"),
        ("http /health ok", "PATH"),
        ("http /health 200 \"\"", "empty"),
        ("http /health 200 \"unterminated", "unterminated"),
        ("http /health 200 \"a\\nb\"", "escape"),
        ("ai models", "`ai completion`"),
        ("script", "script COMMAND"),
        ("script ''", "script COMMAND"),
        ("script /bin/check 'a'b", "closing quote"),
    ] {
        let text =
            format!("[backend a]\naddress = h:1\nhealth = {value}\n[route r]\nbackends = a\n");
        let (got, reason) = invalid(&text, 3, "backend a", "health");
        assert_eq!(got, value);
        assert!(reason.contains(needle), "{value}: {reason}");
    }
    // An inline comment inside quotes cuts the value short: the quote is left open.
    let text =
        "[backend a]\naddress = h:1\nhealth = http /h 200 \"a ; b\"\n[route r]\nbackends = a\n";
    let (got, reason) = invalid(text, 3, "backend a", "health");
    assert_eq!(got, "http /h 200 \"a");
    assert!(reason.contains("inline comment"), "{reason}");
}

#[test]
fn progress_timeout_values_and_its_need_for_metrics() {
    for (value, needle) in [
        ("0", "greater than 0"),
        ("25h", "at most 24h"),
        ("soon", "whole number"),
    ] {
        let text = format!(
            "[backend a]\naddress = h:1\nmetrics = /metrics\nprogress_timeout = {value}\n\
             [route r]\nbackends = a\n"
        );
        let (got, reason) = invalid(&text, 4, "backend a", "progress_timeout");
        assert_eq!(got, value);
        assert!(reason.contains(needle), "{value}: {reason}");
    }
    let e = one("[backend a]\naddress = h:1\nprogress_timeout = 30s\n[route r]\nbackends = a\n");
    at(&e, 3, Some("backend a"), Some("progress_timeout"));
    assert!(matches!(&e.kind, ErrorKind::NeedsKey { needed, .. } if needed == "metrics"));
    assert!(
        e.to_string().starts_with(
            "t.ini:3: [backend a] progress_timeout: needs `metrics` in the same section"
        ),
        "{e}"
    );
    // An invalid `metrics` is reported once, not also as missing.
    let e = one(
        "[backend a]\naddress = h:1\nmetrics = nope\nprogress_timeout = 30s\n\
         [route r]\nbackends = a\n",
    );
    at(&e, 3, Some("backend a"), Some("metrics"));
}

#[test]
fn invalid_route_values() {
    for (key, value, needle) in [
        ("host", "api.example.com:443", "port"),
        ("host", "a.*.com", "wildcard"),
        ("host", "*", "wildcard"),
        ("host", "a.com, A.com", "listed twice"),
        ("host", "a.com,,b.com", "empty"),
        ("path_prefix", "v1", "starting with `/`"),
        ("path_prefix", "/a b", "no spaces"),
        ("backends", "a, a", "listed twice"),
        ("backends", "a/b", "not a backend name"),
        ("websocket_max_frame", "big", "16k or 1m"),
    ] {
        let text =
            format!("[backend a]\naddress = h:1\n[route r]\nbackends = a\n{key} = {value}\n");
        let text = text.replace("backends = a\nbackends", "backends");
        let line = if key == "backends" { 4 } else { 5 };
        let (got, reason) = invalid(&text, line, "route r", key);
        assert_eq!(got, value);
        assert!(reason.contains(needle), "{key} = {value}: {reason}");
    }
}

#[test]
fn host_lists_are_lowercased() {
    let text =
        "[backend a]\naddress = h:1\n[route r]\nhost = API.Example.COM, *.Foo.org\nbackends = a\n";
    let config = parse(text, "t.ini").unwrap();
    assert_eq!(config.routes[0].hosts, ["api.example.com", "*.foo.org"]);
}

#[test]
fn unknown_backend_names_the_missing_one_on_the_backends_line() {
    let text = "[route r]\nbalancer = round_robin\nbackends = llama-a, llama-c\n\
                [backend llama-a]\naddress = h:1\n[backend llama-b]\naddress = h:2\n";
    let e = one(text);
    at(&e, 3, Some("route r"), Some("backends"));
    assert_eq!(
        e.kind,
        ErrorKind::UnknownBackend {
            name: "llama-c".into(),
            known: vec!["llama-a".into(), "llama-b".into()],
            suggestion: Some("llama-a".into()),
        }
    );
    assert!(e.to_string().contains("defined backends: llama-a, llama-b"));
}

#[test]
fn unknown_balancer_lists_the_known_ones() {
    let e = one(&format!("{TAIL}balancer = least_con\n"));
    at(&e, 5, Some("route r"), Some("balancer"));
    assert_eq!(
        e.kind,
        ErrorKind::UnknownBalancer {
            name: "least_con".into(),
            known: switchyard_balance::names().map(String::from).collect(),
            suggestion: Some("least_conn".into()),
        }
    );
    let shown = e.to_string();
    for name in ["round_robin", "least_conn", "least_conn_strict"] {
        assert!(shown.contains(name), "{shown}");
    }
}

#[test]
fn no_routes_is_reported_at_line_zero() {
    let e = one("[backend a]\naddress = h:1\n");
    at(&e, 0, None, None);
    assert_eq!(e.kind, ErrorKind::NoRoutes);
    assert!(e.to_string().starts_with("t.ini: no [route NAME] section"));
    let e = one("");
    assert_eq!(e.kind, ErrorKind::NoRoutes);
}

#[test]
fn admin_listen_conflicts_with_listen() {
    let e = one(&format!(
        "[server]\nlisten = 127.0.0.1:8080, 127.0.0.1:9000\nadmin_listen = 127.0.0.1:9000\n{TAIL}"
    ));
    at(&e, 3, Some("server"), Some("admin_listen"));
    assert!(matches!(e.kind, ErrorKind::AdminListenConflict { .. }));
    // Listening on the default admin address: blamed on `listen`.
    let e = one(&format!("[server]\nlisten = 127.0.0.1:9901\n{TAIL}"));
    at(&e, 2, Some("server"), Some("listen"));
    // A wildcard listener covers the admin address too.
    let e = one(&format!("[server]\nlisten = 0.0.0.0:9901\n{TAIL}"));
    assert!(matches!(e.kind, ErrorKind::AdminListenConflict { .. }));
}

#[test]
fn duplicate_routes_name_the_first() {
    let text = format!(
        "{TAIL}[route s]\nhost = b.com, a.com\npath_prefix = /v1\nbackends = a\n\
         [route t]\nhost = a.com, B.com\npath_prefix = /v1\nbackends = a\n"
    );
    let e = one(&text);
    at(&e, 9, Some("route t"), None);
    assert_eq!(
        e.kind,
        ErrorKind::DuplicateRoute {
            first: "s".into(),
            first_line: 5
        }
    );
    // Default host list and prefix on both.
    let e = one(&format!("{TAIL}[route s]\nbackends = a\n"));
    assert_eq!(
        e.kind,
        ErrorKind::DuplicateRoute {
            first: "r".into(),
            first_line: 3
        }
    );
    // Different prefixes are fine.
    assert!(parse(
        &format!("{TAIL}[route s]\npath_prefix = /x\nbackends = a\n"),
        "t"
    )
    .is_ok());
}

#[test]
fn all_errors_are_reported_in_line_order() {
    let text = "[route z]\nbackends = nope\n\
                [server]\nthreads = lots\nlisten = 1.2.3.4\n\
                junk\n\
                [backend a]\nweight = 0\n";
    let e = errors(text);
    let lines: Vec<usize> = e.iter().map(|e| e.line).collect();
    // backends (2), threads (4), listen (5), junk (6), missing address (7), weight (8)
    assert_eq!(lines, vec![2, 4, 5, 6, 7, 8], "{e:#?}");
}

#[test]
fn errors_in_a_duplicate_section_are_still_reported() {
    let e = errors(&format!("{TAIL}[backend a]\nadress = h:1\n"));
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(matches!(
        e[0].kind,
        ErrorKind::DuplicateSection { first_line: 1 }
    ));
    assert!(matches!(e[0].line, 5));
    assert!(matches!(e[1].kind, ErrorKind::MissingKey { .. }));
    assert!(
        matches!(&e[2].kind, ErrorKind::UnknownKey { suggestion: Some(s), .. } if s == "address")
    );
}

#[test]
fn messages_match_the_reference_docs() {
    let text = "[server]\nlistn = 0.0.0.0:80\n[backend llama-a]\naddress = 300.1.1.1:80\n\
                [route chat]\nbackends = llama-a, llama-c\n[backend llama-b]\naddress = h:1\n";
    let shown = parse(text, "switchyard.ini").unwrap_err().to_string();
    let docs = include_str!("../../../docs/config.md");
    for line in shown.lines() {
        let documented = line.split(", threads, ").next().unwrap_or(line);
        assert!(docs.contains(documented), "docs do not show: {documented}");
    }
}

#[test]
fn backend_protocol_is_http1_h2c_or_an_error() {
    let c = parse(TAIL, "t.ini").unwrap();
    assert_eq!(
        c.backends[0].protocol,
        switchyard_config::BackendProtocol::Http1
    );
    let c = parse(
        "[backend a]\naddress = h:1\nprotocol = h2c\n[route r]\nbackends = a\n",
        "t.ini",
    )
    .unwrap();
    assert_eq!(
        c.backends[0].protocol,
        switchyard_config::BackendProtocol::H2c
    );
    let (value, reason) = invalid(
        "[backend a]\naddress = h:1\nprotocol = h3\n[route r]\nbackends = a\n",
        3,
        "backend a",
        "protocol",
    );
    assert_eq!(value, "h3");
    assert!(reason.contains("`http1` or `h2c`"), "{reason}");
}

#[test]
fn h2_limits_are_checked() {
    for (key, value, reason) in [
        ("h2_max_concurrent_streams", "0", "between 1 and 10000"),
        ("h2_max_concurrent_streams", "10001", "between 1 and 10000"),
        ("h2_stream_window", "1k", "between 65535 bytes"),
        ("h2_connection_window", "4g", "2147483647"),
        ("h2_max_reset_streams", "0", "between 1 and 10000"),
    ] {
        let (v, r) = invalid(
            &format!("[server]\n{key} = {value}\n{TAIL}"),
            2,
            "server",
            key,
        );
        assert_eq!(v, value);
        assert!(r.contains(reason), "{key} = {value}: {r}");
    }
    let c = parse(
        &format!("[server]\nh2_stream_window = 128k\nh2_connection_window = 16m\n{TAIL}"),
        "t.ini",
    )
    .unwrap();
    assert_eq!(c.server.h2.stream_window, 128 * 1024);
    assert_eq!(c.server.h2.connection_window, 16 << 20);
    assert_eq!(c.server.h2.max_concurrent_streams, 256);
}

#[test]
fn backend_tls_keys() {
    let c = parse(
        "[backend a]\naddress = 10.0.0.1:443\ntls = true\ntls_ca = /etc/ca.pem\n\
         tls_server_name = API.internal\n[route r]\nbackends = a\n",
        "t.ini",
    )
    .unwrap();
    let tls = c.backends[0].tls.as_ref().unwrap();
    assert_eq!(tls.ca.as_deref(), Some("/etc/ca.pem"));
    assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
    assert!(parse(TAIL, "t.ini").unwrap().backends[0].tls.is_none());
    // Options without `tls = true` are a mistake worth telling.
    let e = one("[backend a]\naddress = h:1\ntls_ca = /etc/ca.pem\n[route r]\nbackends = a\n");
    at(&e, 3, Some("backend a"), Some("tls_ca"));
    assert!(e.to_string().contains("needs `tls = true`"), "{e}");
    let (_, reason) = invalid(
        "[backend a]\naddress = h:1\ntls = true\ntls_server_name = a b\n[route r]\nbackends = a\n",
        4,
        "backend a",
        "tls_server_name",
    );
    assert!(reason.contains("DNS name"), "{reason}");
}

#[test]
fn a_route_websocket_max_frame_overrides_the_servers() {
    let c = parse(TAIL, "t.ini").unwrap();
    assert_eq!(c.server.websocket_max_frame, 1 << 20);
    assert_eq!(c.routes[0].websocket_max_frame, None);
    assert_eq!(c.routes[0].websocket_max_frame(&c.server), 1 << 20);
    let text = format!("[server]\nwebsocket_max_frame = 64k\n{TAIL}");
    let c = parse(&text, "t.ini").unwrap();
    assert_eq!(c.routes[0].websocket_max_frame(&c.server), 64 << 10);
    let c = parse(&format!("{text}websocket_max_frame = 0\n"), "t.ini").unwrap();
    assert_eq!(c.routes[0].websocket_max_frame, Some(0));
    assert_eq!(c.routes[0].websocket_max_frame(&c.server), 0);
}
