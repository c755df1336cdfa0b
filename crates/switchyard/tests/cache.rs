//! The response cache end to end: a real backend that counts what reaches it and says how its
//! answers may be cached; hits and misses (`x-cache`), expiry, `Vary`, `no-store` both ways,
//! purge through the admin API, the byte bound with eviction, concurrent misses collapsed into
//! one upstream request, the opt-in POST cache for deterministic inference, streams left alone
//! unless opted in, and the figures in `/stats`.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use support::body::{empty, full};
use support::client::{self, Client};
use support::server::{self, respond};
use support::{proxy, wait_for, DEADLINE};
use switchyard_config::RouteCache;

/// A backend whose answer depends on the path: `/cc/<cache-control>` answers with that
/// `Cache-Control`, `/vary` varies on `accept-language`, `/sse` is an event stream, `/slow`
/// waits 300 ms; every body names the request's number, so a cached answer shows an old one.
async fn backend() -> (server::Backend, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&n);
    let b = server::serve(move |req| {
        let i = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let path = req.uri().path().to_string();
            if path == "/slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let lang = req
                .headers()
                .get("accept-language")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = if req.method() == Method::POST {
                use http_body_util::BodyExt;
                let b = req.into_body().collect().await.unwrap().to_bytes();
                format!("answer {i} to {}", String::from_utf8_lossy(&b))
            } else {
                format!("answer {i} {lang}")
            };
            let mut r = respond(StatusCode::OK, body);
            let h = r.headers_mut();
            if let Some(cc) = path.strip_prefix("/cc/") {
                h.insert("cache-control", cc.replace('_', " ").parse().unwrap());
            }
            if path == "/vary" {
                h.insert("vary", "Accept-Language".parse().unwrap());
            }
            if path == "/sse" {
                h.insert("content-type", "text/event-stream".parse().unwrap());
            }
            r
        }
    })
    .await;
    (b, n)
}

fn cache(f: impl FnOnce(&mut RouteCache)) -> RouteCache {
    let mut c = RouteCache {
        ttl: Some(Duration::from_secs(60)),
        ..RouteCache::default()
    };
    f(&mut c);
    c
}

fn start(b: &server::Backend, rc: RouteCache, max_bytes: usize) -> proxy::Proxy {
    proxy::new()
        .server(|s| s.traffic.cache_max_bytes = max_bytes)
        .backend("b", b.addr())
        .route("r", "/", &["b"], "round_robin")
        .traffic(|t| t.cache = Some(rc))
        .start()
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> client::Answer {
    let mut req = client::request(Method::GET, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Client::connect(addr)
        .await
        .request(req.body(empty()).unwrap())
        .await
}

#[tokio::test]
async fn hits_misses_expiry_and_stats() {
    let (b, n) = backend().await;
    let p = start(&b, cache(|_| {}), 1 << 20);
    let first = get(p.addr(), "/a", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(first.text(), "answer 1 ");
    let second = get(p.addr(), "/a", &[]).await;
    assert_eq!(second.header("x-cache"), Some("HIT"));
    assert_eq!(second.text(), "answer 1 ", "the stored body");
    assert!(second.header("age").is_some());
    // HEAD is answered from GET's entry, without a body.
    let mut c = Client::connect(p.addr()).await;
    let head = c
        .request(client::request(Method::HEAD, "/a").body(empty()).unwrap())
        .await;
    assert_eq!(head.header("x-cache"), Some("HIT"));
    assert!(head.body.is_empty());
    // Another query string is another entry.
    assert_eq!(
        get(p.addr(), "/a?x=1", &[]).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(n.load(Ordering::SeqCst), 2);

    // A response's own max-age=1 beats the route's ttl: expired after a second.
    assert_eq!(
        get(p.addr(), "/cc/max-age=1", &[]).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        get(p.addr(), "/cc/max-age=1", &[]).await.header("x-cache"),
        Some("HIT")
    );
    wait_for(DEADLINE, "the entry to expire", || async {
        get(p.addr(), "/cc/max-age=1", &[]).await.header("x-cache") == Some("MISS")
    })
    .await;

    let s = p.stats().await;
    let cache = &s["cache"];
    assert!(cache["hits"].as_u64().unwrap() >= 3, "{cache}");
    assert!(cache["misses"].as_u64().unwrap() >= 4, "{cache}");
    assert!(cache["hit_ratio"].as_f64().unwrap() > 0.0);
    assert!(cache["entries"].as_u64().unwrap() >= 2);
    assert!(cache["bytes"].as_u64().unwrap() > 0);
    assert_eq!(cache["max_bytes"], 1 << 20);
    assert!(cache["expired"].as_u64().unwrap() >= 1, "{cache}");
    // The same figures in /metrics.
    let text = p.admin_get("/metrics").await.text();
    let m = support::prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let hits = cache["hits"].as_f64();
    let lookups = "switchyard_cache_lookups_total";
    assert_eq!(m.get(lookups, &[("result", "hit")]), hits);
    assert_eq!(m.types[lookups], "counter");
    assert!(m.get("switchyard_cache_bytes", &[]).unwrap() > 0.0);
}

#[tokio::test]
async fn vary_no_store_no_cache_and_credentials() {
    let (b, n) = backend().await;
    let p = start(&b, cache(|_| {}), 1 << 20);
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(get(p.addr(), "/vary", &en).await.text(), "answer 1 en");
    assert_eq!(get(p.addr(), "/vary", &fr).await.text(), "answer 2 fr");
    let again_en = get(p.addr(), "/vary", &en).await;
    assert_eq!(
        (again_en.header("x-cache"), again_en.text().as_str()),
        (Some("HIT"), "answer 1 en")
    );
    let again_fr = get(p.addr(), "/vary", &fr).await;
    assert_eq!(
        (again_fr.header("x-cache"), again_fr.text().as_str()),
        (Some("HIT"), "answer 2 fr")
    );

    // no-store from the backend: never stored.
    for _ in 0..2 {
        let a = get(p.addr(), "/cc/no-store", &[]).await;
        assert_eq!(a.header("x-cache"), Some("MISS"));
    }
    // private and no-cache from the backend: not stored either.
    for cc in ["/cc/private", "/cc/no-cache"] {
        get(p.addr(), cc, &[]).await;
        assert_eq!(
            get(p.addr(), cc, &[]).await.header("x-cache"),
            Some("MISS"),
            "{cc}"
        );
    }
    // The client's no-cache goes to the backend (BYPASS) and refreshes the entry.
    get(p.addr(), "/b", &[]).await;
    let bypass = get(p.addr(), "/b", &[("cache-control", "no-cache")]).await;
    assert_eq!(bypass.header("x-cache"), Some("BYPASS"));
    let fresh = get(p.addr(), "/b", &[]).await;
    assert_eq!(
        (fresh.header("x-cache"), fresh.text()),
        (Some("HIT"), bypass.text())
    );
    // The client's no-store: not answered from the cache.
    let ns = get(p.addr(), "/b", &[("cache-control", "no-store")]).await;
    assert_eq!(ns.header("x-cache"), Some("BYPASS"));
    // A request with credentials is not stored for others unless the answer is public.
    let auth = [("authorization", "Bearer k1")];
    get(p.addr(), "/c", &auth).await;
    assert_eq!(
        get(p.addr(), "/c", &auth).await.header("x-cache"),
        Some("MISS")
    );
    get(p.addr(), "/cc/public,_max-age=60", &auth).await;
    let public = get(p.addr(), "/cc/public,_max-age=60", &auth).await;
    assert_eq!(public.header("x-cache"), Some("HIT"));
    assert!(n.load(Ordering::SeqCst) >= 10);
}

#[tokio::test]
async fn purge_through_the_admin_api() {
    let (b, _n) = backend().await;
    let p = start(&b, cache(|_| {}), 1 << 20);
    for path in ["/x/1", "/x/2", "/y/1"] {
        get(p.addr(), path, &[]).await;
        assert_eq!(
            get(p.addr(), path, &[]).await.header("x-cache"),
            Some("HIT")
        );
    }
    let purge = |q: &'static str| {
        let admin = p.admin_addr();
        async move {
            let mut c = Client::connect(admin).await;
            let a = c
                .request(
                    client::request(Method::POST, &format!("/admin/cache/purge{q}"))
                        .body(empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text());
            a.json()["purged"].as_u64().unwrap()
        }
    };
    assert_eq!(purge("?path=/x/").await, 2);
    assert_eq!(
        get(p.addr(), "/x/1", &[]).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        get(p.addr(), "/y/1", &[]).await.header("x-cache"),
        Some("HIT")
    );
    assert_eq!(purge("?host=elsewhere.example").await, 0);
    assert!(purge("").await >= 2);
    assert_eq!(
        get(p.addr(), "/y/1", &[]).await.header("x-cache"),
        Some("MISS")
    );
    assert!(p.stats().await["cache"]["purged"].as_u64().unwrap() >= 4);
}

#[tokio::test]
async fn the_byte_bound_evicts_the_least_recently_used() {
    let (b, _n) = backend().await;
    // Each entry is a few hundred bytes: 2 KiB holds a handful, not twenty.
    let p = start(&b, cache(|_| {}), 2048);
    for i in 0..20 {
        get(p.addr(), &format!("/e/{i}"), &[]).await;
    }
    let s = p.stats().await;
    assert!(
        s["cache"]["bytes"].as_u64().unwrap() <= 2048,
        "{}",
        s["cache"]
    );
    assert!(
        s["cache"]["evicted"].as_u64().unwrap() >= 10,
        "{}",
        s["cache"]
    );
    // The latest is still there; the first is long gone.
    assert_eq!(
        get(p.addr(), "/e/19", &[]).await.header("x-cache"),
        Some("HIT")
    );
    assert_eq!(
        get(p.addr(), "/e/0", &[]).await.header("x-cache"),
        Some("MISS")
    );
    // An object above cache_max_object is never stored.
    let p2 = start(&b, cache(|c| c.max_object = 4), 1 << 20);
    get(p2.addr(), "/big", &[]).await;
    assert_eq!(
        get(p2.addr(), "/big", &[]).await.header("x-cache"),
        Some("MISS")
    );
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_request() {
    let (b, n) = backend().await;
    let p = start(&b, cache(|_| {}), 1 << 20);
    let addr = p.addr();
    let answers: Vec<client::Answer> = futures_util::future::join_all(
        (0..20).map(|_| async move { get(addr, "/slow", &[]).await }),
    )
    .await;
    assert_eq!(
        n.load(Ordering::SeqCst),
        1,
        "one request reached the backend"
    );
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), "answer 1 ");
    }
    let misses = answers
        .iter()
        .filter(|a| a.header("x-cache") == Some("MISS"))
        .count();
    assert_eq!(misses, 1, "the leader's answer is the only miss");
    assert_eq!(p.stats().await["cache"]["collapsed"], 19);
}

#[tokio::test]
async fn deterministic_inference_posts_are_cached_when_opted_in() {
    let (b, n) = backend().await;
    let p = start(&b, cache(|c| c.post = true), 1 << 20);
    let post = |path: &'static str, body: &'static str| {
        let addr = p.addr();
        async move {
            let mut c = Client::connect(addr).await;
            let req = client::request(Method::POST, path)
                .header("content-type", "application/json")
                .body(full(body))
                .unwrap();
            c.request(req).await
        }
    };
    let emb = r#"{"model":"e5","input":"hello"}"#;
    assert_eq!(
        post("/v1/embeddings", emb).await.header("x-cache"),
        Some("MISS")
    );
    let hit = post("/v1/embeddings", emb).await;
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.text(), format!("answer 1 to {emb}"));
    // Another body is another key.
    let other = r#"{"model":"e5","input":"bye"}"#;
    assert_eq!(
        post("/v1/embeddings", other).await.header("x-cache"),
        Some("MISS")
    );
    // temperature 0: cached; temperature 0.7: not; streamed: not (cache_streams off).
    let t0 = r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
    post("/v1/chat/completions", t0).await;
    assert_eq!(
        post("/v1/chat/completions", t0).await.header("x-cache"),
        Some("HIT")
    );
    let warm = r#"{"model":"m","temperature":0.7,"messages":[]}"#;
    post("/v1/chat/completions", warm).await;
    assert_eq!(
        post("/v1/chat/completions", warm).await.header("x-cache"),
        None
    );
    let streamed = r#"{"model":"m","temperature":0,"stream":true}"#;
    post("/v1/completions", streamed).await;
    assert_eq!(
        post("/v1/completions", streamed).await.header("x-cache"),
        None
    );
    assert_eq!(n.load(Ordering::SeqCst), 7, "2 hits of 9 requests");
    // Without cache_post, a POST is never cached.
    let plain = start(&b, cache(|_| {}), 1 << 20);
    let mut c = Client::connect(plain.addr()).await;
    let req = client::request(Method::POST, "/v1/embeddings")
        .body(full(emb))
        .unwrap();
    assert_eq!(c.request(req).await.header("x-cache"), None);
}

#[tokio::test]
async fn streams_are_stored_only_when_opted_in() {
    let (b, _n) = backend().await;
    let p = start(&b, cache(|_| {}), 1 << 20);
    get(p.addr(), "/sse", &[]).await;
    assert_eq!(
        get(p.addr(), "/sse", &[]).await.header("x-cache"),
        Some("MISS")
    );
    let p2 = start(&b, cache(|c| c.streams = true), 1 << 20);
    get(p2.addr(), "/sse", &[]).await;
    assert_eq!(
        get(p2.addr(), "/sse", &[]).await.header("x-cache"),
        Some("HIT")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_caches_and_purges_from_its_config_file() {
    let (b, n) = backend().await;
    let (listen, admin) = (server::dead_addr(), server::dead_addr());
    let mut proc = support::binary::Binary::run(&format!(
        "[server]\nlisten = {listen}\nadmin_listen = {admin}\nthreads = 1\n\
         cache_max_bytes = 1m\n\n\
         [backend b]\naddress = {}\n\n\
         [route r]\nbackends = b\ncache = on\ncache_ttl = 1m\ncache_post = on\n",
        b.addr()
    ));
    proc.listening(listen).await;
    assert_eq!(get(listen, "/a", &[]).await.header("x-cache"), Some("MISS"));
    let hit = get(listen, "/a", &[]).await;
    assert_eq!(
        (hit.header("x-cache"), hit.text().as_str()),
        (Some("HIT"), "answer 1 ")
    );
    let mut c = Client::connect(listen).await;
    let emb = || {
        client::request(Method::POST, "/v1/embeddings")
            .body(full(r#"{"model":"e5","input":"x"}"#))
            .unwrap()
    };
    assert_eq!(c.request(emb()).await.header("x-cache"), Some("MISS"));
    assert_eq!(c.request(emb()).await.header("x-cache"), Some("HIT"));
    assert_eq!(n.load(Ordering::SeqCst), 2);
    let mut a = Client::connect(admin).await;
    let req = client::request(Method::POST, "/admin/cache/purge?path=/a");
    let purged = a.request(req.body(empty()).unwrap()).await;
    assert_eq!(purged.json()["purged"], 1, "{}", purged.text());
    assert_eq!(get(listen, "/a", &[]).await.header("x-cache"), Some("MISS"));
    let stats = client::get(admin, "/stats").await.json();
    assert_eq!(stats["cache"]["hits"], 2, "{}", stats["cache"]);
    assert!(proc.running(), "{}", proc.stderr());
}
