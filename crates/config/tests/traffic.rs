//! The traffic-shaping keys: `[plugin NAME]`, a route's `plugins`, `mirror` and `cache*`, and
//! the `[server]` bounds behind them; read, checked against the whole file, and rendered back.

use std::time::Duration;

const BASE: &str =
    "[backend a]\naddress = 127.0.0.1:9001\n[route shadow]\nhost = shadow.internal\nbackends = a\n";

fn parse(extra: &str) -> Result<switchyard_config::Config, switchyard_config::ConfigErrors> {
    switchyard_config::parse(&format!("{BASE}{extra}"), "t.ini")
}

fn errors(extra: &str) -> String {
    parse(extra).unwrap_err().to_string()
}

#[test]
fn everything_set_reads_and_round_trips() {
    let text = "[server]\ncache_max_bytes = 8MiB\nmirror_max_body = 64KiB\nmirror_max_in_flight = 10\n\
        [plugin auth]\npath = /opt/sy/libapi_key.so\nkeys = k1, k2\nheader = x-key\n\
        [plugin count]\npath = ./libmodel_count.so\n\
        [route main]\nbackends = a\nplugins = auth, count\nmirror = shadow, 12.5%\n\
        cache = on\ncache_ttl = 30s\ncache_max_ttl = 1h\ncache_max_object = 2MiB\ncache_post = on\ncache_streams = on\n";
    let c = parse(text).unwrap();
    assert_eq!(c.server.traffic.cache_max_bytes, 8 << 20);
    assert_eq!(c.server.traffic.mirror_max_body, 64 << 10);
    assert_eq!(c.server.traffic.mirror_max_in_flight, 10);
    let auth = c.plugin("auth").unwrap();
    assert_eq!(auth.path, "/opt/sy/libapi_key.so");
    assert_eq!(
        auth.settings,
        [
            ("keys".to_string(), "k1, k2".to_string()),
            ("header".into(), "x-key".into())
        ]
    );
    let main = &c.routes[1].traffic;
    assert_eq!(main.plugins, ["auth", "count"]);
    let m = main.mirror.as_ref().unwrap();
    assert_eq!((m.route.as_str(), m.percent()), ("shadow", 12.5));
    let cache = main.cache.as_ref().unwrap();
    assert_eq!(cache.ttl, Some(Duration::from_secs(30)));
    assert_eq!(cache.max_ttl, Duration::from_secs(3600));
    assert_eq!(cache.max_object, 2 << 20);
    assert!(cache.post && cache.streams);
    // Rendered and parsed again: the same config.
    let again = switchyard_config::parse(&c.to_ini(), "again.ini").unwrap();
    assert_eq!(again, c);
}

#[test]
fn defaults_are_off() {
    let c = parse("").unwrap();
    assert!(c.plugins.is_empty());
    assert_eq!(c.routes[0].traffic, Default::default());
    assert_eq!(c.server.traffic, Default::default());
}

#[test]
fn unknown_names_are_refused_with_what_exists() {
    let e = errors("[plugin auth]\npath = /x.so\n[route main]\nbackends = a\nplugins = auht\n");
    assert!(
        e.contains("no [plugin auht] section (did you mean `auth`?); plugins defined: auth"),
        "{e}"
    );
    let e = errors("[route main]\nbackends = a\nmirror = shadw, 5\n");
    assert!(e.contains("no [route shadw] section"), "{e}");
    let e = errors("[route main]\nbackends = a\nmirror = main, 5\n");
    assert!(e.contains("cannot mirror to itself"), "{e}");
}

#[test]
fn bad_values_are_refused() {
    for (extra, says) in [
        ("[plugin p]\nkeys = x\n", "missing required key `path`"),
        ("[plugin p]\npath = /a.so\npath = /b.so\n", "duplicate"),
        (
            "[route main]\nbackends = a\nmirror = shadow, 0%\n",
            "between 0.01 and 100",
        ),
        (
            "[route main]\nbackends = a\nmirror = shadow\n",
            "ROUTE, PERCENT",
        ),
        (
            "[route main]\nbackends = a\ncache_ttl = 5s\n",
            "applies only with `cache = on`",
        ),
        (
            "[route main]\nbackends = a\ncache = maybe\n",
            "expected on or off",
        ),
        (
            "[route main]\nbackends = a\ncache = on\ncache_max_object = 0\n",
            "greater than 0",
        ),
        (
            "[route main]\nbackends = a\nplugins = p, p\n",
            "listed twice",
        ),
        (
            "[server]\nmirror_max_in_flight = 0\n",
            "between 1 and 1000000",
        ),
    ] {
        let e = errors(extra);
        assert!(
            e.to_lowercase().contains(&says.to_lowercase()),
            "{extra}: {e}"
        );
    }
}

#[test]
fn plugin_changes_show_in_the_diff_without_their_settings() {
    let old = parse("[plugin p]\npath = /a.so\nkeys = secret1\n").unwrap();
    let new =
        parse("[plugin p]\npath = /a.so\nkeys = secret2\n[plugin q]\npath = /q.so\n").unwrap();
    let changes: Vec<String> = switchyard_config::diff(&old, &new)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changes,
        ["plugin p: path or settings changed", "plugin q: added"]
    );
}
