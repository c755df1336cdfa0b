//! The admin listener: `GET /stats` (JSON) and `GET /healthz`, on its own thread and runtime so
//! that reading statistics never competes with the data plane's event loops.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::observe::report::stats_json;
use crate::server::Shared;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// Answers one admin request.
pub fn handle(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    match req.uri().path() {
        "/stats" => {
            let mut body = serde_json::to_vec_pretty(&stats_json(shared)).unwrap_or_default();
            body.push(b'\n');
            respond(StatusCode::OK, "application/json", body)
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /stats or /healthz\n",
        ),
    }
}

/// Runs the admin listener until shutdown.
pub fn run(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "admin: cannot build runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin: cannot register listener");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|v| *v) => return,
                r = listener.accept() => {
                    let Ok((stream, _)) = r else { continue };
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let resp = handle(&shared, &req);
                            async move { Ok::<_, Infallible>(resp) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
}
