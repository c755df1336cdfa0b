//! `[l4 NAME]` sections: parsing, defaults, rendering, diffs and errors.

use std::time::Duration;

use switchyard_config::{
    diff, parse, Change, ErrorKind, L4Protocol, DEFAULT_UDP_IDLE_TIMEOUT, DEFAULT_UDP_MAX_DATAGRAM,
    DEFAULT_UDP_MAX_SESSIONS,
};

/// Two backends and a route, so a file with only an L4 listener added is otherwise valid.
const BASE: &str = "[backend a]\naddress = 127.0.0.1:9001\n\
                    [backend b]\naddress = 127.0.0.1:9002\n\
                    [route r]\nbackends = a\n";

#[test]
fn parses_with_defaults_and_round_trips() {
    let text = format!("{BASE}[l4 db]\nlisten = 0.0.0.0:5432\nbackends = a, b\n");
    let config = parse(&text, "t.ini").unwrap();
    let l = &config.l4[0];
    assert_eq!(l.name, "db");
    assert_eq!(l.listen, "0.0.0.0:5432".parse().unwrap());
    assert_eq!(l.protocol, L4Protocol::Tcp);
    assert_eq!(l.backends, ["a", "b"]);
    assert_eq!(l.balancer, "round_robin");
    assert_eq!(l.idle_timeout, Duration::from_secs(600));
    assert_eq!(l.connect_timeout, None);
    assert_eq!(
        l.effective_connect_timeout(&config.server),
        config.server.upstream_connect_timeout
    );
    assert_eq!(config.l4_listener("db"), Some(l));
    let ini = config.to_ini();
    assert!(
        ini.contains("[l4 db]\nlisten = 0.0.0.0:5432\nprotocol = tcp\n"),
        "{ini}"
    );
    assert!(!ini.contains("\nconnect_timeout ="), "{ini}");
    assert_eq!(parse(&ini, "again.ini"), Ok(config));
}

#[test]
fn every_key_parses_and_round_trips() {
    let text = format!(
        "{BASE}[l4 db]\nlisten = 127.0.0.1:5432\nprotocol = tcp\nbackends = b, a\n\
         balancer = consistent_hash\nidle_timeout = 300ms\nconnect_timeout = 2s\n"
    );
    let config = parse(&text, "t.ini").unwrap();
    let l = &config.l4[0];
    assert_eq!(l.backends, ["b", "a"]);
    assert_eq!(l.balancer, "consistent_hash");
    assert_eq!(l.idle_timeout, Duration::from_millis(300));
    assert_eq!(l.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        l.effective_connect_timeout(&config.server),
        Duration::from_secs(2)
    );
    assert_eq!(parse(&config.to_ini(), "again.ini"), Ok(config.clone()));
    assert!(config
        .summary()
        .contains("1 l4 listener:\n  db: tcp 127.0.0.1:5432 -> b, a via consistent_hash"));
}

#[test]
fn diff_reports_added_removed_and_changed_listeners() {
    let old = parse(
        &format!(
            "{BASE}[l4 x]\nlisten = 127.0.0.1:7000\nbackends = a\n\
             [l4 y]\nlisten = 127.0.0.1:7001\nbackends = a\n"
        ),
        "old.ini",
    )
    .unwrap();
    let new = parse(
        &format!(
            "{BASE}[l4 y]\nlisten = 127.0.0.1:7001\nbackends = a, b\n\
             [l4 z]\nlisten = 127.0.0.1:7002\nbackends = a\n"
        ),
        "new.ini",
    )
    .unwrap();
    let changes = diff(&old, &new);
    assert_eq!(
        changes,
        vec![
            Change::L4Removed("x".into()),
            Change::L4Changed {
                name: "y".into(),
                key: "backends".into(),
                old: "a".into(),
                new: "a, b".into(),
            },
            Change::L4Added("z".into()),
        ]
    );
    assert_eq!(changes[1].to_string(), "l4 y: backends a -> a, b");
}

/// The one error `text` gives, with its line and key checked.
fn one_error(text: &str, line: usize, key: &str) -> ErrorKind {
    let errors = parse(text, "t.ini").unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!((e.line, e.key.as_deref()), (line, Some(key)), "{e}");
    assert!(e.to_string().starts_with(&format!("t.ini:{line}: ")), "{e}");
    e.kind.clone()
}

#[test]
fn missing_listen_and_backends_are_reported_on_the_header() {
    let kind = one_error(&format!("{BASE}[l4 db]\nbackends = a\n"), 7, "listen");
    assert_eq!(
        kind,
        ErrorKind::MissingKey {
            key: "listen".into()
        }
    );
    let kind = one_error(
        &format!("{BASE}[l4 db]\nlisten = 127.0.0.1:7000\n"),
        7,
        "backends",
    );
    assert_eq!(
        kind,
        ErrorKind::MissingKey {
            key: "backends".into()
        }
    );
}

#[test]
fn unknown_backend_names_the_missing_one() {
    let kind = one_error(
        &format!("{BASE}[l4 db]\nlisten = 127.0.0.1:7000\nbackends = a, c\n"),
        9,
        "backends",
    );
    assert!(
        matches!(&kind, ErrorKind::UnknownBackend { name, .. } if name == "c"),
        "{kind:?}"
    );
}

#[test]
fn udp_parses_with_its_own_defaults_and_round_trips() {
    let text = format!("{BASE}[l4 dns]\nlisten = 127.0.0.1:5353\nprotocol = udp\nbackends = a\n");
    let config = parse(&text, "t.ini").unwrap();
    let l = &config.l4[0];
    assert_eq!(l.protocol, L4Protocol::Udp);
    assert_eq!(l.idle_timeout, DEFAULT_UDP_IDLE_TIMEOUT);
    assert_eq!(l.idle_timeout, Duration::from_secs(30));
    assert_eq!(l.max_sessions, DEFAULT_UDP_MAX_SESSIONS);
    assert_eq!(l.max_datagram, DEFAULT_UDP_MAX_DATAGRAM);
    assert_eq!(l.connect_timeout, None);
    let ini = config.to_ini();
    assert!(
        ini.contains("protocol = udp\n") && ini.contains("max_sessions = 10000\n"),
        "{ini}"
    );
    assert!(ini.contains("max_datagram = 65535\n"), "{ini}");
    assert_eq!(parse(&ini, "again.ini"), Ok(config.clone()));
    assert!(config
        .summary()
        .contains("  dns: udp 127.0.0.1:5353 -> a via round_robin"));
}

#[test]
fn udp_keys_parse_and_round_trip() {
    let text = format!(
        "{BASE}[l4 dns]\nlisten = 127.0.0.1:5353\nprotocol = udp\nbackends = a, b\n\
         balancer = consistent_hash\nidle_timeout = 200ms\nmax_sessions = 3\nmax_datagram = 1k\n"
    );
    let config = parse(&text, "t.ini").unwrap();
    let l = &config.l4[0];
    assert_eq!(l.balancer, "consistent_hash");
    assert_eq!(l.idle_timeout, Duration::from_millis(200));
    assert_eq!(l.max_sessions, 3);
    assert_eq!(l.max_datagram, 1024);
    assert_eq!(parse(&config.to_ini(), "again.ini"), Ok(config.clone()));
    // Switching the protocol shows up in a diff together with the keys it brings.
    let tcp = parse(
        &format!("{BASE}[l4 dns]\nlisten = 127.0.0.1:5353\nbackends = a, b\nbalancer = consistent_hash\n"),
        "tcp.ini",
    )
    .unwrap();
    let changes: Vec<String> = diff(&tcp, &config)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        changes.contains(&"l4 dns: protocol tcp -> udp".to_string()),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("l4 dns: max_sessions")),
        "{changes:?}"
    );
}

#[test]
fn keys_of_the_other_protocol_are_errors_on_their_line() {
    let kind = one_error(
        &format!(
            "{BASE}[l4 dns]\nlisten = 127.0.0.1:5353\nprotocol = udp\nbackends = a\n\
             connect_timeout = 1s\n"
        ),
        11,
        "connect_timeout",
    );
    assert!(
        matches!(&kind, ErrorKind::NotForProtocol { protocol, .. } if protocol == "udp"),
        "{kind:?}"
    );
    assert!(kind.to_string().contains("protocol = udp"), "{kind}");
    for key in ["max_sessions = 10", "max_datagram = 1500"] {
        let kind = one_error(
            &format!("{BASE}[l4 db]\nlisten = 127.0.0.1:7000\nbackends = a\n{key}\n"),
            10,
            key.split(' ').next().unwrap(),
        );
        assert!(
            matches!(&kind, ErrorKind::NotForProtocol { protocol, .. } if protocol == "tcp"),
            "{kind:?}"
        );
    }
}

#[test]
fn udp_limits_are_range_checked() {
    for (value, line_key) in [
        ("max_sessions = 0", "max_sessions"),
        ("max_sessions = 1000001", "max_sessions"),
        ("max_datagram = 511", "max_datagram"),
        ("max_datagram = 64k", "max_datagram"),
        ("idle_timeout = 0", "idle_timeout"),
    ] {
        let kind = one_error(
            &format!(
                "{BASE}[l4 dns]\nlisten = 127.0.0.1:5353\nprotocol = udp\nbackends = a\n{value}\n"
            ),
            11,
            line_key,
        );
        assert!(
            matches!(kind, ErrorKind::InvalidValue { .. }),
            "{value}: {kind:?}"
        );
    }
    let kind = one_error(
        &format!("{BASE}[l4 x]\nlisten = 127.0.0.1:5353\nprotocol = sctp\nbackends = a\n"),
        9,
        "protocol",
    );
    match kind {
        ErrorKind::InvalidValue { value, reason } => {
            assert_eq!(value, "sctp");
            assert!(reason.contains("`udp`"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tcp_and_udp_listeners_may_share_an_address() {
    // The default [server] listen is 127.0.0.1:8080 (TCP): a UDP listener there is fine.
    let ok = format!(
        "{BASE}[l4 t]\nlisten = 127.0.0.1:5353\nbackends = a\n\
         [l4 u]\nlisten = 127.0.0.1:5353\nprotocol = udp\nbackends = a\n\
         [l4 w]\nlisten = 127.0.0.1:8080\nprotocol = udp\nbackends = a\n"
    );
    assert_eq!(parse(&ok, "t.ini").unwrap().l4.len(), 3);
    let kind = one_error(
        &format!(
            "{BASE}[l4 u]\nlisten = 127.0.0.1:5353\nprotocol = udp\nbackends = a\n\
             [l4 v]\nlisten = 0.0.0.0:5353\nprotocol = udp\nbackends = a\n"
        ),
        12,
        "listen",
    );
    assert!(
        matches!(&kind, ErrorKind::ListenConflict { other, .. } if other.contains("[l4 u]")),
        "{kind:?}"
    );
}

#[test]
fn listen_must_not_collide_with_other_listeners() {
    // The default [server] listen is 127.0.0.1:8080.
    let kind = one_error(
        &format!("{BASE}[l4 db]\nlisten = 0.0.0.0:8080\nbackends = a\n"),
        8,
        "listen",
    );
    assert!(
        matches!(&kind, ErrorKind::ListenConflict { other, .. } if other.contains("[server] listen")),
        "{kind:?}"
    );
    let kind = one_error(
        &format!(
            "[server]\nadmin_listen = 127.0.0.1:9000\n{BASE}[l4 db]\nlisten = 127.0.0.1:9000\n\
             backends = a\n"
        ),
        10,
        "listen",
    );
    assert!(
        matches!(&kind, ErrorKind::ListenConflict { other, .. } if other.contains("admin_listen")),
        "{kind:?}"
    );
    let kind = one_error(
        &format!(
            "{BASE}[l4 x]\nlisten = 127.0.0.1:7000\nbackends = a\n\
             [l4 y]\nlisten = 127.0.0.1:7000\nbackends = a\n"
        ),
        11,
        "listen",
    );
    assert!(
        matches!(&kind, ErrorKind::ListenConflict { other, .. } if other.contains("[l4 x]")),
        "{kind:?}"
    );
    // Port 0 (any free port) never collides.
    let ok = format!(
        "{BASE}[l4 x]\nlisten = 127.0.0.1:0\nbackends = a\n[l4 y]\nlisten = 127.0.0.1:0\n\
         backends = a\n"
    );
    assert_eq!(parse(&ok, "t.ini").unwrap().l4.len(), 2);
}

#[test]
fn unknown_keys_and_bad_values_are_reported() {
    let errors = parse(
        &format!(
            "{BASE}[l4 db]\nlisten = 127.0.0.1:7000\nbackends = a\nidle_timout = 1s\n\
             connect_timeout = 0\nbalancer = round_robbin\n"
        ),
        "t.ini",
    )
    .unwrap_err()
    .0;
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(matches!(
        &errors[0].kind,
        ErrorKind::UnknownKey { suggestion: Some(s), .. } if s == "idle_timeout"
    ));
    assert_eq!(errors[1].key.as_deref(), Some("connect_timeout"));
    assert!(matches!(
        &errors[2].kind,
        ErrorKind::UnknownBalancer { suggestion: Some(s), .. } if s == "round_robin"
    ));
    let dup = parse(
        &format!(
            "{BASE}[l4 db]\nlisten = 127.0.0.1:7000\nbackends = a\n\
             [l4 db]\nlisten = 127.0.0.1:7001\nbackends = a\n"
        ),
        "t.ini",
    )
    .unwrap_err()
    .0;
    assert!(matches!(
        dup[0].kind,
        ErrorKind::DuplicateSection { first_line: 7 }
    ));
    let bad_name = parse(&format!("{BASE}[l4]\nlisten = 127.0.0.1:7000\n"), "t.ini")
        .unwrap_err()
        .0;
    assert!(matches!(
        bad_name[0].kind,
        ErrorKind::InvalidSectionName { .. }
    ));
}
