//! `h2load` (nghttp2's HTTP/2 load generator) against the proxy, when it is installed: many
//! streams over a few h2c connections, every one answered.

mod support;

use support::proxy;
use support::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_requests_all_succeed() {
    if std::process::Command::new("h2load")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("h2load not installed (Debian: nghttp2-client): skipped");
        return;
    }
    let backend = server::fixed("load").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let url = format!("http://{}/", proxy.addr());
    let out = tokio::process::Command::new("h2load")
        .args(["-n", "2000", "-c", "4", "-m", "16", &url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 2000 2xx"), "{text}");
    assert_eq!(backend.requests(), 2000);
}
