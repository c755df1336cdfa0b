//! A full example config parsed to the exact expected struct; defaults; rendering; summary.

use std::time::Duration;

use switchyard_config::{
    parse, Address, BackendConfig, Config, HashKey, RouteConfig, ServerConfig,
};

const EXAMPLE: &str = "\
; switchyard example
[server]
listen = 0.0.0.0:8080, [::1]:8081   ; two listeners
threads = 8
admin_listen = 127.0.0.1:9901
drain_timeout = 45s
client_header_timeout = 5s
client_keepalive_timeout = 2m
max_header_bytes = 32k
max_headers = 200
upstream_connect_timeout = 1500ms
upstream_response_timeout = 10m
upstream_keepalive_timeout = 90
upstream_keepalive = 64
fail_threshold = 5
fail_timeout = 30s
fail_timeout_max = 2m
max_ejected_percent = 30%
max_registered_backends = 16
websocket_max_frame = 4m
admin_token_file = /etc/switchyard/admin.token
audit_log = /var/log/switchyard/audit.log
audit_max_bytes = 64m
audit_sample = 10%

# GPU servers
[backend llama-a]
address = 10.0.0.1:8000
weight = 2

[backend llama-b]
address = 10.0.0.2:8000

[backend embed]
address = [fd00::10]:8001

[backend vllm]
address = vllm.internal:8000

[route chat]
host = API.example.com, *.example.com
path_prefix = /v1/chat/
backends = llama-a, llama-b
balancer = least_conn
discovery = on
versions = llama@v1 90, llama@v2 10

[route embeddings]
host = api.example.com
path_prefix = /v1/embeddings
backends = embed
websocket_max_frame = 0

[route default]
backends = llama-a, llama-b, vllm
balancer = least_conn_strict
";

fn backend(name: &str, host: &str, port: u16, weight: u32) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        address: Address {
            host: host.into(),
            port,
        },
        weight,
        metrics: None,
        models: Vec::new(),
        health: None,
        protocol: Default::default(),
        tls: None,
    }
}

fn route(name: &str, hosts: &[&str], prefix: &str, backends: &[&str], bal: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        path_prefix: prefix.into(),
        backends: backends.iter().map(|b| b.to_string()).collect(),
        balancer: bal.into(),
        hash_key: HashKey::default(),
        explain: false,
        max_websockets: 10_000,
        websocket_max_frame: None,
        rewrite: Default::default(),
        traffic: Default::default(),
        discovery: false,
        versions: Vec::new(),
    }
}

fn expected() -> Config {
    Config {
        server: ServerConfig {
            listen: vec![
                "0.0.0.0:8080".parse().unwrap(),
                "[::1]:8081".parse().unwrap(),
            ],
            threads: 8,
            admin_listen: Some("127.0.0.1:9901".parse().unwrap()),
            drain_timeout: Duration::from_secs(45),
            client_header_timeout: Duration::from_secs(5),
            client_keepalive_timeout: Duration::from_secs(120),
            max_header_bytes: 32 * 1024,
            max_headers: 200,
            trusted_proxies: Vec::new(),
            proxy_protocol: Default::default(),
            proxy_protocol_timeout: Duration::from_secs(5),
            upstream_connect_timeout: Duration::from_millis(1500),
            upstream_response_timeout: Duration::from_secs(600),
            upstream_keepalive_timeout: Duration::from_secs(90),
            upstream_keepalive: 64,
            fail_threshold: 5,
            fail_timeout: Duration::from_secs(30),
            fail_timeout_max: Duration::from_secs(120),
            max_ejected_percent: 30,
            max_registered_backends: 16,
            metrics_interval: Duration::from_secs(1),
            metrics_timeout: Duration::from_millis(500),
            metrics_max_age: Duration::from_secs(5),
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(1),
            health_rise: 2,
            health_fall: 3,
            health_jitter: 10,
            retries: 1,
            retry_budget: 20,
            config_history: 10,
            h2: Default::default(),
            websocket_max_frame: 4 << 20,
            accept: Default::default(),
            observe: Default::default(),
            traffic: Default::default(),
            admin_token_file: Some("/etc/switchyard/admin.token".into()),
            admin_max_failures: 5,
            admin_block_time: Duration::from_secs(60),
            admin_sessions: Default::default(),
            audit: switchyard_config::AuditSettings {
                log: Some("/var/log/switchyard/audit.log".into()),
                max_bytes: 64 << 20,
                sample: 10,
                ..Default::default()
            },
        },
        backends: vec![
            backend("llama-a", "10.0.0.1", 8000, 2),
            backend("llama-b", "10.0.0.2", 8000, 1),
            backend("embed", "fd00::10", 8001, 1),
            backend("vllm", "vllm.internal", 8000, 1),
        ],
        routes: vec![
            RouteConfig {
                discovery: true,
                versions: switchyard_config::versions::parse_versions("llama@v1 90, llama@v2 10")
                    .unwrap(),
                ..route(
                    "chat",
                    &["api.example.com", "*.example.com"],
                    "/v1/chat/",
                    &["llama-a", "llama-b"],
                    "least_conn",
                )
            },
            RouteConfig {
                websocket_max_frame: Some(0),
                rewrite: Default::default(),
                traffic: Default::default(),
                ..route(
                    "embeddings",
                    &["api.example.com"],
                    "/v1/embeddings",
                    &["embed"],
                    "round_robin",
                )
            },
            route(
                "default",
                &[],
                "/",
                &["llama-a", "llama-b", "vllm"],
                "least_conn_strict",
            ),
        ],
        l4: Vec::new(),
        listeners: Vec::new(),
        limits: Vec::new(),
        acls: Vec::new(),
        budgets: Vec::new(),
        alerts: Vec::new(),
        plugins: Vec::new(),
    }
}

#[test]
fn full_example_parses_to_the_exact_struct() {
    assert_eq!(parse(EXAMPLE, "example.ini"), Ok(expected()));
}

#[test]
fn crlf_and_bom_parse_the_same() {
    let crlf = format!("\u{feff}{}", EXAMPLE.replace('\n', "\r\n"));
    assert_eq!(parse(&crlf, "example.ini"), Ok(expected()));
}

#[test]
fn example_round_trips_through_to_ini() {
    let config = expected();
    let text = config.to_ini();
    assert_eq!(parse(&text, "rendered.ini"), Ok(config));
    assert!(text.starts_with("[server]\nlisten = 0.0.0.0:8080, [::1]:8081\n"));
    assert!(text.contains("\nmax_header_bytes = 32k\n"));
    assert!(text.contains("\nupstream_connect_timeout = 1500ms\n"));
    assert!(text.contains("\nupstream_response_timeout = 10m\n"));
    assert!(text.contains("\nupstream_keepalive_timeout = 90s\n"));
    assert!(text.contains("\n[backend embed]\naddress = [fd00::10]:8001\nweight = 1\n"));
    // A route matching any host has no `host` line.
    assert!(text.contains("\n[route default]\npath_prefix = /\n"));
}

#[test]
fn defaults() {
    let d = ServerConfig::default();
    assert_eq!(d.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(d.threads, 0);
    assert_eq!(d.admin_listen, Some("127.0.0.1:9901".parse().unwrap()));
    assert_eq!(d.drain_timeout, Duration::from_secs(30));
    assert_eq!(d.client_header_timeout, Duration::from_secs(10));
    assert_eq!(d.client_keepalive_timeout, Duration::from_secs(60));
    assert_eq!(d.max_header_bytes, 16384);
    assert_eq!(d.max_headers, 100);
    assert_eq!(d.upstream_connect_timeout, Duration::from_secs(5));
    assert_eq!(d.upstream_response_timeout, Duration::from_secs(60));
    assert_eq!(d.upstream_keepalive_timeout, Duration::from_secs(60));
    assert_eq!(d.upstream_keepalive, 1024);
    assert_eq!(d.fail_threshold, 3);
    assert_eq!(d.fail_timeout, Duration::from_secs(10));
    assert_eq!(d.metrics_interval, Duration::from_secs(1));
    assert_eq!(d.metrics_timeout, Duration::from_millis(500));
    assert_eq!(d.metrics_max_age, Duration::from_secs(5));
    assert_eq!(d.health_interval, Duration::from_secs(2));
    assert_eq!(d.health_timeout, Duration::from_secs(1));
    assert_eq!((d.health_rise, d.health_fall, d.health_jitter), (2, 3, 10));
    assert_eq!(d.admin_token_file, None);
    assert_eq!(d.admin_max_failures, 5);
    assert_eq!(d.admin_block_time, Duration::from_secs(60));
    assert_eq!(d.audit.log, None);
    assert_eq!(d.audit.max_bytes, 100 << 20);
    assert_eq!(d.audit.max_age, Duration::from_secs(24 * 3600));
    assert_eq!(
        (d.audit.keep, d.audit.sample, d.audit.queue),
        (5, 100, 32768)
    );

    let minimal = "[backend a]\naddress = h:1\n[route r]\nbackends = a\n";
    let config = parse(minimal, "m.ini").unwrap();
    assert_eq!(config.server, d);
    assert_eq!(config.backends, vec![backend("a", "h", 1, 1)]);
    assert_eq!(
        config.routes,
        vec![route("r", &[], "/", &["a"], "round_robin")]
    );
    // An empty [server] is the same as none.
    assert_eq!(parse(&format!("[server]\n{minimal}"), "m.ini"), Ok(config));
}

#[test]
fn special_values() {
    let text = "[server]\nadmin_listen = off\nthreads = 1024\ndrain_timeout = 0\n\
                listen = 127.0.0.1:0\nfail_threshold = 0\nupstream_keepalive = 0\n\
                [backend a]\naddress = h:1\n[route r]\nbackends = a\n";
    let s = parse(text, "f").unwrap().server;
    assert_eq!(s.admin_listen, None);
    assert_eq!(s.threads, 1024);
    assert_eq!(s.drain_timeout, Duration::ZERO);
    assert_eq!(s.fail_threshold, 0);
    assert_eq!(s.upstream_keepalive, 0);
    // Port 0 (any free port) never collides with the admin port.
    let text = "[server]\nlisten = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n\
                [backend a]\naddress = h:1\n[route r]\nbackends = a\n";
    assert!(parse(text, "f").is_ok());
}

#[test]
fn lookups() {
    let config = expected();
    assert_eq!(config.backend("embed").map(|b| b.address.port), Some(8001));
    assert!(config.backend("nope").is_none());
    assert_eq!(
        config.route("chat").map(|r| r.balancer.as_str()),
        Some("least_conn")
    );
    assert!(config.route("nope").is_none());
}

#[test]
fn summary_lists_listeners_backends_and_routes() {
    let summary = expected().summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines,
        vec![
            "listen: 0.0.0.0:8080, [::1]:8081",
            "threads: 8",
            "admin: 127.0.0.1:9901",
            "4 backends:",
            "  llama-a 10.0.0.1:8000 (weight 2)",
            "  llama-b 10.0.0.2:8000 (weight 1)",
            "  embed [fd00::10]:8001 (weight 1)",
            "  vllm vllm.internal:8000 (weight 1)",
            "3 routes:",
            "  chat: api.example.com, *.example.com /v1/chat/ -> llama-a, llama-b via least_conn",
            "  embeddings: api.example.com /v1/embeddings -> embed via round_robin",
            "  default: any host / -> llama-a, llama-b, vllm via least_conn_strict",
        ]
    );
    let minimal = parse("[backend a]\naddress = h:1\n[route r]\nbackends = a\n", "m").unwrap();
    let summary = minimal.summary();
    assert!(summary.contains("threads: one per core"));
    assert!(summary.contains("1 backend:"));
    assert!(summary.contains("1 route:"));
    assert!(!summary.ends_with('\n'));
}

const DOCS: &str = include_str!("../../../docs/config.md");

/// The ```ini blocks of the reference, each with the `## ` heading it appears under.
fn doc_blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in DOCS.lines() {
        match (&mut current, line) {
            (None, l) if l.starts_with("## ") => heading = l.to_string(),
            (None, "```ini") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push((heading.clone(), std::mem::take(block)));
                current = None;
            }
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_docs_complete_example_is_valid() {
    let (heading, example) = &doc_blocks()[0];
    assert_eq!(heading, "## Complete example");
    let config = parse(example, "config.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.backends.len(), 7);
    assert_eq!(config.routes.len(), 6);
    let chat = &config.route("chat").unwrap().traffic;
    assert_eq!(chat.plugins, ["auth"]);
    assert_eq!(chat.mirror.as_ref().unwrap().route, "chat-next");
    let embeddings = config.route("embeddings").unwrap();
    assert!(embeddings.traffic.cache.as_ref().is_some_and(|c| c.post));
    assert_eq!(config.plugin("auth").unwrap().settings.len(), 1);
    assert_eq!(config.server.traffic.cache_max_bytes, 256 << 20);
    let realtime = config.route("realtime").unwrap();
    assert_eq!(realtime.websocket_max_frame(&config.server), 4 << 20);
    let triton = config.backend("triton").unwrap();
    assert!(triton.protocol == switchyard_config::BackendProtocol::H2c && triton.tls.is_some());
    assert_eq!(config.server.accept.max_connections, 9000);
    assert!(config.server.audit.log.is_some());
    assert_eq!((config.limits.len(), config.acls.len()), (1, 1));
    assert_eq!(config.budget("tokens").unwrap().burst, 200_000);
    assert_eq!(config.l4.len(), 2);
    assert_eq!(config.l4[1].protocol, switchyard_config::L4Protocol::Udp);
    let public = config.listener("public").unwrap();
    assert!(public.protocols.tls && public.acme_challenge_dir.is_some());
    let internal = config.listener("internal").unwrap();
    assert_eq!(
        internal.proxy_protocol,
        switchyard_config::ProxyProtocol::V2
    );
    assert_eq!(config.server.trusted_proxies.len(), 1);
    assert!(config.server.observe.alert_webhook.is_some());
    assert_eq!(config.alerts.len(), 1);
    assert_eq!(config.server.config_history, 10);
    let chat = config.route("chat").unwrap();
    assert!(chat.discovery && chat.versions.len() == 1 && chat.balancer == "prefix_cache");
}

#[test]
fn every_key_example_in_the_docs_is_valid() {
    let mut checked = 0;
    for (heading, block) in doc_blocks().into_iter().skip(1) {
        for line in block.lines() {
            let key = line.split('=').next().unwrap_or("").trim();
            let text = match heading.as_str() {
                // The PROXY protocol header is read only from trusted peers.
                "## `[server]`" if key == "proxy_protocol" => format!(
                    "[server]\ntrusted_proxies = 10.0.0.0/8\n{line}\n[route r]\nbackends = b\n"
                ),
                "## `[server]`" => format!("[server]\n{line}\n[route r]\nbackends = b\n"),
                "## `[backend NAME]`" if key == "address" => {
                    format!("[backend b]\n{line}\n[route r]\nbackends = b\n")
                }
                // The progress check reads the engine's metrics, so it needs `metrics`.
                "## `[backend NAME]`" if key == "progress_timeout" => format!(
                    "[backend b]\naddress = h:1\nmetrics = /metrics\n{line}\n\
                     [route r]\nbackends = b\n"
                ),
                // TLS options apply with `tls = true`.
                "## `[backend NAME]`" if key.starts_with("tls_") => format!(
                    "[backend b]\naddress = h:1\ntls = true\n{line}\n[route r]\nbackends = b\n"
                ),
                "## `[backend NAME]`" => {
                    format!("[backend b]\naddress = h:1\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[route NAME]`" if key == "backends" => {
                    let mut text = format!("[route r]\n{line}\n");
                    for name in line["backends = ".len()..].split(", ") {
                        text.push_str(&format!("[backend {name}]\naddress = h:1\n"));
                    }
                    text
                }
                // Examples of several sections: each key line is checked on its own.
                "## `[route NAME]`" | "## `[plugin NAME]`"
                    if line.starts_with('[') || line.trim().is_empty() =>
                {
                    continue
                }
                "## `[route NAME]`" | "## `[plugin NAME]`" if key == "plugins" => {
                    let mut text = format!("[route r]\nbackends = b\n{line}\n");
                    for name in line["plugins = ".len()..].split(", ") {
                        text.push_str(&format!("[plugin {name}]\npath = /x.so\n"));
                    }
                    text
                }
                "## `[route NAME]`" if key == "mirror" => {
                    let target = line["mirror = ".len()..].split(',').next().unwrap();
                    format!(
                        "[route r]\nbackends = b\n{line}\n\
                         [route {target}]\nhost = shadow.internal\nbackends = b\n"
                    )
                }
                "## `[route NAME]`" if key.starts_with("cache_") => {
                    format!("[route r]\nbackends = b\ncache = on\n{line}\n")
                }
                "## `[route NAME]`" => {
                    format!("[route r]\nbackends = b\n{line}\n[backend b]\naddress = h:1\n")
                }
                "## `[plugin NAME]`" if key == "backends" => {
                    format!(
                        "[route r]\n{line}\n[backend {}]\naddress = h:1\n",
                        &line[11..]
                    )
                }
                "## `[plugin NAME]`" if key == "path" => {
                    format!("[plugin p]\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[plugin NAME]`" => {
                    format!("[plugin p]\npath = /x.so\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[l4 NAME]`" if key == "listen" => {
                    format!("[l4 t]\n{line}\nbackends = b\n[route r]\nbackends = b\n")
                }
                "## `[l4 NAME]`" if key == "backends" => {
                    let names: Vec<&str> = line["backends = ".len()..].split(", ").collect();
                    let mut text = format!(
                        "[l4 t]\nlisten = 127.0.0.1:7000\n{line}\n[route r]\nbackends = {}\n",
                        names[0]
                    );
                    for name in names {
                        text.push_str(&format!("[backend {name}]\naddress = h:1\n"));
                    }
                    text
                }
                // The UDP-only keys need `protocol = udp`.
                "## `[l4 NAME]`" if key == "max_sessions" || key == "max_datagram" => format!(
                    "[l4 t]\nlisten = 127.0.0.1:7000\nprotocol = udp\nbackends = b\n{line}\n\
                     [route r]\nbackends = b\n"
                ),
                "## `[l4 NAME]`" => format!(
                    "[server]\ntrusted_proxies = 10.0.0.0/8\n\
                     [l4 t]\nlisten = 127.0.0.1:7000\nbackends = b\n{}{line}\n\
                     [route r]\nbackends = b\n",
                    if key == "proxy_protocol_timeout" {
                        "proxy_protocol = v2\n"
                    } else {
                        ""
                    }
                ),
                "## `[listener NAME]`" => {
                    let mut text =
                        String::from("[server]\ntrusted_proxies = 10.0.0.0/8\n[listener p]\n");
                    if key == "proxy_protocol_timeout" {
                        text.push_str("proxy_protocol = v2\n");
                    }
                    if key != "listen" {
                        text.push_str("listen = 127.0.0.1:8443\n");
                    }
                    let tls =
                        key.starts_with("tls_") || (key == "protocols" && line.contains("tls"));
                    if tls {
                        for (k, v) in [
                            ("protocols", "tls"),
                            ("tls_certificate", "/c.pem"),
                            ("tls_key", "/k.pem"),
                        ] {
                            if k != key {
                                text.push_str(&format!("{k} = {v}\n"));
                            }
                        }
                    }
                    text.push_str(&format!(
                        "{line}\n[l4 ssh]\nlisten = 127.0.0.1:2222\nbackends = b\n\
                         [route r]\nbackends = b\n"
                    ));
                    text
                }
                "## `[limit NAME]`" if key == "rate" => {
                    format!("[limit l]\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[limit NAME]`" if key == "routes" => format!(
                    "[limit l]\nrate = 10/s\n{line}\n[route chat]\nbackends = b\n\
                     [route embeddings]\npath_prefix = /e/\nbackends = b\n"
                ),
                "## `[limit NAME]`" => {
                    format!("[limit l]\nrate = 10/s\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[budget NAME]`" if key == "tokens_per_minute" => {
                    format!("[budget k]\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[budget NAME]`" if key == "routes" => format!(
                    "[budget k]\ntokens_per_minute = 10\n{line}\n[route chat]\nbackends = b\n"
                ),
                "## `[budget NAME]`" => {
                    format!("[budget k]\ntokens_per_minute = 10\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[alert NAME]`" if line.starts_with('[') => continue,
                "## `[alert NAME]`" if key == "series" => {
                    format!("[alert a]\nabove = 1\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[alert NAME]`" if key == "above" || key == "below" => {
                    format!("[alert a]\nseries = error_rate\n{line}\n[route r]\nbackends = b\n")
                }
                "## `[alert NAME]`" => format!(
                    "[alert a]\nseries = error_rate\nabove = 1000000\n{line}\n\
                     [route r]\nbackends = b\n"
                ),
                "## `[acl NAME]`" if key == "l4" => format!(
                    "[acl a]\nrules = allow 10.0.0.0/8\n{line}\n\
                     [l4 redis]\nlisten = 127.0.0.1:6380\nbackends = b\n[route r]\nbackends = b\n"
                ),
                "## `[acl NAME]`" if key == "listeners" => format!(
                    "[acl a]\nrules = allow 10.0.0.0/8\n{line}\n\
                     [listener public]\nlisten = 127.0.0.1:8443\n[route r]\nbackends = b\n"
                ),
                "## `[acl NAME]`" if key == "routes" => format!(
                    "[acl a]\nrules = allow 10.0.0.0/8\n{line}\n[route chat]\nbackends = b\n\
                     [route admin]\npath_prefix = /admin/\nbackends = b\n"
                ),
                "## `[acl NAME]`" => format!(
                    "[acl a]\nroutes = r\n{}{line}\n[route r]\nbackends = b\n",
                    if key == "rules" {
                        ""
                    } else {
                        "rules = allow ::1\n"
                    }
                ),
                other => panic!("ini block under unexpected heading {other}"),
            };
            let text = if text.contains("[backend") {
                text
            } else {
                format!("{text}[backend b]\naddress = h:1\n")
            };
            let result = parse(&text, "config.md");
            assert!(result.is_ok(), "{line}: {result:?}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}
