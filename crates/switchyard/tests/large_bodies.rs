//! 64 MiB streamed up and down through the proxy, generated and checked chunk by chunk on both
//! ends, with resident memory staying far below the body size.
//!
//! This file holds a single test so that no other test's allocations share the process (the
//! proxy runs in-process, so `/stats` reports the test process's own memory).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use support::body::{digest_body, empty, Digest, Generated};
use support::client::{self, request, Client};
use support::proxy::{self, Proxy};
use support::server::{self, respond};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// A backend that digests uploads (`POST /upload?N`) and generates downloads (`GET /download?N`,
/// N bytes), never holding a body whole.
async fn streaming_backend() -> server::Backend {
    server::serve(|req: http::Request<hyper::body::Incoming>| async move {
        let size: u64 = req.uri().query().unwrap_or("0").parse().unwrap();
        match *req.method() {
            Method::POST => {
                let d = digest_body(req.into_body()).await.expect("upload body");
                respond(
                    StatusCode::OK,
                    json!({"len": d.len, "hash": d.hash}).to_string(),
                )
            }
            _ => http::Response::new(Generated::new(size, CHUNK).boxed()),
        }
    })
    .await
}

/// Uploads then downloads `size` bytes through the proxy, checking both digests.
async fn round_trip(c: &mut Client, size: u64) {
    let body = Generated::new(size, CHUNK);
    let sent = body.digest();
    let a = c
        .request(
            request(Method::POST, &format!("/upload?{size}"))
                .body(body.boxed())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let sent: Digest = *sent.lock().unwrap();
    assert_eq!(sent.len, size);
    assert_eq!(a.json(), json!({"len": sent.len, "hash": sent.hash}));

    let resp = c
        .send(
            request(Method::GET, &format!("/download?{size}"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let got = digest_body(resp.into_body()).await.expect("download body");
    // The same generator on both ends: the download must equal what was uploaded.
    assert_eq!(got, sent);
}

async fn rss(proxy: &Proxy) -> u64 {
    proxy.stats().await["process"]["resident_memory_bytes"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_with_bounded_memory() {
    let backend = streaming_backend().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;

    // Warm up every buffer and allocator arena on the path first.
    round_trip(&mut c, 4 * MIB).await;
    let before = rss(&proxy).await;
    assert!(before > 0, "resident_memory_bytes unavailable");

    // Sample the peak while the big transfer runs.
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, admin) = (Arc::clone(&peak), Arc::clone(&done), proxy.admin_addr());
        tokio::spawn(async move {
            while !done.load(SeqCst) {
                let s = client::get(admin, "/stats").await.json();
                let now = s["process"]["resident_memory_bytes"].as_u64().unwrap();
                peak.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    round_trip(&mut c, 64 * MIB).await;
    done.store(true, SeqCst);
    sampler.await.unwrap();
    let after = rss(&proxy).await;
    let peak = peak.load(SeqCst).max(after);

    let growth = peak.saturating_sub(before);
    eprintln!("rss before {before} peak {peak} after {after}");
    assert!(
        growth < 32 * MIB,
        "resident memory grew by {} MiB (before {} MiB, peak {} MiB, after {} MiB)",
        growth / MIB,
        before / MIB,
        peak / MIB,
        after / MIB
    );
    assert_eq!(backend.requests(), 4);
}
