//! `balancer = response_time`: more traffic to the backend that answers faster, and none to a
//! backend that said 503 with Retry-After until that time has passed.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::client::Client;
use support::proxy;
use support::server::{self, respond};

async fn delayed(delay: Duration) -> server::Backend {
    server::serve(move |_req| async move {
        tokio::time::sleep(delay).await;
        respond(StatusCode::OK, "ok")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faster_backend_gets_more_traffic() {
    let fast = delayed(Duration::from_millis(2)).await;
    let slow = delayed(Duration::from_millis(60)).await;
    let proxy = proxy::new()
        .backend("fast", fast.addr())
        .backend("slow", slow.addr())
        .route("rt", "/", &["fast", "slow"], "response_time")
        .start();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                for _ in 0..25 {
                    assert_eq!(c.get("/").await.status, StatusCode::OK);
                }
            })
        })
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .unwrap()
            .unwrap();
    }
    let (f, s) = (fast.requests(), slow.requests());
    assert_eq!(f + s, 100);
    assert!(f >= 3 * s, "fast served {f}, slow {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_keeps_traffic_away() {
    // `busy` is fast but answers its first request with 503 and Retry-After: 30.
    let answered = Arc::new(AtomicUsize::new(0));
    let busy = {
        let answered = Arc::clone(&answered);
        server::serve(move |_req| {
            let n = answered.fetch_add(1, SeqCst);
            async move {
                if n == 0 {
                    let mut r = respond(StatusCode::SERVICE_UNAVAILABLE, "busy");
                    r.headers_mut()
                        .insert("retry-after", http::HeaderValue::from_static("30"));
                    r
                } else {
                    respond(StatusCode::OK, "ok")
                }
            }
        })
        .await
    };
    let other = delayed(Duration::from_millis(20)).await;
    let proxy = proxy::new()
        // Without retries the 503 reaches the client, which shows when busy was chosen.
        .server(|s| s.retries = 0)
        .backend("busy", busy.addr())
        .backend("other", other.addr())
        .route("rt", "/", &["busy", "other"], "response_time")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    // Until busy has answered (with its 503), requests may go either way.
    let mut saw_503 = false;
    for _ in 0..50 {
        if c.get("/").await.status == StatusCode::SERVICE_UNAVAILABLE {
            saw_503 = true;
            break;
        }
    }
    assert!(saw_503, "busy was never chosen");
    let before = busy.requests();
    for _ in 0..20 {
        assert_eq!(c.get("/").await.status, StatusCode::OK);
    }
    assert_eq!(
        busy.requests(),
        before,
        "busy got traffic inside its Retry-After"
    );
    let stats = proxy.stats().await;
    assert_eq!(stats["backends"][0]["penalized"], true);
}
