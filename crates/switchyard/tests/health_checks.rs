//! Active health checks: a backend whose check fails `health_fall` times leaves rotation, and
//! comes back after `health_rise` passes; a TCP check notices a backend that is not listening.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::client::Client;
use support::server::{self, respond, Backend};
use support::{proxy, wait_for, DEADLINE};

/// A backend whose `/health` answers 200 or 503 as `healthy` says; other requests are counted.
async fn switchable() -> (Backend, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let healthy = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let backend = {
        let (healthy, served) = (Arc::clone(&healthy), Arc::clone(&served));
        server::serve(move |req| {
            let health = req.uri().path() == "/health";
            let (ok, served) = (healthy.load(SeqCst), Arc::clone(&served));
            async move {
                if health {
                    let status = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    return respond(status, "");
                }
                served.fetch_add(1, SeqCst);
                respond(StatusCode::OK, "ok")
            }
        })
        .await
    };
    (backend, healthy, served)
}

fn fast_checks(s: &mut switchyard_config::ServerConfig) {
    s.health_interval = Duration::from_millis(50);
    s.health_timeout = Duration::from_millis(500);
    s.health_fall = 2;
    s.health_rise = 2;
}

async fn health_state(proxy: &proxy::Proxy, i: usize) -> String {
    proxy.stats().await["backends"][i]["health"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_http_check_takes_a_backend_out_and_passing_brings_it_back() {
    let (a, a_healthy, a_served) = switchable().await;
    let (b, _, b_served) = switchable().await;
    let proxy = proxy::new()
        .server(fast_checks)
        .backend("a", a.addr())
        .health("http GET /health 200")
        .backend("b", b.addr())
        .health("http /health")
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    wait_for(DEADLINE, "checks pass", || async {
        health_state(&proxy, 0).await == "up" && health_state(&proxy, 1).await == "up"
    })
    .await;
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert!(a_served.load(SeqCst) > 0 && b_served.load(SeqCst) > 0);

    a_healthy.store(false, SeqCst);
    wait_for(DEADLINE, "a down", || async {
        health_state(&proxy, 0).await == "down"
    })
    .await;
    let before = a_served.load(SeqCst);
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert_eq!(
        a_served.load(SeqCst),
        before,
        "a got traffic while its check failed"
    );
    assert_eq!(proxy.stats().await["backends"][0]["up"], false);

    a_healthy.store(true, SeqCst);
    wait_for(DEADLINE, "a up again", || async {
        health_state(&proxy, 0).await == "up"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    assert!(a_served.load(SeqCst) > before, "a did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_notices_a_backend_that_is_not_listening() {
    let (a, _, _) = switchable().await;
    let dead = server::dead_addr();
    let proxy = proxy::new()
        .server(fast_checks)
        .backend("a", a.addr())
        .health("tcp")
        .backend("dead", dead)
        .health("tcp")
        .route("r", "/", &["a", "dead"], "round_robin")
        .start();
    wait_for(DEADLINE, "dead marked down", || async {
        health_state(&proxy, 1).await == "down" && health_state(&proxy, 0).await == "up"
    })
    .await;
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    // No request went to the dead backend: none needed the retry.
    assert_eq!(proxy.stats().await["backends"][1]["requests"], 0);
}
