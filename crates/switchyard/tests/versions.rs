//! A route's `versions` rules: a canary split by weight between two versions of a model, the
//! newest healthy version, and explicit versions honoured whatever the rules.

mod support;

use std::time::Duration;

use support::client::Client;
use support::server::{self, Backend};
use support::{proxy, wait_for, DEADLINE};

const LLAMA: &str = r#"{"model":"llama","messages":[{"role":"user","content":"hi"}]}"#;

async fn versions() -> (Backend, Backend, Backend) {
    (
        server::fixed("v1").await,
        server::fixed("v2").await,
        server::fixed("v10").await,
    )
}

async fn tally(
    proxy: &proxy::Proxy,
    body: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut c = Client::connect(proxy.addr()).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let a = c.post("/v1/chat/completions", body.to_string()).await;
        assert_eq!(a.status, 200, "{}", a.text());
        *seen.entry(a.text()).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_gets_its_weight_of_the_traffic() {
    let (v1, v2, _v10) = versions().await;
    let proxy = proxy::new()
        .backend("old", v1.addr())
        .models(&["llama@v1"])
        .backend("new", v2.addr())
        .models(&["llama@v2"])
        .route("chat", "/", &["old", "new"], "round_robin")
        .versions("llama@v1 9, llama@v2 1")
        .start();
    let seen = tally(&proxy, LLAMA, 1000).await;
    let canary = seen.get("v2").copied().unwrap_or(0);
    // 10% expected; a binomial(1000, 0.1) lies within 50..=150 but for odds below 1e-6.
    assert!((50..=150).contains(&canary), "{seen:?}");
    // Asking for a version gets it, whatever the split.
    let pinned = tally(&proxy, r#"{"model":"llama@v2"}"#, 20).await;
    assert_eq!(pinned.get("v2"), Some(&20), "{pinned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_follows_the_healthy_versions() {
    let (v1, v2, v10) = versions().await;
    let v10_addr = v10.addr();
    let proxy = proxy::new()
        .server(|s| {
            s.health_interval = Duration::from_millis(50);
            s.health_fall = 1;
            s.health_rise = 1;
        })
        .backend("a", v1.addr())
        .models(&["llama@v1"])
        .backend("b", v2.addr())
        .models(&["llama@v2"])
        .backend("c", v10_addr)
        .models(&["llama@v10"])
        .health("tcp")
        .route("chat", "/", &["a", "b", "c"], "round_robin")
        .versions("llama@newest")
        .start();
    wait_for(DEADLINE, "v10 healthy", || async {
        proxy.backend_stats(2).await["health"]["state"] == "up"
    })
    .await;
    // v10 > v2 > v1, compared as numbers.
    assert_eq!(tally(&proxy, LLAMA, 10).await.get("v10"), Some(&10));
    // v10 goes away: the newest healthy version is v2.
    drop(v10);
    wait_for(DEADLINE, "v10 down", || async {
        proxy.backend_stats(2).await["up"] == false
    })
    .await;
    assert_eq!(tally(&proxy, LLAMA, 10).await.get("v2"), Some(&10));
}
