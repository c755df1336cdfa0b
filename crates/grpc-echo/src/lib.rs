//! A gRPC service with one method of each call kind (unary, server-streaming,
//! client-streaming, bidirectional), and a server to run it on 127.0.0.1, for switchyard's
//! end-to-end gRPC tests.
//!
//! Every reply carries the request's `x-tag` metadata back as response metadata (headers),
//! and `Unary` with a non-zero `count` fails with that gRPC status and an `x-detail` trailer,
//! so tests can check that headers, messages and trailers all pass through a proxy.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::pin::Pin;

use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

/// The generated messages, client and server.
pub mod pb {
    tonic::include_proto!("switchyard.echo");
}

pub use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::Msg;

/// The service.
#[derive(Debug, Default, Clone)]
pub struct EchoService;

fn with_tag<T, U>(req: &Request<U>, body: T) -> Response<T> {
    let mut resp = Response::new(body);
    if let Some(tag) = req.metadata().get("x-tag") {
        resp.metadata_mut().insert("x-tag", tag.clone());
    }
    resp
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        let msg = req.get_ref().clone();
        if msg.count != 0 {
            let mut status = Status::new(tonic::Code::from(msg.count as i32), msg.text);
            status
                .metadata_mut()
                .insert("x-detail", MetadataValue::from_static("from-the-backend"));
            return Err(status);
        }
        Ok(with_tag(&req, msg))
    }

    type ServerStreamStream = MsgStream;

    async fn server_stream(
        &self,
        req: Request<Msg>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let msg = req.get_ref().clone();
        let replies = (0..msg.count).map(move |i| {
            Ok(Msg {
                text: format!("{} {i}", msg.text),
                data: msg.data.clone(),
                count: i,
            })
        });
        Ok(with_tag(
            &req,
            Box::pin(tokio_stream::iter(replies)) as MsgStream,
        ))
    }

    async fn client_stream(&self, req: Request<Streaming<Msg>>) -> Result<Response<Msg>, Status> {
        let tag = req.metadata().get("x-tag").cloned();
        let mut stream = req.into_inner();
        let mut texts = Vec::new();
        let mut data = Vec::new();
        let mut count = 0;
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            texts.push(msg.text);
            data.extend_from_slice(&msg.data);
            count += 1;
        }
        let mut resp = Response::new(Msg {
            text: texts.join(","),
            data,
            count,
        });
        if let Some(tag) = tag {
            resp.metadata_mut().insert("x-tag", tag);
        }
        Ok(resp)
    }

    type BidiStream = MsgStream;

    async fn bidi(
        &self,
        req: Request<Streaming<Msg>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let tag = req.metadata().get("x-tag").cloned();
        let stream = req.into_inner().map(|msg| {
            msg.map(|m| Msg {
                text: m.text.to_uppercase(),
                data: m.data,
                count: m.count + 1,
            })
        });
        let mut resp = Response::new(Box::pin(stream) as MsgStream);
        if let Some(tag) = tag {
            resp.metadata_mut().insert("x-tag", tag);
        }
        Ok(resp)
    }
}

/// Serves [`EchoService`] on a new 127.0.0.1 port until the runtime stops; its address.
pub async fn spawn_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(addr)
}
