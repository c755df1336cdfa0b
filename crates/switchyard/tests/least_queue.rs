//! Balancers fed by figures scraped from the engines' `/metrics`: `least_queue` sends traffic
//! to the engine reporting the shorter queue, follows the figures when they change, and does not
//! read stale figures as an idle engine; `gpu` keeps traffic off an engine whose KV cache is
//! saturated.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::client::Client;
use support::server::{self, respond, Backend};
use support::{proxy, wait_for, DEADLINE};

/// A fake engine: `/metrics` reports `waiting` (or 500 while `broken`); anything else is a
/// request, counted in `served`.
struct Engine {
    backend: Backend,
    waiting: Arc<AtomicU64>,
    /// KV-cache usage in percent.
    kv_percent: Arc<AtomicU64>,
    broken: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

async fn engine(waiting: u64) -> Engine {
    let w = Arc::new(AtomicU64::new(waiting));
    let kv = Arc::new(AtomicU64::new(25));
    let broken = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let backend = {
        let (w, kv, broken, served) = (
            Arc::clone(&w),
            Arc::clone(&kv),
            Arc::clone(&broken),
            Arc::clone(&served),
        );
        server::serve(move |req| {
            let metrics = req.uri().path() == "/metrics";
            let (w, broken, served) = (w.load(SeqCst), broken.load(SeqCst), Arc::clone(&served));
            let kv = kv.load(SeqCst) as f64 / 100.0;
            async move {
                if !metrics {
                    served.fetch_add(1, SeqCst);
                    return respond(StatusCode::OK, "ok");
                }
                if broken {
                    return respond(StatusCode::INTERNAL_SERVER_ERROR, "");
                }
                respond(
                    StatusCode::OK,
                    format!(
                        "# TYPE vllm:num_requests_waiting gauge\n\
                         vllm:num_requests_waiting{{model_name=\"m\"}} {w}\n\
                         vllm:num_requests_running{{model_name=\"m\"}} 1\n\
                         vllm:kv_cache_usage_perc{{model_name=\"m\"}} {kv}\n"
                    ),
                )
            }
        })
        .await
    };
    Engine {
        backend,
        waiting: w,
        kv_percent: kv,
        broken,
        served,
    }
}

async fn send(c: &mut Client, n: usize) {
    for _ in 0..n {
        assert_eq!(c.get("/v1/x").await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_engines_queues_and_distrusts_stale_figures() {
    let a = engine(50).await;
    let b = engine(0).await;
    let proxy = proxy::new()
        .server(|s| {
            s.metrics_interval = Duration::from_millis(50);
            s.metrics_max_age = Duration::from_millis(400);
        })
        .backend("a", a.backend.addr())
        .metrics("/metrics")
        .backend("b", b.backend.addr())
        .metrics("/metrics")
        .route("q", "/", &["a", "b"], "least_queue")
        .start();
    let waiting_of = |name: &'static str, want: u64| {
        let proxy = &proxy;
        async move {
            let s = proxy.stats().await;
            let be = s["backends"].as_array().unwrap();
            let e = &be.iter().find(|x| x["name"] == name).unwrap()["engine"];
            e["fresh"] == true && e["waiting"] == want
        }
    };
    wait_for(DEADLINE, "first scrapes", || async {
        waiting_of("a", 50).await && waiting_of("b", 0).await
    })
    .await;
    let mut c = Client::connect(proxy.addr()).await;
    send(&mut c, 20).await;
    assert_eq!((a.served.load(SeqCst), b.served.load(SeqCst)), (0, 20));

    // The queues swap; once scraped, traffic follows.
    a.waiting.store(0, SeqCst);
    b.waiting.store(50, SeqCst);
    wait_for(DEADLINE, "swapped figures", || async {
        waiting_of("a", 0).await && waiting_of("b", 50).await
    })
    .await;
    send(&mut c, 20).await;
    assert_eq!((a.served.load(SeqCst), b.served.load(SeqCst)), (20, 20));

    // b's endpoint breaks while b still looks busy; its figures go stale and it is judged by
    // switchyard's own in-flight count (zero here), not kept out forever nor read as idle.
    b.broken.store(true, SeqCst);
    wait_for(DEADLINE, "stale figures", || async {
        let s = proxy.stats().await;
        s["backends"][1]["engine"]["fresh"] == false
            && s["backends"][1]["engine"]["scrapes_failed"].as_u64() > Some(0)
    })
    .await;
    // (The balancer's clock is the reactor's coarse one, up to a tick behind /stats.)
    let c = tokio::sync::Mutex::new(c);
    wait_for(DEADLINE, "traffic to b again", || async {
        send(&mut *c.lock().await, 1).await;
        b.served.load(SeqCst) > 20
    })
    .await;
    let s = proxy.stats().await;
    assert_eq!(s["backends"][0]["engine"]["kv_cache_usage"], 0.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_keeps_traffic_off_a_saturated_cache() {
    let full = engine(0).await;
    full.kv_percent.store(97, SeqCst);
    let roomy = engine(5).await;
    roomy.kv_percent.store(30, SeqCst);
    let proxy = proxy::new()
        .server(|s| s.metrics_interval = Duration::from_millis(50))
        .backend("full", full.backend.addr())
        .metrics("/metrics")
        .backend("roomy", roomy.backend.addr())
        .metrics("/metrics")
        .route("g", "/", &["full", "roomy"], "gpu")
        .start();
    wait_for(DEADLINE, "first scrapes", || async {
        let s = proxy.stats().await;
        s["backends"][0]["engine"]["kv_cache_usage"] == 0.97
            && s["backends"][1]["engine"]["fresh"] == true
    })
    .await;
    let mut c = Client::connect(proxy.addr()).await;
    send(&mut c, 20).await;
    // The full engine's queue is empty and roomy's is not, yet everything goes to roomy.
    assert_eq!(
        (full.served.load(SeqCst), roomy.served.load(SeqCst)),
        (0, 20)
    );
}
