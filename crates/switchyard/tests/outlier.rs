//! Outlier ejection: a backend answering 500/502/504 `fail_threshold` times in a row leaves
//! rotation, for longer each time, but never more than `max_ejected_percent` of a group at
//! once; a 503 (busy) does not eject.

mod support;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::client::Client;
use support::server::{self, respond, Backend};
use support::{proxy, wait_for, DEADLINE};

/// A backend answering `status` while `sick`, 200 "ok" otherwise.
async fn flaky(status: StatusCode, sick: Arc<AtomicBool>) -> Backend {
    server::serve(move |_req| {
        let sick = sick.load(SeqCst);
        async move {
            if sick {
                respond(status, "sick")
            } else {
                respond(StatusCode::OK, "ok")
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_500s_eject_for_growing_times() {
    let sick = Arc::new(AtomicBool::new(true));
    let bad = flaky(StatusCode::INTERNAL_SERVER_ERROR, Arc::clone(&sick)).await;
    let good = server::fixed("good").await;
    let proxy = proxy::new()
        .server(|s| {
            s.fail_threshold = 3;
            s.fail_timeout = Duration::from_millis(400);
            s.fail_timeout_max = Duration::from_secs(60);
            s.retries = 0;
        })
        .backend("bad", bad.addr())
        .backend("good", good.addr())
        .route("r", "/", &["bad", "good"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    // Round robin: the bad backend sees every other request until its third 500.
    for _ in 0..6 {
        c.get("/").await;
    }
    assert_eq!(bad.requests(), 3);
    let b = proxy.backend_stats(0).await;
    assert_eq!(b["up"], false, "{b:#}");
    assert_eq!(b["ejections"], 1);
    for _ in 0..10 {
        assert_eq!(c.get("/").await.text(), "good");
    }
    // Back after the first ejection (400 ms); three more 500s eject it for twice as long.
    wait_for(DEADLINE, "first ejection over", || async {
        proxy.backend_stats(0).await["up"] == true
    })
    .await;
    // (The data plane reads a clock refreshed every 100 ms: it may see the end a tick later.)
    let mut sent = 0;
    while proxy.backend_stats(0).await["ejections"] != 2 {
        c.get("/").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        sent += 1;
        assert!(
            sent < 200,
            "not ejected again: {:#}",
            proxy.backend_stats(0).await
        );
    }
    let ejected_at = tokio::time::Instant::now();
    wait_for(DEADLINE, "second ejection over", || async {
        proxy.backend_stats(0).await["up"] == true
    })
    .await;
    assert!(
        ejected_at.elapsed() >= Duration::from_millis(600),
        "second ejection lasted {:?}, expected about 800 ms",
        ejected_at.elapsed()
    );
    // Healthy again: it serves, and its run of failures is over.
    sick.store(false, SeqCst);
    wait_for(DEADLINE, "the backend to serve again", || async {
        Client::connect(proxy.addr()).await.get("/").await.text() == "ok"
    })
    .await;
    assert_eq!(proxy.backend_stats(0).await["consecutive_failures"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_the_configured_share() {
    let sick = Arc::new(AtomicBool::new(true));
    let a = flaky(StatusCode::BAD_GATEWAY, Arc::clone(&sick)).await;
    let b = flaky(StatusCode::BAD_GATEWAY, Arc::clone(&sick)).await;
    let proxy = proxy::new()
        .server(|s| {
            s.fail_threshold = 2;
            s.fail_timeout = Duration::from_secs(60);
            s.max_ejected_percent = 50;
            s.retries = 0;
        })
        .backend("a", a.addr())
        .backend("b", b.addr())
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..20 {
        assert_eq!(c.get("/").await.status, StatusCode::BAD_GATEWAY);
    }
    // A whole fleet failing: one of the two is ejected, the other keeps serving (502s) rather
    // than leaving the route with nothing.
    let s = proxy.stats().await;
    let up: Vec<bool> = (0..2).map(|i| s["backends"][i]["up"] == true).collect();
    assert_eq!(up.iter().filter(|u| **u).count(), 1, "{s:#}");
    assert_eq!(proxy.errors("no_healthy_backend").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_503s_do_not_eject() {
    let busy = flaky(
        StatusCode::SERVICE_UNAVAILABLE,
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let proxy = proxy::new()
        .server(|s| {
            s.fail_threshold = 2;
            s.max_ejected_percent = 100;
        })
        .to(busy.addr())
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..10 {
        assert_eq!(c.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(busy.requests(), 10);
    assert_eq!(proxy.backend_stats(0).await["up"], true);
}
