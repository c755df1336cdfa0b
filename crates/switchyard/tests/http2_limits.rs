//! HTTP/2 limits towards clients: `h2_max_concurrent_streams` holds a client to its streams
//! (the rest wait, none is lost), and a client that opens and cancels streams in a burst
//! (rapid reset, CVE-2023-44487) is sent away with GOAWAY while other clients carry on.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::server;
use support::{client, h2c, proxy, wait_for, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_no_more_streams_than_the_limit() {
    // The backend holds every request until released, counting those it holds.
    let held = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let backend = {
        let (held, release) = (Arc::clone(&held), Arc::clone(&release));
        server::serve(move |_req| {
            let (held, release) = (Arc::clone(&held), Arc::clone(&release));
            async move {
                let released = release.notified();
                held.fetch_add(1, SeqCst);
                released.await;
                server::respond(StatusCode::OK, "done")
            }
        })
        .await
    };
    let proxy = proxy::new()
        .server(|s| s.h2.max_concurrent_streams = 3)
        .to(backend.addr())
        .start();
    let sender = h2c::connect(proxy.addr()).await;
    // Until the proxy's SETTINGS arrive the client may assume more streams (and would have
    // the extra ones refused); a well-behaved client waits for them.
    wait_for(DEADLINE, "the proxy's SETTINGS", || {
        let n = sender.current_max_send_streams();
        async move { n == 3 }
    })
    .await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut ready = sender.ready().await.unwrap();
                let (resp, _) = ready
                    .send_request(h2c::get(&format!("/{i}")), true)
                    .unwrap();
                let resp = resp.await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
            })
        })
        .collect();
    wait_for(DEADLINE, "3 requests at the backend", || async {
        held.load(SeqCst) == 3
    })
    .await;
    // The other five wait for a stream: a while later the backend still holds three.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held.load(SeqCst), 3);
    // Released one batch at a time, every request completes.
    let all_done = async {
        for c in calls {
            c.await.unwrap();
        }
    };
    tokio::pin!(all_done);
    loop {
        release.notify_waiters();
        tokio::select! {
            _ = &mut all_done => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    assert_eq!(held.load(SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_client_is_sent_away_and_others_are_served() {
    let backend = server::fixed("still here").await;
    let proxy = proxy::new()
        .server(|s| s.h2.max_reset_streams = 10)
        .to(backend.addr())
        .start();
    let (opened, err) = h2c::rapid_reset(proxy.addr()).await;
    // The GOAWAY, or, when the client was still writing as the proxy closed the connection
    // after it, the write that failed.
    let goaway = err.is_go_away() && err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    assert!(goaway || err.is_io(), "{err:?}");
    assert!(opened < 10_000, "the burst was never stopped");
    // Another client is served as usual.
    let a = client::get(proxy.addr(), "/").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "still here");
}
