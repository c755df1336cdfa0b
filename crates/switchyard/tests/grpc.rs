//! gRPC through switchyard: a tonic client and a tonic server (`protocol = h2c` backend), every
//! call kind with its headers, messages and trailers intact; and the proxy's own failures
//! reported to the client as gRPC statuses (UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED).

mod support;

use std::time::{Duration, Instant};

use switchyard_grpc_echo::pb::Msg;
use switchyard_grpc_echo::EchoClient;
use tonic::transport::Channel;
use tonic::{Code, Request};

use support::server::{self, dead_addr};
use support::{proxy, DEADLINE};

async fn client(addr: std::net::SocketAddr) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the proxy");
    EchoClient::new(channel)
}

fn tagged<T>(msg: T, tag: &'static str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("x-tag", tag.parse().unwrap());
    req
}

fn msg(text: &str, count: u32) -> Msg {
    Msg {
        text: text.into(),
        data: vec![7; 100],
        count,
    }
}

async fn grpc_proxy() -> (proxy::Proxy, std::net::SocketAddr) {
    let backend = switchyard_grpc_echo::spawn_server().await.unwrap();
    let proxy = proxy::new()
        .backend("grpc", backend)
        .protocol("h2c")
        .route("default", "/", &["grpc"], "round_robin")
        .start();
    (proxy, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_call_passes_with_metadata() {
    let (proxy, _) = grpc_proxy().await;
    let mut c = client(proxy.addr()).await;
    let resp = c.unary(tagged(msg("hello", 0), "t-1")).await.unwrap();
    assert_eq!(resp.metadata().get("x-tag").unwrap(), "t-1");
    let m = resp.into_inner();
    assert_eq!(m.text, "hello");
    assert_eq!(m.data, vec![7; 100]);
    let s = proxy.backend_stats(0).await;
    assert_eq!(s["requests"], 1, "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_error_status_and_its_trailers_pass() {
    let (proxy, _) = grpc_proxy().await;
    let mut c = client(proxy.addr()).await;
    // count = 9: the backend fails with FAILED_PRECONDITION and an `x-detail` trailer.
    let status = c.unary(msg("not now", 9)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "not now");
    assert_eq!(
        status.metadata().get("x-detail").unwrap(),
        "from-the-backend"
    );
    // A failure the backend reports is not the proxy's: no error header.
    assert!(status.metadata().get("x-switchyard-error").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_delivers_every_message_then_the_status() {
    let (proxy, _) = grpc_proxy().await;
    let mut c = client(proxy.addr()).await;
    let resp = c
        .server_stream(tagged(msg("part", 50), "t-2"))
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-tag").unwrap(), "t-2");
    let mut stream = resp.into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.text);
    }
    let want: Vec<String> = (0..50).map(|i| format!("part {i}")).collect();
    assert_eq!(got, want);
    // The OK status came in the trailers, which tonic reads at the stream's end.
    let trailers = stream.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_sends_every_message() {
    let (proxy, _) = grpc_proxy().await;
    let mut c = client(proxy.addr()).await;
    let outbound = tokio_stream::iter((0..20).map(|i| Msg {
        text: format!("m{i}"),
        data: vec![i as u8; 1000],
        count: 0,
    }));
    let resp = c.client_stream(tagged(outbound, "t-3")).await.unwrap();
    assert_eq!(resp.metadata().get("x-tag").unwrap(), "t-3");
    let m = resp.into_inner();
    assert_eq!(m.count, 20);
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(m.text, want.join(","));
    assert_eq!(m.data.len(), 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_streaming_interleaves() {
    let (proxy, _) = grpc_proxy().await;
    let mut c = client(proxy.addr()).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let resp = c.bidi(tagged(outbound, "t-4")).await.unwrap();
    assert_eq!(resp.metadata().get("x-tag").unwrap(), "t-4");
    let mut inbound = resp.into_inner();
    // Each reply arrives before the next message is sent: the streams are live both ways,
    // not buffered to the end by the proxy.
    for i in 0..10 {
        tx.send(Msg {
            text: format!("ping {i}"),
            data: Vec::new(),
            count: i,
        })
        .await
        .unwrap();
        let reply = tokio::time::timeout(DEADLINE, inbound.message())
            .await
            .expect("reply in time")
            .unwrap()
            .expect("a reply");
        assert_eq!(reply.text, format!("PING {i}"));
        assert_eq!(reply.count, i + 1);
    }
    drop(tx);
    assert!(inbound.message().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_share_one_upstream_connection() {
    let (proxy, _) = grpc_proxy().await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let mut c = client(proxy.addr()).await;
        calls.push(tokio::spawn(async move {
            c.unary(msg(&format!("c{i}"), 0))
                .await
                .unwrap()
                .into_inner()
                .text
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), format!("c{i}"));
    }
    let s = proxy.backend_stats(0).await;
    assert_eq!(s["requests"], 40, "{s:#}");
    assert_eq!(
        s["connections_opened"], 1,
        "one multiplexed connection: {s:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_unavailable() {
    let proxy = proxy::new()
        .backend("grpc", dead_addr())
        .protocol("h2c")
        .route("default", "/", &["grpc"], "round_robin")
        .start();
    let mut c = client(proxy.addr()).await;
    let status = c.unary(msg("anyone?", 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("grpc"), "{status:?}");
    assert_eq!(
        status.metadata().get("x-switchyard-error").unwrap(),
        "connect_failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrouted_method_is_unimplemented() {
    let backend = switchyard_grpc_echo::spawn_server().await.unwrap();
    let proxy = proxy::new()
        .backend("grpc", backend)
        .protocol("h2c")
        .route("other", "/other.Service/", &["grpc"], "round_robin")
        .start();
    let mut c = client(proxy.addr()).await;
    let status = c.unary(msg("hello", 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_honoured_and_passed_on() {
    // A backend that takes its time, and reports the deadline it was given.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let backend = {
        let seen = std::sync::Arc::clone(&seen);
        server::serve_h2(move |req| {
            let seen = std::sync::Arc::clone(&seen);
            async move {
                *seen.lock().unwrap() = req
                    .headers()
                    .get("grpc-timeout")
                    .map(|v| v.to_str().unwrap().to_string());
                tokio::time::sleep(Duration::from_secs(30)).await;
                server::respond(http::StatusCode::OK, "")
            }
        })
        .await
    };
    let proxy = proxy::new()
        .backend("grpc", backend.addr())
        .protocol("h2c")
        .route("default", "/", &["grpc"], "round_robin")
        .start();
    // A raw HTTP/2 client: tonic's would enforce the deadline itself, and this is about the
    // proxy's.
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri("http://grpc.test/switchyard.echo.Echo/Unary")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let start = Instant::now();
    let resp = sender.send_request(req).await.unwrap();
    assert!(
        start.elapsed() < DEADLINE,
        "answered after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "answered before the deadline: {:?}",
        start.elapsed()
    );
    // A trailers-only response: 200, grpc-status 4 in the headers.
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "4", "{resp:?}");
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    // The backend was told what was left of the deadline (no more than the client's).
    let passed = seen
        .lock()
        .unwrap()
        .clone()
        .expect("grpc-timeout passed on");
    let ms: u64 = passed.trim_end_matches('m').parse().expect("milliseconds");
    assert!(passed.ends_with('m') && ms <= 300, "{passed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_grpc_backend_serves_calls() {
    // A route with no static backend of its own: calls fail until a gRPC server registers.
    let backend = switchyard_grpc_echo::spawn_server().await.unwrap();
    let proxy = proxy::new()
        .backend("placeholder", dead_addr())
        .route(
            "grpc",
            "/switchyard.echo.Echo/",
            &["placeholder"],
            "round_robin",
        )
        .discovery()
        .start();
    let mut c = client(proxy.addr()).await;
    assert_eq!(
        c.unary(msg("early", 0)).await.unwrap_err().code(),
        Code::Unavailable
    );
    let body = serde_json::json!({
        "id": "echo-1", "address": backend.to_string(), "protocol": "h2c", "ttl": "1m",
    });
    let mut admin = support::client::Client::connect(proxy.admin_addr()).await;
    let a = admin
        .request(
            support::client::request(http::Method::POST, "/admin/backends")
                .body(support::body::full(bytes::Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    // The placeholder is down after its failures; the registered server answers.
    support::wait_for(DEADLINE, "a call through the registered backend", || {
        let mut c = c.clone();
        async move { c.unary(msg("late", 0)).await.is_ok() }
    })
    .await;
    let bad = serde_json::json!({"address": backend.to_string(), "protocol": "h3"});
    let a = admin
        .request(
            support::client::request(http::Method::POST, "/admin/backends")
                .body(support::body::full(bytes::Bytes::from(bad.to_string())))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.text().contains("protocol"), "{}", a.text());
}
