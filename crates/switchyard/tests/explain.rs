//! `explain = true`: responses say which backend was picked, by which balancer, and why.

mod support;

use http::StatusCode;
use support::client::Client;
use support::proxy;
use support::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explained_routes_carry_the_reason_and_others_do_not() {
    let a = server::fixed("a").await;
    let b = server::fixed("b").await;
    let proxy = proxy::new()
        .backend("a", a.addr())
        .backend("b", b.addr())
        .route("rt", "/rt/", &["a", "b"], "response_time")
        .explain()
        .route("rr", "/", &["a", "b"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    let answer = c.get("/rt/x").await;
    assert_eq!(answer.status, StatusCode::OK);
    let why = answer
        .header("x-switchyard-route")
        .expect("explained")
        .to_string();
    let backend = answer.text();
    assert!(
        why.starts_with(&format!("backend={backend}; balancer=response_time; cost=")),
        "{why}"
    );
    assert!(
        why.contains("peak_ewma_us=") && why.contains("in_flight="),
        "{why}"
    );
    let plain = c.get("/other").await;
    assert_eq!(plain.header("x-switchyard-route"), None);
}
