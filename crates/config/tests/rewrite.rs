//! The rewrite keys of `[route NAME]`: parsed, rejected with their line, rendered back, and
//! diffed.

use switchyard_config::{diff, parse, ErrorKind, HeaderRules, PathRewrite, RewriteConfig};

const HEAD: &str = "[backend a]\naddress = h:1\n[route r]\nbackends = a\n";

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_key_parses_and_renders_back() {
    let text = format!(
        "{HEAD}strip_prefix = /api\n\
         rewrite_path = ^/v1/(?P<model>[^/]+)/(.*)$ /models/${{model}}/$2\n\
         add_prefix = /v2\n\
         request_header_remove = X-Debug, cookie\n\
         request_header_set = X-Tenant: blue; Authorization: Bearer abc\n\
         request_header_add = x-tag: a; x-tag: b\n\
         host_rewrite = API.internal:8000\n\
         response_header_remove = server\n\
         response_header_set = content-type: text/plain; charset=utf-8\n\
         response_header_add = x-served-by: switchyard\n"
    );
    let config = parse(&text, "t.ini").unwrap();
    let want = RewriteConfig {
        strip_prefix: Some("/api".into()),
        rewrite_path: Some(PathRewrite {
            pattern: "^/v1/(?P<model>[^/]+)/(.*)$".into(),
            replacement: "/models/${model}/$2".into(),
        }),
        add_prefix: Some("/v2".into()),
        request_headers: HeaderRules {
            remove: vec!["x-debug".into(), "cookie".into()],
            set: pairs(&[("x-tenant", "blue"), ("authorization", "Bearer abc")]),
            add: pairs(&[("x-tag", "a"), ("x-tag", "b")]),
        },
        host_rewrite: Some("api.internal:8000".into()),
        response_headers: HeaderRules {
            remove: vec!["server".into()],
            set: pairs(&[("content-type", "text/plain; charset=utf-8")]),
            add: pairs(&[("x-served-by", "switchyard")]),
        },
    };
    assert_eq!(config.routes[0].rewrite, want);
    let ini = config.to_ini();
    assert!(ini.contains("request_header_set = x-tenant: blue; authorization: Bearer abc\n"));
    assert_eq!(parse(&ini, "t.ini").unwrap(), config);
    // A route without rewrite keys renders none of them.
    let plain = parse(HEAD, "t.ini").unwrap();
    assert!(plain.routes[0].rewrite.is_empty());
    assert!(!plain.to_ini().contains("strip_prefix"));
}

#[test]
fn bad_values_are_errors_with_their_line() {
    for (line, reason) in [
        ("strip_prefix = api", "starting with `/`"),
        ("add_prefix = /", "longer than `/`"),
        ("rewrite_path = ^/(a $1", "invalid regex"),
        ("rewrite_path = ^/(a)$ /$2", "group `2`"),
        ("rewrite_path = ^/(?P<x>a)$ /${y}", "group `y`"),
        ("rewrite_path = /only-a-regex", "REGEX REPLACEMENT"),
        ("request_header_set = x-a", "name: value"),
        (
            "request_header_add = bad name: 1",
            "not an HTTP header name",
        ),
        (
            "request_header_set = content-length: 1",
            "managed by the proxy",
        ),
        ("request_header_remove = host", "host_rewrite"),
        (
            "response_header_remove = transfer-encoding",
            "managed by the proxy",
        ),
        ("response_header_set = x-a: caf\u{e9}", "visible ASCII"),
        ("host_rewrite = a/b", "host name"),
    ] {
        // Line 5: after the four lines of HEAD.
        let text = format!("{HEAD}{line}\n");
        let errors = parse(&text, "t.ini").unwrap_err().0;
        assert_eq!(errors.len(), 1, "{line}: {errors:#?}");
        let e = &errors[0];
        let key = line.split(" = ").next().unwrap();
        assert_eq!(
            (e.line, e.section.as_deref(), e.key.as_deref()),
            (5, Some("route r"), Some(key)),
            "{line}"
        );
        match &e.kind {
            ErrorKind::InvalidValue { reason: r, .. } => {
                assert!(r.contains(reason), "{line}: {r}")
            }
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn a_changed_rule_shows_in_the_diff() {
    let old = parse(&format!("{HEAD}add_prefix = /v1\n"), "t.ini").unwrap();
    let new = parse(&format!("{HEAD}add_prefix = /v2\n"), "t.ini").unwrap();
    let shown: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].contains("add_prefix"), "{shown:?}");
}
