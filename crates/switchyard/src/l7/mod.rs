//! Layer 7: the HTTP/1.1 reverse proxy.

pub mod body;
pub mod cost;
pub mod error;
pub mod framing;
pub mod grpc;
pub mod headers;
pub mod model;
pub mod models;
pub mod proxy;
pub mod route;
pub mod tunnel;
pub mod ws_frames;
