//! Plugins on the request path, end to end through real sockets: the API-key plugin answering
//! 401 before any backend is touched and adding a header to what it lets through; the C
//! model-count plugin's response header; two plugins on one route in their configured order;
//! a panicking plugin failing only its request; broken libraries refusing a start and a
//! reload; and the `switchyard` binary loading a plugin from its INI file.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use http::{Method, StatusCode};
use serde_json::Value;
use support::binary::Binary;
use support::body::{empty, full};
use support::client::{self, Answer, Client};
use support::plugins::libs;
use support::reload::{apply, edited, post};
use support::server::{self, echoed_headers};
use support::{proxy, wait_for, DEADLINE};
use switchyard::server::StartError;
use switchyard_config::PluginConfig;

/// `GET /v1/embeddings` with extra `headers`, on a new connection.
async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> Answer {
    let mut req = client::request(Method::GET, "/v1/embeddings");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    Client::connect(addr)
        .await
        .request(req.body(empty()).unwrap())
        .await
}

/// A chat request naming `model` in its JSON body, with extra `headers`, on a new connection.
async fn chat(addr: SocketAddr, model: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client::request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    Client::connect(addr)
        .await
        .request(req.body(full(body)).unwrap())
        .await
}

/// The `x-model-count` a response carries, as a number.
fn model_count(a: &Answer) -> u64 {
    a.header("x-model-count")
        .unwrap_or_else(|| panic!("no x-model-count: {a:?}"))
        .parse()
        .unwrap()
}

/// `/stats`' entry for `[plugin name]`.
async fn plugin_stats(p: &proxy::Proxy, name: &str) -> Value {
    let stats = p.stats().await;
    stats["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("no plugins in /stats: {stats:#}"))
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {:#}", stats["plugins"]))
        .clone()
}

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

const AUTH: &[(&str, &str)] = &[("keys", "k1, k2"), ("add_header", "x-plugin: api-key")];

#[tokio::test]
async fn api_key_answers_401_before_the_backend_and_adds_its_header() {
    let backend = server::echo().await;
    let p = proxy::new()
        .plugin("auth", &libs().api_key, AUTH)
        .to(backend.addr())
        .plugins(&["auth"])
        .start();

    let a = get(p.addr(), &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(a.text(), "missing or unknown API key\n");
    assert_eq!(a.proxy_error(), None);
    let a = get(p.addr(), &[("x-api-key", "nope")]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(
        backend.requests(),
        0,
        "a denied request reached the backend"
    );

    let a = get(p.addr(), &[("x-api-key", "k2")]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let doc = a.json();
    assert_eq!(echoed_headers(&doc, "x-plugin"), ["api-key"]);
    assert_eq!(echoed_headers(&doc, "x-api-key"), ["k2"]);
    assert_eq!(doc["uri"], "/v1/embeddings");
    assert_eq!(backend.requests(), 1);

    let s = plugin_stats(&p, "auth").await;
    assert_eq!(s["plugin"], "api-key", "{s:#}");
    assert_eq!(s["path"], libs().api_key.to_str().unwrap(), "{s:#}");
    assert_eq!(s["answered"], 2, "{s:#}");
    assert_eq!(s["failed"], 0, "{s:#}");
    assert_eq!(p.errors("plugin_failed").await, 0);
}

#[tokio::test]
async fn model_count_reports_the_completed_requests_for_the_model() {
    let backend = server::fixed("done").await;
    let p = proxy::new()
        .plugin("count", &libs().model_count, &[])
        .to(backend.addr())
        .plugins(&["count"])
        .start();

    // Nothing has completed before the first request.
    let a = chat(p.addr(), "m1", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.text(), "done");
    assert_eq!(model_count(&a), 0);

    // A request completes once its exchange has ended, just after the client has read the
    // response: the count catches up, and never counts a request not yet sent.
    let mut sent = 1;
    wait_for(DEADLINE, "the first m1 request counted", || {
        sent += 1;
        let before = sent - 1;
        let addr = p.addr();
        async move {
            let a = chat(addr, "m1", &[]).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text());
            let n = model_count(&a);
            assert!(n <= before, "{n} counted with {before} sent before");
            n >= 1
        }
    })
    .await;
    assert!(sent >= 2);
    // Counted per model: m2 has none yet.
    assert_eq!(model_count(&chat(p.addr(), "m2", &[]).await), 0);
    // Eventually every m1 request sent is counted.
    wait_for(DEADLINE, "every m1 request counted", || {
        let addr = p.addr();
        async move { model_count(&chat(addr, "m1", &[]).await) >= sent }
    })
    .await;
    let s = plugin_stats(&p, "count").await;
    assert_eq!(
        (s["plugin"].as_str(), s["failed"].as_u64()),
        (Some("model-count"), Some(0))
    );
}

#[tokio::test]
async fn two_plugins_on_a_route_run_in_their_order() {
    let backend = server::echo().await;
    let p = proxy::new()
        .plugin("auth", &libs().api_key, AUTH)
        .plugin("count", &libs().model_count, &[])
        .to(backend.addr())
        .plugins(&["auth", "count"])
        .start();

    // api-key answers first: no backend, and no response callback runs on its answer.
    let a = chat(p.addr(), "m1", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(a.header("x-model-count"), None);
    assert_eq!(backend.requests(), 0);

    // Let through: the backend sees api-key's header, the client model-count's. The 401 is a
    // completed request for m1 too, so the count reaches 1 before any request is let through.
    wait_for(DEADLINE, "the 401 counted", || {
        let addr = p.addr();
        async move {
            let a = chat(addr, "m1", &[("x-api-key", "k1")]).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text());
            assert_eq!(echoed_headers(&a.json(), "x-plugin"), ["api-key"]);
            model_count(&a) >= 1
        }
    })
    .await;
    let requests = backend.requests() as u64;
    wait_for(DEADLINE, "every request counted", || {
        let addr = p.addr();
        async move { model_count(&chat(addr, "m1", &[("x-api-key", "k1")]).await) > requests }
    })
    .await;
    assert_eq!(plugin_stats(&p, "auth").await["answered"], 1);
    assert_eq!(plugin_stats(&p, "count").await["answered"], 0);
}

#[tokio::test]
async fn the_route_order_decides_which_plugin_sees_a_request_first() {
    let backend = server::echo().await;
    let p = proxy::new()
        .plugin("auth", &libs().api_key, AUTH)
        .plugin("faults", &libs().faults, &[("panic_on", "request")])
        .backend("b0", backend.addr())
        .route("auth-first", "/auth-first/", &["b0"], "round_robin")
        .plugins(&["auth", "faults"])
        .route("faults-first", "/", &["b0"], "round_robin")
        .plugins(&["faults", "auth"])
        .start();
    let addr = p.addr();
    let send = move |path: &'static str, headers: &'static [(&'static str, &'static str)]| async move {
        let mut req = client::request(Method::GET, path);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        Client::connect(addr)
            .await
            .request(req.body(empty()).unwrap())
            .await
            .status
    };
    // Without a key, api-key answers before test-faults would panic; the other way round,
    // test-faults panics first.
    assert_eq!(send("/auth-first/x", &[("x-panic", "1")]).await, 401);
    assert_eq!(send("/x", &[("x-panic", "1")]).await, 500);
    assert_eq!(
        send("/auth-first/x", &[("x-panic", "1"), ("x-api-key", "k1")]).await,
        500
    );
    assert_eq!(send("/x", &[("x-api-key", "k1")]).await, 200);
    assert_eq!(backend.requests(), 1);
    assert_eq!(plugin_stats(&p, "auth").await["answered"], 1);
    assert_eq!(plugin_stats(&p, "faults").await["failed"], 2);
}

#[tokio::test]
async fn a_panicking_plugin_fails_only_its_request() {
    let backend = server::echo().await;
    let p = proxy::new()
        .plugin("faults", &libs().faults, &[("panic_on", "request")])
        .to(backend.addr())
        .plugins(&["faults"])
        .start();

    let a = get(p.addr(), &[("x-panic", "1")]).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.text());
    assert_eq!(a.proxy_error(), Some("plugin_failed"));
    assert_eq!(backend.requests(), 0);

    let a = get(p.addr(), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(backend.requests(), 1);

    p.expect_errors("plugin_failed", 1).await;
    let s = plugin_stats(&p, "faults").await;
    assert_eq!(
        (s["failed"].as_u64(), s["answered"].as_u64()),
        (Some(1), Some(0)),
        "{s:#}"
    );
    // Still serving, on a kept-alive connection too.
    let mut c = Client::connect(p.addr()).await;
    for _ in 0..3 {
        assert_eq!(c.get("/v1/x").await.status, StatusCode::OK);
    }
    assert_eq!(p.errors("plugin_failed").await, 1);
    let text = p.admin_get("/metrics").await.text();
    let m = support::prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let failures = "switchyard_plugin_failures_total";
    assert_eq!(m.get(failures, &[("plugin", "faults")]), Some(1.0));
}

/// Starts a proxy with `[plugin broken]` at `path` (with `settings`) on its route; the error.
fn refused(path: &Path, settings: &[(&str, &str)]) -> String {
    let err = proxy::new()
        .plugin("broken", path, settings)
        .to(server::dead_addr())
        .plugins(&["broken"])
        .try_start()
        .err()
        .unwrap_or_else(|| panic!("{} was accepted", path.display()));
    assert!(matches!(err, StartError::Plugin(_)), "{err:?}");
    err.to_string()
}

#[test]
fn a_plugin_that_cannot_be_loaded_refuses_the_start() {
    let l = libs();
    for lib in [&l.wrong_abi, &l.no_symbol, &l.text, &l.no_create] {
        let msg = refused(lib, &[]);
        assert!(msg.contains("[plugin broken]"), "{msg}");
        assert!(msg.contains(file_name(lib)), "{msg}");
    }
    let msg = refused(&l.wrong_abi, &[]);
    assert!(msg.contains("999"), "{msg}");
    let msg = refused(&l.text.with_file_name("missing.so"), &[]);
    assert!(
        msg.contains("[plugin broken]") && msg.contains("missing.so"),
        "{msg}"
    );
    // A configuration the plugin's create rejects: its message.
    let msg = refused(&l.api_key, &[("header", "x-key")]);
    assert!(
        msg.contains("[plugin broken]") && msg.contains("keys"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_reload_with_a_broken_plugin_is_refused_and_changes_nothing() {
    let backend = server::echo().await;
    let p = proxy::new()
        .plugin("auth", &libs().api_key, AUTH)
        .to(backend.addr())
        .plugins(&["auth"])
        .start();
    assert_eq!(get(p.addr(), &[]).await.status, StatusCode::UNAUTHORIZED);
    let before = p.admin_get("/admin/config").await.text();

    let l = libs();
    for lib in [&l.wrong_abi, &l.no_symbol, &l.text] {
        let ini = edited(&p, |c| {
            c.plugins.push(PluginConfig {
                name: "broken".into(),
                path: lib.to_str().unwrap().into(),
                settings: Vec::new(),
            });
            c.routes[0].traffic.plugins.push("broken".into());
        });
        let (status, doc) = post(&p, "/admin/config", ini, None).await;
        assert_eq!(status, 400, "{doc:#}");
        let text = doc.to_string();
        assert!(text.contains("[plugin broken]"), "{doc:#}");
        assert!(text.contains(file_name(lib)), "{doc:#}");
    }
    assert_eq!(p.admin_get("/admin/config").await.text(), before);
    let stats = p.stats().await;
    assert_eq!(stats["config"]["version"], 0, "{:#}", stats["config"]);
    assert_eq!(stats["plugins"].as_array().unwrap().len(), 1);
    // Still the old plugin, with its counters.
    assert_eq!(get(p.addr(), &[]).await.status, StatusCode::UNAUTHORIZED);
    let a = get(p.addr(), &[("x-api-key", "k1")]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(plugin_stats(&p, "auth").await["answered"], 2);
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_plugins_instance() {
    let backend = server::fixed("done").await;
    let p = proxy::new()
        .plugin("auth", &libs().api_key, AUTH)
        .plugin("count", &libs().model_count, &[])
        .to(backend.addr())
        .plugins(&["count", "auth"])
        .start();
    assert_eq!(chat(p.addr(), "m1", &[]).await.status, 401);
    wait_for(DEADLINE, "the 401 counted", || {
        let addr = p.addr();
        async move { model_count(&chat(addr, "m1", &[("x-api-key", "k1")]).await) >= 1 }
    })
    .await;

    // Only auth's settings change: count keeps its instance (its table) and counters; auth
    // is loaded anew, with new counters and its new keys.
    apply(
        &p,
        edited(&p, |c| {
            let auth = c.plugins.iter_mut().find(|p| p.name == "auth").unwrap();
            auth.settings = vec![("keys".into(), "k3".into())];
        }),
    )
    .await;
    let a = chat(p.addr(), "m1", &[("x-api-key", "k3")]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // A new instance would start from 0; the kept one has counted the 401 at least.
    assert!(model_count(&a) >= 1, "{a:?}");
    assert_eq!(
        chat(p.addr(), "m1", &[("x-api-key", "k1")]).await.status,
        401
    );
    assert_eq!(plugin_stats(&p, "auth").await["answered"], 1);

    // Removed from the route and the config: gone from /stats, requests pass.
    apply(
        &p,
        edited(&p, |c| {
            c.plugins.retain(|p| p.name != "auth");
            c.routes[0].traffic.plugins.retain(|n| n != "auth");
        }),
    )
    .await;
    assert_eq!(chat(p.addr(), "m1", &[]).await.status, 200);
    assert_eq!(p.stats().await["plugins"].as_array().unwrap().len(), 1);
}

fn ini(listen: SocketAddr, backend: SocketAddr, plugin: &Path) -> String {
    format!(
        "[server]\nlisten = {listen}\nthreads = 1\nadmin_listen = off\n\n\
         [backend b]\naddress = {backend}\n\n\
         [plugin auth]\npath = {}\nkeys = k1, k2\nadd_header = x-plugin: api-key\n\n\
         [route api]\npath_prefix = /\nbackends = b\nplugins = auth\n",
        plugin.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_loads_a_plugin_from_its_config_file() {
    let backend = server::echo().await;
    let listen = server::dead_addr();
    let mut proc = Binary::run(&ini(listen, backend.addr(), &libs().api_key));
    proc.listening(listen).await;
    let a = get(listen, &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(backend.requests(), 0);
    let a = get(listen, &[("x-api-key", "k1")]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(echoed_headers(&a.json(), "x-plugin"), ["api-key"]);
    assert!(proc.running(), "switchyard exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_to_start_with_a_broken_plugin() {
    let listen = server::dead_addr();
    let mut proc = Binary::run(&ini(listen, server::dead_addr(), &libs().wrong_abi));
    let status = proc.exited().await;
    let stderr = proc.stderr();
    assert!(!status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("[plugin auth]"), "{stderr}");
    assert!(stderr.contains("libwrong_abi.so"), "{stderr}");
    assert!(tokio::net::TcpStream::connect(listen).await.is_err());
}

#[test]
fn check_loads_the_plugins_too() {
    let check = |plugin: &Path| {
        let path = proxy::temp_path("check.ini");
        std::fs::write(&path, ini(server::dead_addr(), server::dead_addr(), plugin)).unwrap();
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["check", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let good = check(&libs().api_key);
    assert!(good.status.success(), "{good:?}");
    let bad = check(&libs().wrong_abi);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[plugin auth]"), "{stderr}");
    assert!(stderr.contains("libwrong_abi.so"), "{stderr}");
}
