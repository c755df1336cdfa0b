//! Mock engines of unequal speed behind the load-aware balancers: `least_queue` (from the
//! engines' scraped queue figures) and `response_time` (from measured latency) both send
//! measurably more of the traffic to the faster engine, where `round_robin` splits it evenly.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::client::Client;
use support::proxy;
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};

async fn engine(name: &str, tokens_per_sec: f64) -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(
        listener,
        MockEngineArgs {
            name: Some(name.into()),
            ttft_ms: 0,
            tokens_per_sec,
            max_concurrent: 4,
            max_waiting: 256,
            ..MockEngineArgs::default()
        },
    )
    .await
    .unwrap()
}

/// 8 clients each send 25 completions of 10 tokens (100 ms on the slow engine, 25 ms on the
/// fast one); the number each engine served.
async fn run(balancer: &str) -> (u64, u64) {
    let slow = engine("slow", 100.0).await;
    let fast = engine("fast", 400.0).await;
    let proxy = proxy::new()
        .server(|s| s.metrics_interval = Duration::from_millis(50))
        .backend("slow", slow.local_addr())
        .metrics("/metrics")
        .backend("fast", fast.local_addr())
        .metrics("/metrics")
        .route("chat", "/", &["slow", "fast"], balancer)
        .start();
    let body =
        r#"{"model":"mock-llama","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                for _ in 0..25 {
                    let a = c.post("/v1/chat/completions", body).await;
                    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
                }
            })
        })
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("clients finish")
            .unwrap();
    }
    let served = (slow.requests_served(), fast.requests_served());
    eprintln!("{balancer}: slow {} fast {}", served.0, served.1);
    assert_eq!(served.0 + served.1, 200);
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_queue_favours_the_faster_engine() {
    let (slow, fast) = run("least_queue").await;
    assert!(fast >= 2 * slow, "fast served {fast}, slow {slow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_time_favours_the_faster_engine() {
    let (slow, fast) = run("response_time").await;
    assert!(fast >= 2 * slow, "fast served {fast}, slow {slow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_splits_evenly_whatever_the_speed() {
    let (slow, fast) = run("round_robin").await;
    assert_eq!((slow, fast), (100, 100));
}
