//! `balancer = consistent_hash`: requests with the same key (header, cookie, client address)
//! stay on one backend; different keys spread over the group.

mod support;

use http::{Method, StatusCode};
use support::body::empty;
use support::client::{request, Client};
use support::proxy;
use support::server::{self, Backend};

async fn three_backends() -> Vec<Backend> {
    vec![
        server::fixed("a").await,
        server::fixed("b").await,
        server::fixed("c").await,
    ]
}

fn counts(backends: &[Backend]) -> Vec<usize> {
    backends.iter().map(Backend::requests).collect()
}

fn proxy_for(backends: &[Backend], hash_key: &str) -> proxy::Proxy {
    proxy::new()
        .backend("a", backends[0].addr())
        .backend("b", backends[1].addr())
        .backend("c", backends[2].addr())
        .route("sticky", "/", &["a", "b", "c"], "consistent_hash")
        .hash_key(hash_key)
        .start()
}

/// Sends `n` requests carrying `header: value` and returns which backends' counts grew.
async fn send_with(c: &mut Client, header: &str, value: &str, n: usize) {
    for _ in 0..n {
        let req = request(Method::GET, "/")
            .header(header, value)
            .body(empty())
            .unwrap();
        assert_eq!(c.request(req).await.status, StatusCode::OK);
    }
}

fn grew(before: &[usize], after: &[usize]) -> Vec<usize> {
    (0..before.len())
        .filter(|i| after[*i] > before[*i])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_header_value_same_backend_and_values_spread() {
    let backends = three_backends().await;
    let proxy = proxy_for(&backends, "header:x-session-id");
    let mut c = Client::connect(proxy.addr()).await;
    let mut homes = std::collections::BTreeSet::new();
    for session in 0..30 {
        let before = counts(&backends);
        send_with(&mut c, "x-session-id", &format!("session-{session}"), 5).await;
        let moved = grew(&before, &counts(&backends));
        assert_eq!(
            moved.len(),
            1,
            "session {session} was spread over {moved:?}"
        );
        homes.insert(moved[0]);
    }
    assert!(homes.len() >= 2, "30 sessions all landed on {homes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_key() {
    let backends = three_backends().await;
    let proxy = proxy_for(&backends, "cookie:sid");
    let mut c = Client::connect(proxy.addr()).await;
    let mut homes = std::collections::BTreeSet::new();
    for user in 0..20 {
        let before = counts(&backends);
        let cookie = format!("theme=dark; sid=user-{user}; lang=en");
        send_with(&mut c, "cookie", &cookie, 4).await;
        let moved = grew(&before, &counts(&backends));
        assert_eq!(moved.len(), 1, "user {user} was spread over {moved:?}");
        homes.insert(moved[0]);
    }
    // Without the cookie every request would go to the least-loaded (the same) backend.
    assert!(homes.len() >= 2, "20 users all landed on {homes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_is_the_default_key() {
    let backends = three_backends().await;
    let proxy = proxy_for(&backends, "client_ip");
    // Several connections from 127.0.0.1: one backend serves them all.
    for _ in 0..4 {
        let mut c = Client::connect(proxy.addr()).await;
        for _ in 0..5 {
            assert_eq!(c.get("/").await.status, StatusCode::OK);
        }
    }
    let served: Vec<usize> = counts(&backends).into_iter().filter(|n| *n > 0).collect();
    assert_eq!(served, vec![20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_field_key() {
    let backends = three_backends().await;
    let proxy = proxy_for(&backends, "json:metadata.session_id");
    let mut c = Client::connect(proxy.addr()).await;
    let mut homes = std::collections::BTreeSet::new();
    for session in 0..20 {
        let before = counts(&backends);
        for turn in 0..4 {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"turn {turn}"}}],
                    "metadata":{{"tenant":"t","session_id":"s-{session}"}}}}"#
            );
            assert_eq!(c.post("/v1/chat/completions", body).await.status, 200);
        }
        let moved = grew(&before, &counts(&backends));
        assert_eq!(
            moved.len(),
            1,
            "session {session} was spread over {moved:?}"
        );
        homes.insert(moved[0]);
    }
    assert!(homes.len() >= 2, "20 sessions all landed on {homes:?}");
    // Bodies without the field, or not JSON, still get an answer (the least-loaded backend).
    assert_eq!(c.post("/v1/chat/completions", "{}").await.status, 200);
    assert_eq!(c.post("/v1/chat/completions", "not json").await.status, 200);
}
