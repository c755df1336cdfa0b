//! Load balancing seen from the backends: weighted round robin splits exactly by weight, and
//! least-connections steers new requests away from a backend busy with slow ones.

mod support;

use std::sync::Arc;

use http::StatusCode;
use support::client::Client;
use support::server::{self, respond};
use support::{proxy, wait_for, DEADLINE};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_splits_exactly_by_weight() {
    let a = server::fixed("a").await;
    let b = server::fixed("b").await;
    let proxy = proxy::new()
        .weighted_backend("a", a.addr(), 3)
        .weighted_backend("b", b.addr(), 1)
        .route("default", "/", &["a", "b"], "round_robin")
        .start();
    let mut clients = [
        Client::connect(proxy.addr()).await,
        Client::connect(proxy.addr()).await,
    ];
    for i in 0..400 {
        assert_eq!(clients[i % 2].get("/").await.status, StatusCode::OK);
    }
    assert_eq!((a.requests(), b.requests()), (300, 100));
}

/// A backend that answers `/hold*` only once the test adds a permit to `gate`, and anything else
/// at once.
async fn gated(name: &'static str, gate: Arc<Semaphore>) -> server::Backend {
    server::serve(move |req| {
        let gate = Arc::clone(&gate);
        async move {
            if req.uri().path().starts_with("/hold") {
                gate.acquire().await.unwrap().forget();
            }
            respond(StatusCode::OK, name)
        }
    })
    .await
}

async fn least_conn_avoids_busy_backend(balancer: &str) {
    let gate = Arc::new(Semaphore::new(0));
    let a = gated("a", Arc::clone(&gate)).await;
    let b = gated("b", Arc::clone(&gate)).await;
    // `/hold` reaches only `a`; every other path is balanced over both. Backend state (in-flight
    // counts) is shared by every route naming the backend.
    let proxy = proxy::new()
        .backend("a", a.addr())
        .backend("b", b.addr())
        .route("hold", "/hold", &["a"], "round_robin")
        .route("default", "/", &["a", "b"], balancer)
        .start();
    let held: Vec<_> = (0..5)
        .map(|_| {
            let addr = proxy.addr();
            tokio::spawn(async move { Client::connect(addr).await.get("/hold").await })
        })
        .collect();
    wait_for(DEADLINE, "5 requests held by a", || async {
        a.requests() == 5
    })
    .await;
    assert_eq!(proxy.backend_stats(0).await["in_flight"], 5);

    let mut c = Client::connect(proxy.addr()).await;
    for i in 0..20 {
        let r = c.get("/work").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, "b", "request {i} went to the busy backend");
    }
    assert_eq!((a.requests(), b.requests()), (5, 20));

    gate.add_permits(5);
    for h in held {
        let r = h.await.unwrap();
        assert_eq!((r.status, r.body.as_ref()), (StatusCode::OK, &b"a"[..]));
    }
    wait_for(DEADLINE, "no request in flight", || async {
        let s = proxy.stats().await;
        s["backends"][0]["in_flight"] == 0 && s["backends"][1]["in_flight"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_busy_backend_p2c() {
    least_conn_avoids_busy_backend("least_conn").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_strict_avoids_busy_backend() {
    least_conn_avoids_busy_backend("least_conn_strict").await;
}
