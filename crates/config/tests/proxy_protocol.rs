//! `proxy_protocol` and `proxy_protocol_timeout` on `[server]`, `[listener NAME]` and
//! `[l4 NAME]`: parsing, defaults, rendering and errors.

use std::time::Duration;

use switchyard_config::{parse, ErrorKind, ProxyProtocol, DEFAULT_PROXY_PROTOCOL_TIMEOUT};

/// A backend, a route, a TCP and a UDP group: a file with these added is otherwise valid.
const BASE: &str = "[backend a]\naddress = 127.0.0.1:9001\n[route r]\nbackends = a\n";

fn errors(text: &str) -> Vec<switchyard_config::ConfigError> {
    match parse(text, "t.ini") {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn off_by_default_with_a_five_second_timeout() {
    let text = format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:8443\n\
         [l4 t]\nlisten = 127.0.0.1:7000\nbackends = a\n"
    );
    let c = parse(&text, "t.ini").unwrap();
    assert_eq!(c.server.proxy_protocol, ProxyProtocol::Off);
    assert_eq!(c.server.proxy_protocol_timeout, Duration::from_secs(5));
    assert_eq!(DEFAULT_PROXY_PROTOCOL_TIMEOUT, Duration::from_secs(5));
    assert_eq!(c.listeners[0].proxy_protocol, ProxyProtocol::Off);
    assert_eq!(c.l4[0].proxy_protocol, ProxyProtocol::Off);
    let ini = c.to_ini();
    assert!(
        ini.contains("proxy_protocol = off\nproxy_protocol_timeout = 5s\n"),
        "{ini}"
    );
    // Ports leave the keys out when off.
    assert_eq!(ini.matches("proxy_protocol =").count(), 1, "{ini}");
    assert_eq!(parse(&ini, "again.ini"), Ok(c));
}

#[test]
fn every_section_parses_and_round_trips() {
    let text = format!(
        "[server]\ntrusted_proxies = 10.0.0.0/8, fd00::/8\nproxy_protocol = any\n\
         proxy_protocol_timeout = 2s\n{BASE}\
         [listener p]\nlisten = 127.0.0.1:8443\nproxy_protocol = v2\n\
         proxy_protocol_timeout = 750ms\n\
         [listener q]\nlisten = 127.0.0.1:8444\nproxy_protocol = v1\n\
         [l4 t]\nlisten = 127.0.0.1:7000\nbackends = a\nproxy_protocol = v2\n"
    );
    let c = parse(&text, "t.ini").unwrap();
    assert_eq!(c.server.proxy_protocol, ProxyProtocol::Any);
    assert_eq!(c.server.proxy_protocol_timeout, Duration::from_secs(2));
    let (p, q) = (&c.listeners[0], &c.listeners[1]);
    assert_eq!(p.proxy_protocol, ProxyProtocol::V2);
    assert_eq!(
        p.effective_proxy_protocol_timeout(&c.server),
        Duration::from_millis(750)
    );
    assert_eq!(q.proxy_protocol, ProxyProtocol::V1);
    assert_eq!(
        q.effective_proxy_protocol_timeout(&c.server),
        Duration::from_secs(2)
    );
    assert_eq!(c.l4[0].proxy_protocol, ProxyProtocol::V2);
    assert_eq!(
        c.l4[0].effective_proxy_protocol_timeout(&c.server),
        Duration::from_secs(2)
    );
    let ini = c.to_ini();
    assert!(
        ini.contains("proxy_protocol = v2\nproxy_protocol_timeout = 750ms\n"),
        "{ini}"
    );
    assert_eq!(parse(&ini, "again.ini"), Ok(c));
}

#[test]
fn the_header_needs_trusted_proxies_wherever_it_is_on() {
    let text = format!(
        "[server]\nproxy_protocol = v1\n{BASE}\
         [listener p]\nlisten = 127.0.0.1:8443\nproxy_protocol = any\n\
         [l4 t]\nlisten = 127.0.0.1:7000\nbackends = a\nproxy_protocol = v2\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 3, "{e:?}");
    for (err, line) in e.iter().zip([2, 9, 13]) {
        assert_eq!(err.line, line, "{err}");
        assert_eq!(err.key.as_deref(), Some("proxy_protocol"));
        assert!(
            matches!(&err.kind, ErrorKind::NeedsServerKey { needed, .. } if needed == "trusted_proxies")
        );
        assert!(
            err.to_string()
                .contains("needs `trusted_proxies` in [server]"),
            "{err}"
        );
    }
}

#[test]
fn bad_values_and_misplaced_keys_are_errors() {
    let trusted = "[server]\ntrusted_proxies = 127.0.0.1\n";
    let cases: &[(&str, &str)] = &[
        (
            "[server]\nproxy_protocol = on\n",
            "expected off, v1, v2 or any",
        ),
        ("[server]\nproxy_protocol_timeout = 0\n", "greater than 0"),
        ("[server]\nproxy_protocol_timeout = 10m\n", "at most 5m"),
        (
            "[listener p]\nlisten = 127.0.0.1:1\nproxy_protocol_timeout = 1s\n",
            "needs `proxy_protocol`",
        ),
        (
            "[l4 u]\nlisten = 127.0.0.1:53\nprotocol = udp\nbackends = a\nproxy_protocol = v2\n",
            "not valid with `protocol = udp`",
        ),
        (
            "[l4 u]\nlisten = 127.0.0.1:53\nprotocol = udp\nbackends = a\n\
             proxy_protocol_timeout = 1s\n",
            "not valid with `protocol = udp`",
        ),
        (
            "[l4 t]\nlisten = 127.0.0.1:7000\nbackends = a\nproxy_protocol = V2\n",
            "expected off, v1, v2 or any",
        ),
    ];
    for (section, needle) in cases {
        let text = if section.starts_with("[server]") {
            format!("{section}{BASE}")
        } else {
            format!("{trusted}{BASE}{section}")
        };
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{section}: {e:?}");
        assert!(e[0].to_string().contains(needle), "{section}: {}", e[0]);
    }
}
