//! `[acl NAME]` and `[server] trusted_proxies`: parsing, errors, rendering and diffs.

use switchyard_config::{diff, parse, AclAction, Change, ErrorKind};

const BASE: &str = "[backend b]\naddress = h:1\n[route chat]\nbackends = b\n\
                    [l4 redis]\nlisten = 127.0.0.1:6380\nbackends = b\n\
                    [l4 dns]\nlisten = 127.0.0.1:5353\nprotocol = udp\nbackends = b\n\
                    [listener public]\nlisten = 127.0.0.1:8443\n";

#[test]
fn acls_parse_render_and_summarise() {
    let text = format!(
        "[server]\ntrusted_proxies = 10.0.0.0/8, fd00::/8\n{BASE}\
         [acl office]\nrules = deny 10.0.0.66, allow 10.0.0.0/8, allow ::1\ndefault = deny\n\
         routes = chat\nl4 = redis\nlisteners = public\nmethods = POST, DELETE\npath_prefix = /v1/\n"
    );
    let c = parse(&text, "t.ini").unwrap();
    assert_eq!(c.server.trusted_proxies.len(), 2);
    let a = c.acl("office").unwrap();
    assert_eq!(a.rules.len(), 3);
    assert_eq!(a.decide("10.0.0.66".parse().unwrap()), AclAction::Deny);
    assert_eq!(a.decide("10.0.0.1".parse().unwrap()), AclAction::Allow);
    assert_eq!((a.routes.len(), a.l4.len(), a.listeners.len()), (1, 1, 1));
    assert_eq!(a.methods, ["POST", "DELETE"]);
    assert_eq!(parse(&c.to_ini(), "again.ini"), Ok(c.clone()));
    assert!(
        c.summary().contains("office: deny 10.0.0.66/32"),
        "{}",
        c.summary()
    );
}

#[test]
fn acl_errors_name_line_and_key() {
    let text = format!(
        "{BASE}[acl a]\nrules = allow 10.0.0.1/8, permit ::1\n\
         [acl b]\nrules = allow ::1\n\
         [acl c]\nrules = allow ::1\nroutes = caht\nl4 = dns\nlisteners = pubic\n"
    );
    let errors = parse(&text, "t.ini").unwrap_err();
    let found: Vec<(usize, Option<&str>)> = errors
        .0
        .iter()
        .map(|e| (e.line, e.key.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (15, Some("rules")),
            (15, Some("rules")),
            (17, Some("rules")),
            (20, Some("routes")),
            (21, Some("l4")),
            (22, Some("listeners")),
        ],
        "{errors}"
    );
    assert!(errors.0[0].to_string().contains("host bits"), "{errors}");
    assert!(matches!(errors.0[2].kind, ErrorKind::NeedsKey { .. }));
    assert!(
        errors.0[4].to_string().contains("protocol = tcp"),
        "{errors}"
    );
    assert!(errors.0[5].to_string().contains("did you mean"), "{errors}");
    let bad = parse("[server]\ntrusted_proxies = 10.0.0.0/33\n[route r]\nbackends = b\n[backend b]\naddress = h:1\n", "t");
    assert_eq!(
        bad.unwrap_err().0[0].key.as_deref(),
        Some("trusted_proxies")
    );
}

#[test]
fn acl_changes_are_diffed() {
    let old = parse(
        &format!("{BASE}[acl a]\nrules = allow ::1\nroutes = chat\n"),
        "a",
    )
    .unwrap();
    let new = parse(
        &format!("{BASE}[acl a]\nrules = allow ::1\ndefault = allow\nroutes = chat\n"),
        "b",
    )
    .unwrap();
    let changes: Vec<String> = diff(&old, &new).iter().map(Change::to_string).collect();
    assert_eq!(changes, ["acl a: default deny -> allow"]);
}
