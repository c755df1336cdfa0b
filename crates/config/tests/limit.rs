//! `[limit NAME]` and `[budget NAME]`: parsing, defaults, errors, rendering and diffs.

use std::time::Duration;

use switchyard_config::{diff, parse, Change, ErrorKind, LimitKey, DEFAULT_LIMIT_MAX_KEYS};

const BASE: &str = "[backend b]\naddress = h:1\n[route chat]\npath_prefix = /v1/\nbackends = b\n";

#[test]
fn limits_parse_with_defaults() {
    let text = format!(
        "{BASE}[limit all]\nrate = 100/s\n\
         [limit per-key]\nkey = api_key\nrate = 6000/m\nburst = 20\npath_prefix = /v1/\n\
         routes = chat\nmax_keys = 5000\n\
         [limit tenant]\nkey = header:X-Tenant\nrate = 10/h\n"
    );
    let c = parse(&text, "t.ini").unwrap();
    let all = c.limit("all").unwrap();
    assert_eq!(all.key, LimitKey::Global);
    assert_eq!(
        (all.rate.count, all.rate.per),
        (100, Duration::from_secs(1))
    );
    assert_eq!(all.burst, 100, "burst defaults to the rate's count");
    assert_eq!(all.max_keys, DEFAULT_LIMIT_MAX_KEYS);
    let k = c.limit("per-key").unwrap();
    assert_eq!(k.key, LimitKey::ApiKey);
    assert_eq!((k.burst, k.max_keys), (20, 5000));
    assert_eq!(k.path_prefix.as_deref(), Some("/v1/"));
    assert_eq!(k.routes, ["chat"]);
    assert_eq!(
        c.limit("tenant").unwrap().key,
        LimitKey::Header("x-tenant".into())
    );
    assert_eq!(parse(&c.to_ini(), "again.ini"), Ok(c.clone()));
    assert!(c
        .summary()
        .contains("per-key: 6000/m per api_key, burst 20 on /v1/ of routes chat"));
}

#[test]
fn limit_errors_name_line_and_key() {
    let text = format!(
        "{BASE}[limit a]\nkey = ip\nburst = 0\nroutes = chta\nmax_keys = 0\n[limit a]\nrate = 1/s\n"
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
            (6, Some("rate")),
            (7, Some("key")),
            (8, Some("burst")),
            (10, Some("max_keys")),
            (11, None),
        ],
        "{errors}"
    );
    // `routes` naming no route, with a suggestion.
    let text = format!("{BASE}[limit a]\nrate = 1/s\nroutes = chta\n");
    let errors = parse(&text, "t.ini").unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].line, 8);
    match &errors.0[0].kind {
        ErrorKind::UnknownRoute { suggestion, .. } => {
            assert_eq!(suggestion.as_deref(), Some("chat"))
        }
        other => panic!("{other:?}"),
    }
    assert!(errors.to_string().contains("did you mean"), "{errors}");
}

#[test]
fn limit_changes_are_diffed() {
    let old = parse(&format!("{BASE}[limit a]\nrate = 1/s\n"), "a").unwrap();
    let new = parse(
        &format!(
            "{BASE}[limit a]\nrate = 2/s\nburst = 1\npath_prefix = /x\n[limit b]\nrate = 1/m\n"
        ),
        "b",
    )
    .unwrap();
    let changes: Vec<String> = diff(&old, &new).iter().map(Change::to_string).collect();
    assert_eq!(
        changes,
        [
            "limit a: rate 1/s -> 2/s",
            "limit a: path_prefix (unset) -> /x",
            "limit b: added",
        ]
    );
}

#[test]
fn budgets_parse_with_defaults_and_round_trip() {
    let text = format!(
        "{BASE}[budget per-key]\ntokens_per_minute = 60000\n\
         [budget tenant]\ntokens_per_minute = 1000\nburst = 5000\nkey = header:X-Tenant\n\
         per_model = false\nmodels = llama-3-8b, gpt-4o\nroutes = chat\nmax_keys = 10\n\
         default_max_tokens = 512\n"
    );
    let c = parse(&text, "t.ini").unwrap();
    let b = c.budget("per-key").unwrap();
    assert_eq!((b.tokens_per_minute, b.burst), (60_000, 60_000));
    assert_eq!(b.key, LimitKey::ApiKey);
    assert!(b.per_model && b.models.is_empty() && b.routes.is_empty());
    assert_eq!(
        (b.max_keys, b.default_max_tokens),
        (DEFAULT_LIMIT_MAX_KEYS, 256)
    );
    let t = c.budget("tenant").unwrap();
    assert_eq!((t.tokens_per_minute, t.burst), (1000, 5000));
    assert_eq!(t.key, LimitKey::Header("x-tenant".into()));
    assert!(!t.per_model);
    assert_eq!(t.models, ["llama-3-8b", "gpt-4o"]);
    assert_eq!(t.routes, ["chat"]);
    assert_eq!((t.max_keys, t.default_max_tokens), (10, 512));
    assert_eq!(parse(&c.to_ini(), "again.ini"), Ok(c.clone()));
    assert!(
        c.summary()
            .contains("tenant: 1000 tokens/m per header:x-tenant, burst 5000 for llama-3-8b, gpt-4o on routes chat"),
        "{}",
        c.summary()
    );
}

#[test]
fn budget_errors_name_line_and_key() {
    let text = format!(
        "{BASE}[budget a]\nkey = path\nburst = 0\nper_model = maybe\nmax_keys = 0\n\
         default_max_tokens = 0\nroutes = chta\n[budget a]\ntokens_per_minute = 1\n"
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
            (6, Some("tokens_per_minute")),
            (7, Some("key")),
            (8, Some("burst")),
            (9, Some("per_model")),
            (10, Some("max_keys")),
            (11, Some("default_max_tokens")),
            (13, None),
        ],
        "{errors}"
    );
    let text = format!("{BASE}[budget a]\ntokens_per_minute = 10\nroutes = chta\n");
    let errors = parse(&text, "t.ini").unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(
        (errors.0[0].line, errors.0[0].key.as_deref()),
        (8, Some("routes"))
    );
    assert!(errors.to_string().contains("did you mean"), "{errors}");
}

#[test]
fn budget_changes_are_diffed() {
    let old = parse(&format!("{BASE}[budget a]\ntokens_per_minute = 10\n"), "a").unwrap();
    let new = parse(
        &format!("{BASE}[budget a]\ntokens_per_minute = 20\nburst = 10\n[budget b]\ntokens_per_minute = 1\n"),
        "b",
    )
    .unwrap();
    let changes: Vec<String> = diff(&old, &new).iter().map(Change::to_string).collect();
    assert_eq!(
        changes,
        ["budget a: tokens_per_minute 10 -> 20", "budget b: added"]
    );
}
