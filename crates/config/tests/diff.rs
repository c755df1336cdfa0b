//! `diff`: each kind of change, and reordering is not a change.

use switchyard_config::{diff, parse, Change, Config};

const BASE: &str = "\
[server]
threads = 4

[backend a]
address = 10.0.0.1:8000

[backend b]
address = 10.0.0.2:8000
weight = 2

[route chat]
host = x.com, y.com
backends = a, b
";

fn config(text: &str) -> Config {
    parse(text, "d.ini").unwrap_or_else(|e| panic!("{e}"))
}

fn changes(old: &str, new: &str) -> Vec<String> {
    diff(&config(old), &config(new))
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn identical_configs_have_no_changes() {
    assert!(diff(&config(BASE), &config(BASE)).is_empty());
}

#[test]
fn reordering_is_not_a_change() {
    let reordered = "\
[route chat]
backends = b, a
host = y.com, x.com

[backend b]
weight = 2
address = 10.0.0.2:8000

[backend a]
address = 10.0.0.1:8000

[server]
threads = 4
";
    assert_eq!(diff(&config(BASE), &config(reordered)), vec![]);
}

#[test]
fn server_key_change() {
    let new = BASE.replace("threads = 4", "threads = 8\ndrain_timeout = 2m");
    let d = diff(&config(BASE), &config(&new));
    assert_eq!(
        d,
        vec![
            Change::ServerKey {
                key: "threads".into(),
                old: "4".into(),
                new: "8".into()
            },
            Change::ServerKey {
                key: "drain_timeout".into(),
                old: "30s".into(),
                new: "2m".into()
            },
        ]
    );
    assert_eq!(d[0].to_string(), "server: threads 4 -> 8");
    let new = BASE.replace("threads = 4", "threads = 4\nadmin_listen = off");
    assert_eq!(
        changes(BASE, &new),
        ["server: admin_listen 127.0.0.1:9901 -> off"]
    );
}

#[test]
fn backend_changed() {
    let new = BASE.replace("weight = 2", "weight = 3");
    let d = diff(&config(BASE), &config(&new));
    assert_eq!(
        d,
        vec![Change::BackendChanged {
            name: "b".into(),
            key: "weight".into(),
            old: "2".into(),
            new: "3".into()
        }]
    );
    assert_eq!(d[0].to_string(), "backend b: weight 2 -> 3");
    let new = BASE.replace("10.0.0.1:8000", "[::1]:9000");
    assert_eq!(
        changes(BASE, &new),
        ["backend a: address 10.0.0.1:8000 -> [::1]:9000"]
    );
}

#[test]
fn backend_added_and_removed() {
    let new = format!("{BASE}\n[backend c]\naddress = c.internal:1\n");
    let d = diff(&config(BASE), &config(&new));
    assert_eq!(d, vec![Change::BackendAdded("c".into())]);
    assert_eq!(d[0].to_string(), "backend c: added");
    let d = diff(&config(&new), &config(BASE));
    assert_eq!(d, vec![Change::BackendRemoved("c".into())]);
    assert_eq!(d[0].to_string(), "backend c: removed");
}

#[test]
fn route_changed() {
    let new = BASE.replace("backends = a, b", "backends = a\nbalancer = least_conn");
    let d = diff(&config(BASE), &config(&new));
    assert_eq!(
        d,
        vec![
            Change::RouteChanged {
                name: "chat".into(),
                key: "backends".into(),
                old: "a, b".into(),
                new: "a".into()
            },
            Change::RouteChanged {
                name: "chat".into(),
                key: "balancer".into(),
                old: "round_robin".into(),
                new: "least_conn".into()
            },
        ]
    );
    assert_eq!(d[0].to_string(), "route chat: backends a, b -> a");
    let new = BASE.replace("host = x.com, y.com\n", "");
    assert_eq!(
        changes(BASE, &new),
        ["route chat: host x.com, y.com -> (unset)"]
    );
}

#[test]
fn route_added_and_removed() {
    let new = format!("{BASE}\n[route other]\npath_prefix = /other\nbackends = a\n");
    let d = diff(&config(BASE), &config(&new));
    assert_eq!(d, vec![Change::RouteAdded("other".into())]);
    assert_eq!(d[0].to_string(), "route other: added");
    let d = diff(&config(&new), &config(BASE));
    assert_eq!(d, vec![Change::RouteRemoved("other".into())]);
    assert_eq!(d[0].to_string(), "route other: removed");
}

#[test]
fn renaming_is_a_removal_and_an_addition() {
    let new = BASE
        .replace("[backend a]", "[backend a2]")
        .replace("backends = a, b", "backends = a2, b");
    assert_eq!(
        changes(BASE, &new),
        [
            "backend a: removed",
            "backend a2: added",
            "route chat: backends a, b -> a2, b"
        ]
    );
}
