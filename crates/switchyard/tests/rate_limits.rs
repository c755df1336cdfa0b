//! `[limit NAME]`: over its rate a request gets 429 with `Retry-After` and `x-ratelimit-*`
//! headers (gRPC: RESOURCE_EXHAUSTED) before any backend is touched; keys (API keys, client
//! addresses) are limited apart; a keyed limit's table stays within `max_keys`.

mod support;

use std::net::SocketAddr;

use http::Method;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use support::body::empty;
use support::client::{self, request, Answer, Client};
use support::proxy;
use support::server;

/// `GET path` with `Authorization: Bearer key`.
async fn get_with_key(c: &mut Client, path: &str, key: &str) -> Answer {
    let req = request(Method::GET, path)
        .header("authorization", format!("Bearer {key}"))
        .body(empty())
        .unwrap();
    c.request(req).await
}

/// `GET /` from a connection whose source address is `from` (e.g. 127.0.0.2).
async fn get_from(from: &str, to: SocketAddr) -> Answer {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let stream = socket.connect(to).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(request(Method::GET, "/").body(empty()).unwrap())
        .await
        .unwrap();
    client::read(resp).await
}

fn assert_refused(a: &Answer, burst: &str) {
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(a.proxy_error(), Some("rate_limited"));
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(a.header("x-ratelimit-limit-requests"), Some(burst));
    assert_eq!(a.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(a.header("x-ratelimit-reset-requests").is_some());
    assert_eq!(a.json()["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_allows_the_burst_then_429() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .limit("all", "global", "1/m", 3, |_| {})
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..3 {
        assert_eq!(c.get("/").await.status, 200);
    }
    let refused = c.get("/").await;
    assert_refused(&refused, "3");
    // 1/m: the next request is a minute away.
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 55, "{retry}");
    assert_eq!(
        backend.requests(),
        3,
        "refused before any backend is touched"
    );
    proxy.expect_errors("rate_limited", 1).await;
    let stats = proxy.stats().await;
    assert_eq!(stats["limits"][0]["name"], "all");
    assert_eq!(stats["limits"][0]["denied"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_refills_the_bucket() {
    let backend = server::echo().await;
    // 20/s, burst 2: two at once, then one per 50ms.
    let proxy = proxy::new()
        .to(backend.addr())
        .limit("fast", "global", "20/s", 2, |_| {})
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(c.get("/").await.status, 200);
    assert_eq!(c.get("/").await.status, 200);
    assert_eq!(c.get("/").await.status, 429);
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    assert_eq!(c.get("/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_limited_apart() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .limit("per-key", "api_key", "1/m", 2, |_| {})
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..2 {
        assert_eq!(get_with_key(&mut c, "/", "sk-a").await.status, 200);
    }
    assert_refused(&get_with_key(&mut c, "/", "sk-a").await, "2");
    // Another key is unaffected, on the same connection.
    assert_eq!(get_with_key(&mut c, "/", "sk-b").await.status, 200);
    assert_eq!(get_with_key(&mut c, "/", "sk-b").await.status, 200);
    assert_eq!(get_with_key(&mut c, "/", "sk-b").await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_are_limited_apart() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .limit("per-ip", "client_ip", "1/m", 1, |_| {})
        .start();
    assert_eq!(get_from("127.0.0.2", proxy.addr()).await.status, 200);
    assert_eq!(get_from("127.0.0.2", proxy.addr()).await.status, 429);
    assert_eq!(get_from("127.0.0.3", proxy.addr()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_keyed_limit_on_a_path_prefix() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .limit("tenant", "header:x-tenant", "1/m", 1, |l| {
            l.path_prefix = Some("/v1/".into())
        })
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    let tenant = |t: &str, path: &str| {
        request(Method::GET, path)
            .header("x-tenant", t)
            .body(empty())
            .unwrap()
    };
    assert_eq!(c.request(tenant("a", "/v1/x")).await.status, 200);
    assert_eq!(c.request(tenant("a", "/v1/y")).await.status, 429);
    assert_eq!(c.request(tenant("b", "/v1/x")).await.status, 200);
    // Outside the prefix the limit does not apply.
    assert_eq!(c.request(tenant("a", "/other")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_stay_within_max_keys() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .limit("per-key", "api_key", "1/m", 1, |l| l.max_keys = 32)
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for i in 0..300 {
        let a = get_with_key(&mut c, "/", &format!("sk-{i}")).await;
        assert_eq!(a.status, 200);
    }
    let stats = proxy.stats().await;
    let l = &stats["limits"][0];
    let (keys, evictions) = (
        l["keys"].as_u64().unwrap(),
        l["evictions"].as_u64().unwrap(),
    );
    assert!(keys <= 32, "{l}");
    assert_eq!(keys + evictions, 300, "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_over_the_limit_is_resource_exhausted() {
    use switchyard_grpc_echo::pb::Msg;
    let backend = switchyard_grpc_echo::spawn_server().await.unwrap();
    let proxy = proxy::new()
        .backend("grpc", backend)
        .protocol("h2c")
        .route("default", "/", &["grpc"], "round_robin")
        .limit("calls", "global", "1/m", 1, |_| {})
        .start();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", proxy.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = switchyard_grpc_echo::EchoClient::new(channel);
    let msg = || Msg {
        text: "hi".into(),
        data: vec![],
        count: 0,
    };
    c.unary(msg()).await.unwrap();
    let status = c.unary(msg()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.metadata().get("retry-after").unwrap(), "60");
    assert_eq!(
        status.metadata().get("x-switchyard-error").unwrap(),
        "rate_limited"
    );
}
