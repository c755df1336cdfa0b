//! Property tests: valid configs round-trip through `to_ini`/`parse`, and no input panics.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use switchyard_config::{
    parse, AclAction, AclConfig, AclRule, Address, BackendConfig, BackendProtocol, BudgetConfig,
    Cidr, Config, HashKey, HealthCheck, L4Config, L4Protocol, LimitConfig, LimitKey,
    ListenerConfig, MetricsEndpoint, Protocols, ProxyProtocol, Rate, RouteConfig, ServerConfig,
    SniCertificate, MAX_BUDGET_MAX_TOKENS, MAX_BUDGET_TOKENS, MAX_LIMIT_BURST, MAX_LIMIT_KEYS,
};

const MAX_MS: u64 = 24 * 60 * 60 * 1000;

/// A positive duration of at most 24h, often a whole number of larger units.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1..=MAX_MS).prop_map(Duration::from_millis),
        (1..=86_400u64).prop_map(Duration::from_secs),
        (1..=1440u64).prop_map(|m| Duration::from_secs(m * 60)),
        (1..=24u64).prop_map(|h| Duration::from_secs(h * 3600)),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

fn server() -> impl Strategy<Value = ServerConfig> {
    let listen = prop::collection::vec((ip(), 0..=30_000u16), 1..4).prop_map(|addrs| {
        let mut out: Vec<SocketAddr> = Vec::new();
        for (ip, port) in addrs {
            let a = SocketAddr::new(ip, port);
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    });
    // Admin ports never overlap listen ports, so they cannot collide.
    let admin =
        prop::option::of((ip(), 30_001..=65_535u16).prop_map(|(i, p)| SocketAddr::new(i, p)));
    (
        (
            listen,
            0..=1024usize,
            admin,
            prop_oneof![Just(Duration::ZERO), duration()],
        ),
        (duration(), duration(), 8192..=(1usize << 20), 1..=1000usize),
        (duration(), duration(), duration(), 0..=65_536usize),
        (any::<u32>(), duration(), 0..=100u32, 0..=4096usize),
        (
            duration().prop_map(|d| d.max(Duration::from_millis(50))),
            duration(),
            duration(),
        ),
        (duration(), duration(), 1..=100u32, 1..=100u32, 0..=50u32),
        (
            1..=10_000u32,
            65_535..=i32::MAX as u32,
            65_535..=i32::MAX as u32,
            1..=10_000u32,
        ),
        (
            prop::option::of("/[a-z]{1,8}/[a-z.]{1,8}"),
            prop::option::of("/[a-z]{1,8}/[a-z.]{1,8}"),
            1024..=(1usize << 40),
            prop_oneof![Just(Duration::ZERO), duration()],
            0..=1000u32,
            0..=100u32,
            1..=(1usize << 20),
            prop_oneof![Just(0usize), 1..=(1usize << 40)],
        ),
    )
        .prop_map(|(a, b, c, d, e, h, w, s)| ServerConfig {
            listen: a.0.clone(),
            threads: a.1,
            admin_listen: a.2,
            drain_timeout: a.3,
            client_header_timeout: b.0,
            client_keepalive_timeout: b.1,
            max_header_bytes: b.2,
            max_headers: b.3,
            trusted_proxies: if a.1 % 2 == 0 {
                Vec::new()
            } else {
                a.0.iter()
                    .map(|l| Cidr {
                        addr: l.ip(),
                        prefix: if l.is_ipv4() { 32 } else { 128 },
                    })
                    .collect()
            },
            // The header is read only from trusted peers: on only where there are some.
            proxy_protocol: if a.1 % 2 == 0 {
                ProxyProtocol::Off
            } else {
                proxy_mode(w.3)
            },
            proxy_protocol_timeout: Duration::from_millis(1 + u64::from(w.0) % 300_000),
            upstream_connect_timeout: c.0,
            upstream_response_timeout: c.1,
            upstream_keepalive_timeout: c.2,
            upstream_keepalive: c.3,
            fail_threshold: d.0,
            fail_timeout: d.1,
            fail_timeout_max: d.1,
            max_ejected_percent: d.2,
            max_registered_backends: d.3,
            metrics_interval: e.0,
            metrics_timeout: e.1,
            metrics_max_age: e.2,
            health_interval: h.0,
            health_timeout: h.1,
            health_rise: h.2,
            health_fall: h.3,
            health_jitter: h.4,
            retries: 1,
            retry_budget: 20,
            config_history: 1 + (w.0 as usize % 1000),
            h2: switchyard_config::H2Settings {
                max_concurrent_streams: w.0,
                stream_window: w.1,
                connection_window: w.2,
                max_reset_streams: w.3,
            },
            websocket_max_frame: s.7,
            accept: switchyard_config::AcceptSettings {
                max_connections: w.0 as usize,
                max_connections_per_ip: w.3,
                max_connection_rate_per_ip: w.3 % 1001,
                ban_after: w.3 % 7,
                ban_time: Duration::from_secs(u64::from(w.3 % 600) + 1),
                max_tracked_ips: w.0 as usize + 16,
            },
            observe: Default::default(),
            traffic: Default::default(),
            admin_token_file: s.0.map(Into::into),
            admin_max_failures: 1 + s.4 % 1000,
            admin_block_time: Duration::from_secs(1 + u64::from(s.5) * 60),
            admin_sessions: switchyard_config::AdminSessions {
                ttl: Duration::from_secs(60 + u64::from(s.5) * 60),
                max: 1 + s.2 % 10_000,
            },
            audit: switchyard_config::AuditSettings {
                log: s.1.map(Into::into),
                max_bytes: s.2,
                max_age: s.3,
                keep: s.4,
                sample: s.5,
                queue: s.6,
            },
        })
}

/// A `proxy_protocol` mode picked by `n`.
fn proxy_mode(n: u32) -> ProxyProtocol {
    [
        ProxyProtocol::Off,
        ProxyProtocol::V1,
        ProxyProtocol::V2,
        ProxyProtocol::Any,
    ][n as usize % 4]
}

/// `proxy_protocol` and `proxy_protocol_timeout` of a port (the timeout only with a mode on).
fn proxy_keys() -> impl Strategy<Value = (ProxyProtocol, Option<Duration>)> {
    (0..4u32, prop::option::of(1..=300_000u64)).prop_map(|(n, ms)| {
        let mode = proxy_mode(n);
        (mode, ms.filter(|_| mode.is_on()).map(Duration::from_millis))
    })
}

/// A DNS name that does not look like an IPv4 literal.
fn dns_name(upper: bool) -> impl Strategy<Value = String> {
    let re = if upper {
        "[A-Za-z0-9]([A-Za-z0-9-]{0,10})(\\.[A-Za-z0-9-]{1,10}){0,3}"
    } else {
        "[a-z0-9]([a-z0-9-]{0,10})(\\.[a-z0-9-]{1,10}){0,3}"
    };
    re.prop_filter("looks like IPv4", |s: &String| {
        !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    })
}

fn address() -> impl Strategy<Value = Address> {
    let host = prop_oneof![
        any::<u32>().prop_map(|v| Ipv4Addr::from(v).to_string()),
        any::<u128>().prop_map(|v| Ipv6Addr::from(v).to_string()),
        dns_name(true),
    ];
    (host, 1..=65_535u16).prop_map(|(host, port)| Address { host, port })
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,12}"
}

/// Text that an INI value can hold inside quotes: no control characters, and no `;` or `#`
/// after whitespace (an inline comment).
fn quotable(min: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => "[ -~]",
            1 => Just("\u{e9}".to_string()),
            1 => Just("\u{a0}".to_string()),
            1 => Just("\\".to_string()),
            1 => Just("\"".to_string()),
            1 => Just("'".to_string()),
        ],
        min..=12,
    )
    .prop_map(|parts| parts.concat())
    .prop_filter("inline comment", |s| {
        let mut prev_ws = false;
        s.chars().all(|c| {
            let ok = !(prev_ws && (c == ';' || c == '#'));
            prev_ws = c.is_whitespace();
            ok
        })
    })
}

fn health_check() -> impl Strategy<Value = HealthCheck> {
    prop_oneof![
        Just(HealthCheck::Tcp),
        (
            select(vec!["GET", "HEAD", "POST"]),
            "/[!-~]{0,12}",
            100..=599u16,
            prop::option::of(quotable(1)),
        )
            .prop_map(|(method, path, status, body)| HealthCheck::Http {
                method: method.to_string(),
                path,
                status,
                body,
            }),
        any::<bool>().prop_map(|completion| HealthCheck::Ai { completion }),
        (quotable(1), prop::collection::vec(quotable(0), 0..4))
            .prop_map(|(command, args)| HealthCheck::Script { command, args }),
    ]
}

fn backends() -> impl Strategy<Value = Vec<BackendConfig>> {
    let metrics = prop_oneof![
        Just(None),
        Just(Some("/metrics".parse().unwrap())),
        Just(Some("http://10.0.0.9:9400/metrics".parse().unwrap())),
    ];
    let models = prop::sample::subsequence(
        vec![
            "llama-3-8b",
            "llama-3-8b@v2",
            "qwen/qwen2.5:7b",
            "m@2024-01",
        ],
        0..=3,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|m| m.parse().unwrap())
            .collect::<Vec<_>>()
    });
    let health = (
        prop::option::of(health_check()),
        prop::option::of(duration()),
        prop::bool::ANY,
    );
    prop::collection::btree_map(
        name(),
        (address(), 1..=10_000u32, metrics, models, health),
        1..5,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(
                |(name, (address, weight, metrics, models, (health, progress, h2c)))| {
                    BackendConfig {
                        name,
                        address,
                        weight,
                        metrics: metrics.map(|m: MetricsEndpoint| MetricsEndpoint {
                            progress_timeout: progress,
                            ..m
                        }),
                        health,
                        protocol: if h2c {
                            BackendProtocol::H2c
                        } else {
                            BackendProtocol::Http1
                        },
                        // TLS with and without its options, on some backends.
                        tls: match weight % 4 {
                            0 => None,
                            1 => Some(switchyard_config::BackendTls::default()),
                            _ => Some(switchyard_config::BackendTls {
                                ca: Some(format!("/etc/ca/{weight}.pem")),
                                server_name: Some("api.internal".into()),
                            }),
                        },
                        models,
                    }
                },
            )
            .collect()
    })
}

fn host_pattern() -> impl Strategy<Value = String> {
    (any::<bool>(), dns_name(false)).prop_map(|(wild, n)| if wild { format!("*.{n}") } else { n })
}

fn routes(backend_names: Vec<String>) -> impl Strategy<Value = Vec<RouteConfig>> {
    let balancers: Vec<&'static str> = switchyard_balance::names().collect();
    let n = backend_names.len();
    let route = (
        prop::collection::btree_set(host_pattern(), 0..3),
        "/[A-Za-z0-9/._~%!$&'()*+,;=:@-]{0,15}",
        subsequence(backend_names, 1..=n).prop_shuffle(),
        select(balancers),
        select(vec![
            HashKey::ClientIp,
            HashKey::Header("x-session-id".into()),
            HashKey::Cookie("SID".into()),
            HashKey::Json("metadata.session_id".into()),
        ]),
        select(vec![
            "",
            "llama@v1 90, llama@v2 10",
            "qwen@newest",
            "m@7b 1",
        ]),
        any::<bool>(),
        prop::option::of(prop_oneof![Just(0usize), 1..=(1usize << 32)]),
    );
    prop::collection::btree_map(name(), route, 1..5).prop_map(|m| {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (name, route) in m {
            let (hosts, path_prefix, backends, balancer, hash_key, versions, discovery, frame) =
                route;
            let hosts: Vec<String> = hosts.into_iter().rev().collect();
            let mut sorted = hosts.clone();
            sorted.sort();
            if seen.insert((sorted, path_prefix.clone())) {
                out.push(RouteConfig {
                    name,
                    hosts,
                    path_prefix,
                    backends,
                    balancer: balancer.to_string(),
                    explain: hash_key != HashKey::ClientIp,
                    max_websockets: if discovery { 0 } else { 10_000 },
                    websocket_max_frame: frame,
                    rewrite: Default::default(),
                    traffic: Default::default(),
                    hash_key,
                    discovery,
                    versions: if versions.is_empty() {
                        Vec::new()
                    } else {
                        switchyard_config::versions::parse_versions(versions).unwrap()
                    },
                });
            }
        }
        out
    })
}

/// `[l4 NAME]` sections over `backend_names`; `listen` ports may clash with `server`'s, such
/// entries are dropped in [`config`].
fn l4s(backend_names: Vec<String>) -> impl Strategy<Value = Vec<L4Config>> {
    let balancers: Vec<&'static str> = switchyard_balance::names().collect();
    let n = backend_names.len();
    let l4 = (
        prop_oneof![Just(0u16), any::<u16>()].prop_flat_map(|p| ip().prop_map(move |i| (i, p))),
        subsequence(backend_names, 1..=n).prop_shuffle(),
        select(balancers),
        duration(),
        prop::option::of(duration()),
        prop::option::of((1usize..=1_000_000, 512usize..=65_535)),
        proxy_keys(),
    );
    prop::collection::btree_map(name(), l4, 0..3).prop_map(|m| {
        m.into_iter()
            .map(
                |(
                    name,
                    ((ip, port), backends, balancer, idle_timeout, connect_timeout, udp, proxy),
                )| {
                    // `udp` carries the UDP-only keys; TCP keeps their defaults.
                    let protocol = match udp {
                        Some(_) => L4Protocol::Udp,
                        None => L4Protocol::Tcp,
                    };
                    let mut l = L4Config::new(&name, SocketAddr::new(ip, port), protocol, backends);
                    l.balancer = balancer.to_string();
                    l.idle_timeout = idle_timeout;
                    if let Some((max_sessions, max_datagram)) = udp {
                        l.max_sessions = max_sessions;
                        l.max_datagram = max_datagram;
                    } else {
                        l.connect_timeout = connect_timeout;
                        (l.proxy_protocol, l.proxy_protocol_timeout) = proxy;
                    }
                    l
                },
            )
            .collect()
    })
}

fn path() -> impl Strategy<Value = std::path::PathBuf> {
    "/?[a-z0-9_.-]{1,8}(/[a-z0-9_.-]{1,8}){0,2}".prop_map(std::path::PathBuf::from)
}

fn seconds(lo: u64, hi: u64) -> impl Strategy<Value = Duration> {
    (lo..=hi).prop_map(Duration::from_secs)
}

/// `[listener NAME]` sections; `fallback` picks one of `groups` (by index, when there are
/// any); their ports are 0, so they never collide.
fn listeners() -> impl Strategy<Value = Vec<(ListenerConfig, Option<usize>)>> {
    let protocols = (any::<bool>(), any::<bool>(), any::<bool>())
        .prop_filter("one protocol at least", |(a, b, c)| *a || *b || *c)
        .prop_map(|(http1, h2c, tls)| Protocols { http1, h2c, tls });
    let sni =
        (host_pattern(), path(), path()).prop_map(|(host, certificate, key)| SniCertificate {
            host,
            certificate,
            key,
        });
    let one = (
        prop::collection::btree_set(ip(), 1..3),
        protocols,
        prop::option::of(any::<usize>()),
        prop::option::of(seconds(1, 300)),
        (path(), path(), prop::collection::vec(sni, 0..3)),
        (seconds(1, 300), prop_oneof![Just(0u64), 1..=3600u64]),
        prop::option::of(path()),
        proxy_keys(),
    );
    prop::collection::btree_map(name(), one, 0..3).prop_map(|m| {
        m.into_iter()
            .map(
                |(name, (ips, protocols, fallback, sniff, tls, timing, acme, proxy))| {
                    let (cert, key, mut sni) = tls;
                    let mut seen = BTreeSet::new();
                    sni.retain(|s| seen.insert(s.host.clone()));
                    let on = protocols.tls;
                    let config = ListenerConfig {
                        name,
                        listen: ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                        protocols,
                        fallback: None,
                        sniff_timeout: sniff,
                        tls_certificate: on.then_some(cert),
                        tls_key: on.then_some(key),
                        tls_sni: if on { sni } else { Vec::new() },
                        tls_handshake_timeout: if on {
                            timing.0
                        } else {
                            switchyard_config::DEFAULT_TLS_HANDSHAKE_TIMEOUT
                        },
                        tls_reload_interval: if on {
                            Duration::from_secs(timing.1)
                        } else {
                            switchyard_config::DEFAULT_TLS_RELOAD_INTERVAL
                        },
                        acme_challenge_dir: acme.filter(|_| protocols.http1),
                        proxy_protocol: proxy.0,
                        proxy_protocol_timeout: proxy.1,
                    };
                    (config, fallback)
                },
            )
            .collect()
    })
}

/// `[limit NAME]` sections; `routes` picks some of the config's routes by index.
fn limits() -> impl Strategy<Value = Vec<(LimitConfig, Vec<usize>)>> {
    let key = prop_oneof![
        Just(LimitKey::Global),
        Just(LimitKey::ClientIp),
        Just(LimitKey::Path),
        Just(LimitKey::ApiKey),
        "[a-z][a-z0-9-]{0,8}".prop_map(LimitKey::Header),
    ];
    let rate = (1..=100_000u32, select(vec![1u64, 60, 3600])).prop_map(|(count, per)| Rate {
        count,
        per: Duration::from_secs(per),
    });
    let one = (
        key,
        rate,
        1..=MAX_LIMIT_BURST,
        prop::option::of("/[a-z0-9/]{0,8}"),
        prop::collection::vec(any::<usize>(), 0..3),
        1..=MAX_LIMIT_KEYS,
    );
    prop::collection::btree_map(name(), one, 0..3).prop_map(|m| {
        m.into_iter()
            .map(
                |(name, (key, rate, burst, path_prefix, routes, max_keys))| {
                    let config = LimitConfig {
                        burst,
                        path_prefix,
                        max_keys,
                        ..LimitConfig::new(&name, key, rate)
                    };
                    (config, routes)
                },
            )
            .collect()
    })
}

/// The `history_*` and `alert_*` keys: steps and windows consistent and bounded.
fn observe() -> impl Strategy<Value = switchyard_config::ObserveSettings> {
    let url = prop::option::of((dns_name(false), 1..=65535u16, "(/[a-z0-9?=&]{0,8}){1,3}"));
    (
        (10..=60_000u64, 1..=10u64, 1..=1000u64, 1..=400u64),
        url,
        (1..=60_000u64, 0..=10u32, any::<bool>()),
    )
        .prop_map(|((interval, k, n, m), url, (timeout, retries, defaults))| {
            let ms = Duration::from_millis;
            switchyard_config::ObserveSettings {
                history_interval: ms(interval),
                history_window: ms(interval * n),
                history_long_step: ms(interval * k),
                history_long_window: ms(interval * k * m),
                alert_webhook: url.map(|(host, port, path)| switchyard_config::WebhookUrl {
                    address: format!("{host}:{port}").parse().unwrap(),
                    path,
                }),
                alert_webhook_timeout: ms(timeout),
                alert_webhook_retries: retries,
                default_alerts: defaults,
            }
        })
}

/// `[alert NAME]` sections.
fn alerts() -> impl Strategy<Value = Vec<switchyard_config::AlertConfig>> {
    use switchyard_config::{AlertComparison, AlertConfig, AlertSeverity};
    let series = select(vec![
        "requests_per_second",
        "error_rate",
        "latency_p99_ms",
        "backends_down",
        "backend:*:up",
        "backend:*:kv_cache_usage",
        "backend:*:waiting",
    ]);
    let one = (
        series,
        any::<bool>(),
        (-1_000_000i64..=1_000_000, 0..=1_000u32),
        (0..=86_400_000u64, 0..=86_400_000u64),
        0..3usize,
    );
    prop::collection::btree_map(name(), one, 0..3).prop_map(|m| {
        m.into_iter()
            .map(|(name, (series, above, (t, gap), (f, rf), sev))| {
                let threshold = t as f64 / 1000.0;
                let gap = f64::from(gap) / 100.0;
                let (comparison, resolve) = if above {
                    (AlertComparison::Above, threshold - gap)
                } else {
                    (AlertComparison::Below, threshold + gap)
                };
                AlertConfig {
                    resolve,
                    for_: Duration::from_millis(f),
                    resolve_for: Duration::from_millis(rf),
                    severity: [
                        AlertSeverity::Info,
                        AlertSeverity::Warning,
                        AlertSeverity::Critical,
                    ][sev],
                    ..AlertConfig::new(&name, series, comparison, threshold)
                }
            })
            .collect()
    })
}

/// `[budget NAME]` sections; `routes` picks some of the config's routes by index.
fn budgets() -> impl Strategy<Value = Vec<(BudgetConfig, Vec<usize>)>> {
    let key = prop_oneof![
        Just(LimitKey::Global),
        Just(LimitKey::ClientIp),
        Just(LimitKey::ApiKey),
        "[a-z][a-z0-9-]{0,8}".prop_map(LimitKey::Header),
    ];
    let one = (
        (1..=MAX_BUDGET_TOKENS, 1..=MAX_BUDGET_TOKENS),
        key,
        any::<bool>(),
        subsequence(vec!["llama-3-8b", "llama-3-8b@v2", "gpt-4o"], 0..3),
        prop::collection::vec(any::<usize>(), 0..3),
        1..=MAX_LIMIT_KEYS,
        1..=MAX_BUDGET_MAX_TOKENS,
    );
    prop::collection::btree_map(name(), one, 0..3).prop_map(|m| {
        m.into_iter()
            .map(
                |(name, ((tpm, burst), key, per_model, models, routes, max_keys, max_tokens))| {
                    let config = BudgetConfig {
                        burst,
                        key,
                        per_model,
                        models: models.into_iter().map(String::from).collect(),
                        max_keys,
                        default_max_tokens: max_tokens,
                        ..BudgetConfig::new(&name, tpm)
                    };
                    (config, routes)
                },
            )
            .collect()
    })
}

/// `[acl NAME]` sections; `routes` picks some of the config's routes by index (at least one).
fn acls() -> impl Strategy<Value = Vec<(AclConfig, Vec<usize>)>> {
    let rule = (any::<bool>(), ip(), 0..=32u8).prop_map(|(allow, ip, bits)| {
        let prefix = if ip.is_ipv4() { bits } else { bits * 4 };
        // The network of `ip` with `prefix` bits, written as text and parsed back.
        let net: Cidr = format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })
            .parse()
            .unwrap();
        let masked = match net.addr {
            IpAddr::V4(a) => IpAddr::V4(
                (u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)).into(),
            ),
            IpAddr::V6(a) => IpAddr::V6(
                (u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0))
                    .into(),
            ),
        };
        AclRule {
            action: if allow {
                AclAction::Allow
            } else {
                AclAction::Deny
            },
            network: Cidr {
                addr: masked,
                prefix,
            },
        }
    });
    let one = (
        prop::collection::vec(rule, 1..4),
        any::<bool>(),
        prop::collection::vec(any::<usize>(), 1..3),
        subsequence(vec!["GET", "POST", "DELETE"], 0..3),
        prop::option::of("/[a-z0-9/]{0,8}"),
    );
    prop::collection::btree_map(name(), one, 0..3).prop_map(|m| {
        m.into_iter()
            .map(|(name, (rules, allow, routes, methods, path_prefix))| {
                let default = if allow {
                    AclAction::Allow
                } else {
                    AclAction::Deny
                };
                let header = path_prefix.as_ref().map(|_| "x-debug".to_string());
                let config = AclConfig {
                    methods: methods.into_iter().map(String::from).collect(),
                    path_prefix,
                    header,
                    ..AclConfig::new(&name, rules, default)
                };
                (config, routes)
            })
            .collect()
    })
}

/// `[plugin NAME]` sections with settings of their own.
fn plugins() -> impl Strategy<Value = Vec<switchyard_config::PluginConfig>> {
    let setting = (
        select(vec!["keys", "header", "mode", "limit_per_model"]),
        select(vec!["k1, k2", "x-api-key", "strict", "10", "a:b; c"]),
    );
    let plugin = (
        select(vec!["/usr/lib/a.so", "./libx.so", "plugins/p.so"]),
        prop::collection::btree_map(setting.0, setting.1, 0..3),
    );
    prop::collection::btree_map(name(), plugin, 0..3).prop_map(|m| {
        m.into_iter()
            .map(|(name, (path, settings))| switchyard_config::PluginConfig {
                name,
                path: path.to_string(),
                settings: settings
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .collect()
    })
}

/// A route's traffic keys, with names to be resolved against the config's plugins and routes.
type TrafficPicks = (
    Vec<usize>,
    Option<(usize, u32)>,
    Option<switchyard_config::RouteCache>,
);

fn traffic_picks() -> impl Strategy<Value = TrafficPicks> {
    let cache = (
        prop::option::of(duration()),
        duration(),
        1usize..(8 << 20),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(ttl, max_ttl, max_object, post, streams)| switchyard_config::RouteCache {
                ttl,
                max_ttl,
                max_object,
                post,
                streams,
            },
        );
    (
        prop::collection::vec(0usize..8, 0..3),
        prop::option::of((0usize..8, 1u32..=10_000)),
        prop::option::of(cache),
    )
}

/// Adds to `names` the routes `picks` point at (by index, modulo the routes), once each.
fn name_routes(names: &mut Vec<String>, picks: &[usize], routes: &[RouteConfig]) {
    for i in picks.iter().filter(|_| !routes.is_empty()) {
        let name = &routes[i % routes.len()].name;
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
}

fn config() -> impl Strategy<Value = Config> {
    let traffic = (0usize..(1 << 30), 0usize..(1 << 24), 1usize..=1_000_000).prop_map(
        |(cache_max_bytes, mirror_max_body, mirror_max_in_flight)| {
            switchyard_config::TrafficSettings {
                cache_max_bytes,
                mirror_max_body,
                mirror_max_in_flight,
            }
        },
    );
    (server(), observe(), backends(), traffic).prop_flat_map(
        |(mut server, observe, backends, traffic)| {
            server.observe = observe;
            server.traffic = traffic;
            let names: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
            (
                routes(names.clone()),
                l4s(names),
                listeners(),
                limits(),
                acls(),
                budgets(),
                alerts(),
                plugins(),
                prop::collection::vec(traffic_picks(), 4),
            )
                .prop_map(
                    move |(
                        mut routes,
                        l4,
                        listeners,
                        limits,
                        acls,
                        budgets,
                        alerts,
                        plugins,
                        picks,
                    )| {
                        // Routes name plugins that exist, and mirror to another route.
                        let names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
                        for (i, (r, (ps, mirror, cache))) in
                            routes.iter_mut().zip(picks).enumerate()
                        {
                            for p in ps.into_iter().filter(|_| !plugins.is_empty()) {
                                let name = &plugins[p % plugins.len()].name;
                                if !r.traffic.plugins.contains(name) {
                                    r.traffic.plugins.push(name.clone());
                                }
                            }
                            r.traffic.mirror = mirror
                                .map(|(t, share)| (t % names.len(), share))
                                .filter(|(t, _)| *t != i)
                                .map(|(t, share)| switchyard_config::MirrorConfig {
                                    route: names[t].clone(),
                                    share,
                                });
                            r.traffic.cache = cache;
                        }
                        // Keep only listeners whose port no other listener uses (port 0 never collides).
                        let mut ports: Vec<u16> = server.listen.iter().map(|a| a.port()).collect();
                        ports.extend(server.admin_listen.map(|a| a.port()));
                        let l4 = l4
                            .into_iter()
                            .filter(|l| {
                                let p = l.listen.port();
                                let free = p == 0 || !ports.contains(&p);
                                ports.push(p);
                                free
                            })
                            .collect::<Vec<L4Config>>();
                        // Ports read the PROXY header only where the server trusts some peers.
                        let trusting = !server.trusted_proxies.is_empty();
                        let l4: Vec<L4Config> = l4
                            .into_iter()
                            .map(|mut l| {
                                if !trusting {
                                    l.proxy_protocol = ProxyProtocol::Off;
                                    l.proxy_protocol_timeout = None;
                                }
                                l
                            })
                            .collect();
                        let listeners = listeners
                            .into_iter()
                            .map(|(mut l, fallback)| {
                                if !trusting {
                                    l.proxy_protocol = ProxyProtocol::Off;
                                    l.proxy_protocol_timeout = None;
                                }
                                // A fallback names a TCP group.
                                let tcp: Vec<&L4Config> = l4
                                    .iter()
                                    .filter(|g| g.protocol == L4Protocol::Tcp)
                                    .collect();
                                if let Some(i) = fallback.filter(|_| !tcp.is_empty()) {
                                    let group = tcp[i % tcp.len()].name.clone();
                                    l.fallback = Some(switchyard_config::Fallback::Tcp(group));
                                }
                                l
                            })
                            .collect();
                        let limits = limits
                            .into_iter()
                            .map(|(mut l, picks)| {
                                name_routes(&mut l.routes, &picks, &routes);
                                l
                            })
                            .collect();
                        let acls = acls
                            .into_iter()
                            .filter(|_| !routes.is_empty())
                            .map(|(mut a, picks)| {
                                name_routes(&mut a.routes, &picks, &routes);
                                a
                            })
                            .collect();
                        let budgets = budgets
                            .into_iter()
                            .map(|(mut b, picks)| {
                                name_routes(&mut b.routes, &picks, &routes);
                                b
                            })
                            .collect();
                        Config {
                            server: server.clone(),
                            backends: backends.clone(),
                            routes,
                            l4,
                            listeners,
                            limits,
                            acls,
                            budgets,
                            alerts,
                            plugins,
                        }
                    },
                )
        },
    )
}

/// Lines that look like config, to reach deeper than random bytes do.
fn ini_line() -> impl Strategy<Value = String> {
    let key = select(vec![
        "listen",
        "threads",
        "admin_listen",
        "drain_timeout",
        "max_header_bytes",
        "max_headers",
        "fail_threshold",
        "address",
        "weight",
        "host",
        "path_prefix",
        "backends",
        "balancer",
        "metrics",
        "health",
        "health_jitter",
        "progress_timeout",
        "protocol",
        "idle_timeout",
        "connect_timeout",
        "protocols",
        "fallback",
        "tls_certificate",
        "tls_key",
        "tls_sni",
        "acme_challenge_dir",
        "max_sessions",
        "max_datagram",
        "proxy_protocol",
        "proxy_protocol_timeout",
        "trusted_proxies",
        "tokens_per_minute",
        "per_model",
        "default_max_tokens",
        "bogus",
        "",
    ]);
    let value = prop_oneof![
        Just(String::new()),
        "[ -~]{0,20}",
        Just("127.0.0.1:8080".to_string()),
        Just("a, b".to_string()),
        Just("10s".to_string()),
        Just("off".to_string()),
        Just("*.example.com".to_string()),
        Just("least_conn".to_string()),
        Just("tcp".to_string()),
        Just("udp".to_string()),
        Just("v2".to_string()),
        Just("127.0.0.0/8".to_string()),
        Just("http1, h2c, tls".to_string()),
        Just("tcp:t".to_string()),
        Just("a.example.com /c.pem /k.pem".to_string()),
        Just("/metrics".to_string()),
        Just("ai completion".to_string()),
        Just("http /h 200 \"ok\"".to_string()),
        Just("script /bin/sh -c 'exit 0'".to_string()),
        Just("25%".to_string()),
        "(tcp|ai|http|script) [ -~]{0,20}",
        "[0-9]{1,25}[a-z]{0,3}",
    ];
    prop_oneof![
        (key, value, select(vec![" = ", "=", " =\t", " ; "]))
            .prop_map(|(k, v, eq)| format!("{k}{eq}{v}")),
        select(vec![
            "server",
            "backend a",
            "backend b",
            "route r",
            "route s",
            "l4 t",
            "l4",
            "listener p",
            "budget k",
            "alert a",
            "x",
            "",
            "route"
        ])
        .prop_map(|s| format!("[{s}]")),
        "[ -~]{0,30}",
        Just("; comment".to_string()),
        Just("\u{feff}".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_configs_round_trip(config in config()) {
        let text = config.to_ini();
        prop_assert_eq!(parse(&text, "rt.ini"), Ok(config), "{}", text);
    }

    #[test]
    fn health_checks_round_trip(check in health_check()) {
        let text = check.to_string();
        prop_assert_eq!(text.parse::<HealthCheck>(), Ok(check.clone()), "{}", text);
        // And through a config file, inline-comment rules and all.
        let ini = format!("[backend a]\naddress = h:1\nhealth = {text}\n[route r]\nbackends = a\n");
        let parsed = parse(&ini, "h.ini").map(|c| c.backends[0].health.clone());
        prop_assert_eq!(parsed, Ok(Some(check)), "{}", ini);
    }

    #[test]
    fn parsed_health_checks_render_back_to_themselves(text in "[ -~\u{a0}\u{e9}]{0,40}") {
        if let Ok(check) = text.parse::<HealthCheck>() {
            prop_assert_eq!(check.to_string().parse::<HealthCheck>(), Ok(check));
        }
        for kind in ["http /x 200 ", "script ", "ai "] {
            let text = format!("{kind}{text}");
            if let Ok(check) = text.parse::<HealthCheck>() {
                prop_assert_eq!(check.to_string().parse::<HealthCheck>(), Ok(check));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text, "fuzz.ini");
    }

    #[test]
    fn arbitrary_strings_never_panic(text in "\\PC{0,300}") {
        let _ = parse(&text, "fuzz.ini");
    }

    #[test]
    fn ini_like_text_errors_are_sorted_and_valid_results_round_trip(
        lines in prop::collection::vec(ini_line(), 0..25),
        crlf in any::<bool>(),
    ) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        match parse(&text, "fuzz.ini") {
            Ok(config) => {
                prop_assert_eq!(parse(&config.to_ini(), "again.ini"), Ok(config));
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                let keys: Vec<(bool, usize)> =
                    errors.iter().map(|e| (e.line == 0, e.line)).collect();
                let mut sorted = keys.clone();
                sorted.sort();
                prop_assert_eq!(keys, sorted);
                for e in errors.iter() {
                    prop_assert!(e.line <= lines.len());
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}
