//! HTTP/2 by Upgrade from HTTP/1.1 (`Upgrade: h2c`): the 101, then the upgrading request
//! answered on stream 1 and later requests on new streams of the same connection; requests
//! that cannot be upgraded exactly (a body) are answered over HTTP/1.1.

mod support;

use std::time::Duration;

use support::raw::Raw;
use support::server;
use support::{proxy, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPGRADE: &str = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                       HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";

/// Reads one HTTP/2 frame: (type, flags, stream, payload).
async fn frame(s: &mut tokio::net::TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut head))
        .await
        .expect("a frame in time")
        .expect("a frame");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], stream, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrading_request_is_answered_on_stream_one() {
    let backend = server::fixed("upgraded").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(format!("GET /first HTTP/1.1\r\nHost: up.test\r\n{UPGRADE}\r\n").as_bytes())
        .await
        .unwrap();
    // The 101, byte by byte up to the end of its head.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(DEADLINE, s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: h2c"), "{head}");
    // The client's preface and (empty) SETTINGS, then HTTP/2 frames.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut status_200 = false;
    let mut body = Vec::new();
    loop {
        let (kind, flags, stream, payload) = frame(&mut s).await;
        match (kind, stream) {
            (0x4, 0) if flags & 1 == 0 => {
                // The server's SETTINGS: acknowledge them.
                s.write_all(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
                    .await
                    .unwrap();
            }
            (0x1, 1) => status_200 = payload.first() == Some(&0x88), // :status 200, indexed
            (0x0, 1) => {
                body.extend_from_slice(&payload);
                if flags & 1 == 1 {
                    break;
                }
            }
            (0x7, _) => panic!("GOAWAY: {payload:?}"),
            _ => {}
        }
    }
    assert!(status_200, "the response on stream 1 is a 200");
    assert_eq!(body, b"upgraded");
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_upgrades_and_reuses_the_connection() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed: skipped");
        return;
    }
    let backend = server::fixed("over h2c").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let url = |p: &str| format!("http://{}/{p}", proxy.addr());
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-w",
            " %{http_version} %{num_connects}\n",
            &url("one"),
            &url("two"),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both over HTTP/2, the second on the upgraded connection (no new connect).
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "over h2c 2 1\nover h2c 2 0\n"
    );
    assert_eq!(backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_is_answered_over_http1() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(
        format!(
            "POST /upload HTTP/1.1\r\nHost: up.test\r\n{UPGRADE}Content-Length: 5\r\n\r\nhello"
        )
        .as_bytes(),
    )
    .await;
    let resp = c.read_response(DEADLINE).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"body\":\"hello\""), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_without_h2c_does_not_upgrade() {
    let backend = server::fixed("plain").await;
    let proxy = proxy::new()
        .listener("http1_only", |l| l.protocols.h2c = false)
        .to(backend.addr())
        .start();
    let mut c = Raw::connect(proxy.listener_addr("http1_only")).await;
    c.write(format!("GET / HTTP/1.1\r\nHost: up.test\r\n{UPGRADE}\r\n").as_bytes())
        .await;
    let resp = c.read_response(Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("plain"), "{resp}");
}
