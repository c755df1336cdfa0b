//! A real WebSocket client and server (tokio-tungstenite) through the proxy: text and binary
//! messages, ping/pong, and the close handshake.

mod support;

use futures_util::{SinkExt, StreamExt};
use support::proxy;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket server echoing every data message (tungstenite answers pings itself).
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(_) | Message::Binary(_) => ws.send(msg).await.unwrap(),
                        // A close is answered by tungstenite itself; the stream then ends.
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_binary_ping_and_close_through_the_proxy() {
    let proxy = proxy::new().to(echo_server().await).start();
    let url = format!("ws://{}/socket", proxy.addr());
    let (mut ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake");
    assert_eq!(resp.status(), 101);

    ws.send(Message::text("hello through switchyard"))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("hello through switchyard")
    );
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(blob));

    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    // The server's close reply comes back (or the stream ends right after the close).
    match ws.next().await {
        Some(Ok(Message::Close(_))) | None => {}
        Some(Ok(other)) => panic!("unexpected {other:?}"),
        Some(Err(e)) => panic!("{e}"),
    }
    let s = proxy.stats().await;
    assert_eq!(s["totals"]["responses"]["1xx"], 1);
}
