//! `[listener NAME]` sections: parsing, defaults, rendering, diffs and errors.

use std::path::PathBuf;
use std::time::Duration;

use switchyard_config::{diff, parse, Change, ErrorKind, Fallback, Protocols};

/// A backend, a route and a TCP group, so a file with only a listener added is otherwise valid.
const BASE: &str = "[backend a]\naddress = 127.0.0.1:9001\n\
                    [route r]\nbackends = a\n\
                    [l4 echo]\nlisten = 127.0.0.1:7000\nbackends = a\n";

fn errors(text: &str) -> Vec<switchyard_config::ConfigError> {
    match parse(text, "t.ini") {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn parses_with_defaults_and_round_trips() {
    let text = format!("{BASE}[listener public]\nlisten = 0.0.0.0:8443\n");
    let config = parse(&text, "t.ini").unwrap();
    let l = &config.listeners[0];
    assert_eq!(l.name, "public");
    assert_eq!(l.listen, ["0.0.0.0:8443".parse().unwrap()]);
    assert_eq!(l.protocols, Protocols::default());
    assert!(l.protocols.http1 && l.protocols.h2c && !l.protocols.tls);
    assert_eq!(l.fallback, None);
    assert_eq!(l.sniff_timeout, None);
    assert_eq!(
        l.effective_sniff_timeout(&config.server),
        config.server.client_header_timeout
    );
    assert_eq!(l.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(l.tls_reload_interval, Duration::from_secs(5));
    assert_eq!(config.listener("public"), Some(l));
    let ini = config.to_ini();
    assert!(
        ini.contains("[listener public]\nlisten = 0.0.0.0:8443\nprotocols = http1, h2c\n"),
        "{ini}"
    );
    assert_eq!(parse(&ini, "again.ini"), Ok(config));
}

#[test]
fn every_key_parses_and_round_trips() {
    let text = format!(
        "{BASE}[listener edge]\nlisten = 127.0.0.1:8443, [::1]:8443\n\
         protocols = tls, http1\nfallback = tcp:echo\nsniff_timeout = 2s\n\
         tls_certificate = /etc/sw/default.crt\ntls_key = /etc/sw/default.key\n\
         tls_sni = API.example.com /etc/sw/api.crt /etc/sw/api.key, \
         *.models.example.com /etc/sw/m.crt /etc/sw/m.key\n\
         tls_handshake_timeout = 3s\ntls_reload_interval = 0\n\
         acme_challenge_dir = /var/lib/switchyard/acme\n"
    );
    let config = parse(&text, "t.ini").unwrap();
    let l = &config.listeners[0];
    assert_eq!(l.listen.len(), 2);
    assert!(l.protocols.tls && l.protocols.http1 && !l.protocols.h2c);
    assert_eq!(l.fallback, Some(Fallback::Tcp("echo".into())));
    assert_eq!(l.sniff_timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        l.tls_certificate,
        Some(PathBuf::from("/etc/sw/default.crt"))
    );
    assert_eq!(l.tls_sni.len(), 2);
    assert_eq!(l.tls_sni[0].host, "api.example.com");
    assert_eq!(l.tls_sni[1].host, "*.models.example.com");
    assert_eq!(l.tls_handshake_timeout, Duration::from_secs(3));
    assert_eq!(l.tls_reload_interval, Duration::ZERO);
    assert_eq!(l.tls_files().len(), 3);
    assert_eq!(
        l.acme_challenge_dir,
        Some(PathBuf::from("/var/lib/switchyard/acme"))
    );
    assert_eq!(parse(&config.to_ini(), "again.ini"), Ok(config.clone()));
    assert!(
        config.summary().contains(
            "1 listener:\n  edge: http1, tls on 127.0.0.1:8443, [::1]:8443, else tcp:echo"
        ),
        "{}",
        config.summary()
    );
}

#[test]
fn unknown_protocol_names_are_reported_with_a_suggestion() {
    let e = errors(&format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:1\nprotocols = http1, h2\n"
    ));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key.as_deref(), Some("protocols"));
    let msg = e[0].to_string();
    assert!(msg.contains("unknown protocol `h2`"), "{msg}");
    assert!(msg.contains("did you mean `h2c`?"), "{msg}");
}

#[test]
fn fallback_must_name_a_tcp_l4_group() {
    let e = errors(&format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:1\nfallback = tcp:ecko\n"
    ));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key.as_deref(), Some("fallback"));
    assert_eq!(e[0].line, 10);
    match &e[0].kind {
        ErrorKind::UnknownGroup {
            name,
            known,
            suggestion,
        } => {
            assert_eq!(name, "ecko");
            assert_eq!(known, &["echo"]);
            assert_eq!(suggestion.as_deref(), Some("echo"));
        }
        other => panic!("{other:?}"),
    }
    let e = errors(&format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:1\nfallback = udp:echo\n"
    ));
    assert!(e[0].to_string().contains("expected tcp:GROUP"), "{}", e[0]);
}

#[test]
fn tls_needs_a_certificate_and_a_key() {
    let e = errors(&format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:1\nprotocols = tls\ntls_key = /k.pem\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    let msg = e[0].to_string();
    assert!(msg.contains("protocols: needs `tls_certificate`"), "{msg}");
}

#[test]
fn tls_keys_without_tls_are_refused() {
    let e = errors(&format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:1\ntls_certificate = /c.pem\ntls_sni = a.com c k\n"
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].key.as_deref(), Some("tls_certificate"));
    assert!(e[0].to_string().contains("needs `protocols`"), "{}", e[0]);
}

#[test]
fn acme_needs_plain_http1() {
    let e = errors(&format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:1\nprotocols = h2c\nacme_challenge_dir = /acme\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].key.as_deref(), Some("acme_challenge_dir"));
}

#[test]
fn bad_values_are_reported_by_key() {
    let e = errors(&format!(
        "{BASE}[listener p]\nlisten = 127.0.0.1:1\nprotocols = http1, tls\n\
         tls_certificate = /a b.pem\ntls_key = /k.pem\ntls_sni = a.com:443 c k\n\
         tls_handshake_timeout = 0\ntls_reload_interval = 10ms\nsniff_timeout = 1h\n"
    ));
    let keys: Vec<&str> = e.iter().filter_map(|e| e.key.as_deref()).collect();
    assert_eq!(
        keys,
        [
            "tls_certificate",
            "tls_sni",
            "tls_handshake_timeout",
            "tls_reload_interval",
            "sniff_timeout"
        ]
    );
}

#[test]
fn listen_is_required_and_must_not_collide() {
    let e = errors(&format!("{BASE}[listener p]\nprotocols = http1\n"));
    assert!(matches!(&e[0].kind, ErrorKind::MissingKey { key } if key == "listen"));
    let e = errors(&format!(
        "{BASE}[server]\nlisten = 127.0.0.1:8080\n[listener p]\nlisten = 0.0.0.0:8080\n\
         [listener q]\nlisten = 127.0.0.1:7000\n[listener s]\nlisten = 127.0.0.1:9\n\
         [listener s]\nlisten = 127.0.0.1:10\n"
    ));
    let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(msgs[0].contains("collides with [server] listen 127.0.0.1:8080"));
    assert!(msgs[1].contains("collides with [l4 echo] listen 127.0.0.1:7000"));
    assert!(msgs[2].contains("duplicate section"));
}

#[test]
fn diff_reports_listener_changes() {
    let old = parse(
        &format!("{BASE}[listener p]\nlisten = 127.0.0.1:1\n[listener q]\nlisten = 127.0.0.1:2\n"),
        "t",
    )
    .unwrap();
    let new = parse(
        &format!(
            "{BASE}[listener p]\nlisten = 127.0.0.1:1\nprotocols = http1\n\
             [listener n]\nlisten = 127.0.0.1:3\n"
        ),
        "t",
    )
    .unwrap();
    let changes = diff(&old, &new);
    assert_eq!(
        changes,
        [
            Change::ListenerChanged {
                name: "p".into(),
                key: "protocols".into(),
                old: "http1, h2c".into(),
                new: "http1".into()
            },
            Change::ListenerRemoved("q".into()),
            Change::ListenerAdded("n".into()),
        ]
    );
    assert_eq!(
        changes[0].to_string(),
        "listener p: protocols http1, h2c -> http1"
    );
}
