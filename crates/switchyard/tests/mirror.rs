//! Mirroring end to end: a route's sampled share of requests copied, head and body, to
//! another route's backend; the copies identical to what the client sent; a mirror that hangs
//! or is down leaves the client's answers as fast as without one; bodies above the cap and
//! copies above the in-flight bound skipped; and every count in `/stats`.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::body::full;
use support::client::{self, Client};
use support::server::{self, respond};
use support::{proxy, wait_for, DEADLINE};
use switchyard_config::MirrorConfig;

/// (path, x-tag header, body) of each request a backend received.
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

async fn recording(answer: &'static str) -> (server::Backend, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let b = server::serve(move |req| {
        let log = Arc::clone(&log);
        async move {
            let path = req.uri().path().to_string();
            let tag = req
                .headers()
                .get("x-tag")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
            log.lock().unwrap().push((path, tag, body));
            respond(StatusCode::OK, answer)
        }
    })
    .await;
    (b, seen)
}

/// A proxy whose route `main` (any host) goes to `primary` and mirrors `percent` to route
/// `shadow` (host `shadow.internal`), whose backend is `mirror`.
fn start(primary: SocketAddr, mirror: SocketAddr, percent: f64) -> proxy::Builder {
    proxy::new()
        .backend("p", primary)
        .backend("m", mirror)
        .host_route("shadow", &["shadow.internal"], "/", &["m"], "round_robin")
        .route("main", "/", &["p"], "round_robin")
        .traffic(|t| {
            t.mirror = Some(MirrorConfig {
                route: "shadow".into(),
                share: (percent * 100.0) as u32,
            })
        })
}

async fn post(c: &mut Client, i: usize, body: Vec<u8>) -> client::Answer {
    let req = client::request(Method::POST, &format!("/v1/chat/completions?i={i}"))
        .header("x-tag", i.to_string())
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap();
    c.request(req).await
}

fn body_of(i: usize) -> Vec<u8> {
    format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"request {i} {}"}}]}}"#,
        "x".repeat(i % 50)
    )
    .into_bytes()
}

#[tokio::test]
async fn the_sampled_share_reaches_the_mirror_with_identical_bodies() {
    let (primary, _) = recording("primary").await;
    let (mirror, seen) = recording("mirror").await;
    let p = start(primary.addr(), mirror.addr(), 25.0).start();
    let mut c = Client::connect(p.addr()).await;
    const N: usize = 800;
    for i in 0..N {
        let a = post(&mut c, i, body_of(i)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), "primary", "the client gets the primary's answer");
    }
    wait_for(DEADLINE, "the copies to be answered", || async {
        let m = &p.stats().await["mirror"];
        m["in_flight"] == 0 && m["sent"] == m["answered"]
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    // 25% of 800 is 200; a binomial's standard deviation here is about 12: 5 of them either way.
    assert!((140..=260).contains(&seen.len()), "{} copies", seen.len());
    for (path, tag, body) in &seen {
        let i: usize = tag.parse().unwrap();
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(body, &body_of(i), "copy of request {i}");
    }
    let s = p.stats().await;
    assert_eq!(s["mirror"]["sent"], seen.len());
    assert_eq!(s["mirror"]["failed"], 0);
    let text = p.admin_get("/metrics").await.text();
    let m = support::prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let copies = "switchyard_mirror_requests_total";
    assert_eq!(
        m.get(copies, &[("result", "answered")]),
        Some(seen.len() as f64)
    );
    // The mirror's answers are not the client's: the route's counts are the client's.
    assert_eq!(s["routes"][1]["requests"], N, "{}", s["routes"]);
}

/// Median client latency of `n` requests through `addr`.
async fn latency(addr: SocketAddr, n: usize) -> Duration {
    let mut c = Client::connect(addr).await;
    let mut times = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let a = post(&mut c, i, body_of(i)).await;
        assert_eq!(a.status, StatusCode::OK);
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn a_hung_or_dead_mirror_changes_nothing_for_the_client() {
    let (primary, _) = recording("primary").await;
    let hung = server::silent().await;
    // No mirror at all, for comparison.
    let plain = proxy::new()
        .backend("p", primary.addr())
        .route("main", "/", &["p"], "round_robin")
        .start();
    let baseline = latency(plain.addr(), 40).await;
    // Every request copied to a backend that never answers (and holds every copy for the
    // response timeout, 30 s here): the client must not wait for any of it.
    let p = start(primary.addr(), hung.addr(), 100.0)
        .server(|s| s.upstream_response_timeout = Duration::from_secs(30))
        .start();
    let t = Instant::now();
    let with_hung = latency(p.addr(), 40).await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "no request waited for the mirror"
    );
    // Generous: the median with a hung mirror stays within 50 ms of the baseline's.
    assert!(
        with_hung < baseline + Duration::from_millis(50),
        "median {with_hung:?} with a hung mirror vs {baseline:?} without"
    );
    let m = &p.stats().await["mirror"];
    assert_eq!(m["sent"], 40);
    assert_eq!(
        m["in_flight"], 40,
        "the copies wait on the mirror, not the client"
    );

    // A mirror that is down: every copy fails, every client request succeeds.
    let down = start(primary.addr(), server::dead_addr(), 100.0).start();
    let with_dead = latency(down.addr(), 40).await;
    assert!(
        with_dead < baseline + Duration::from_millis(50),
        "{with_dead:?} vs {baseline:?}"
    );
    wait_for(DEADLINE, "the copies to fail", || async {
        down.stats().await["mirror"]["failed"] == 40
    })
    .await;
}

#[tokio::test]
async fn large_bodies_and_copies_over_the_bound_are_skipped() {
    let (primary, at_primary) = recording("primary").await;
    let hung = server::silent().await;
    let p = start(primary.addr(), hung.addr(), 100.0)
        .server(|s| {
            s.traffic.mirror_max_body = 64;
            s.traffic.mirror_max_in_flight = 3;
        })
        .start();
    let mut c = Client::connect(p.addr()).await;
    // Above the cap: forwarded whole to the primary, not copied.
    let big = vec![b'x'; 1000];
    let a = post(&mut c, 1, big.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        at_primary.lock().unwrap()[0].2,
        big,
        "the primary gets all of it"
    );
    for i in 0..5 {
        post(&mut c, i, b"{}".to_vec()).await;
    }
    let m = &p.stats().await["mirror"];
    assert_eq!(m["skipped_too_large"], 1, "{m}");
    assert_eq!(m["sent"], 3, "{m}");
    assert_eq!(m["skipped_busy"], 2, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_mirrors_from_its_config_file() {
    let (primary, at_primary) = recording("primary").await;
    let (mirror, seen) = recording("mirror").await;
    let (listen, admin) = (server::dead_addr(), server::dead_addr());
    let mut proc = support::binary::Binary::run(&format!(
        "[server]\nlisten = {listen}\nadmin_listen = {admin}\nthreads = 1\n\
         mirror_max_body = 64k\n\n\
         [backend p]\naddress = {}\n[backend m]\naddress = {}\n\n\
         [route main]\nbackends = p\nmirror = shadow, 100%\n\n\
         [route shadow]\nhost = shadow.internal\nbackends = m\n",
        primary.addr(),
        mirror.addr()
    ));
    proc.listening(listen).await;
    let mut c = Client::connect(listen).await;
    for i in 0..5 {
        assert_eq!(post(&mut c, i, body_of(i)).await.text(), "primary");
    }
    wait_for(DEADLINE, "the copies", || async {
        seen.lock().unwrap().len() == 5
    })
    .await;
    let mut copies = seen.lock().unwrap().clone();
    copies.sort_by_key(|(_, tag, _)| tag.parse::<usize>().unwrap());
    let sent: Vec<_> = at_primary.lock().unwrap().clone();
    assert_eq!(copies, sent, "the mirror got what the primary got");
    let stats = client::get(admin, "/stats").await.json();
    assert_eq!(stats["mirror"]["sent"], 5, "{}", stats["mirror"]);
    assert!(proc.running(), "{}", proc.stderr());
}
