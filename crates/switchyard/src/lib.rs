//! switchyard: an L4/L7 proxy and load balancer for AI inference services.
//!
//! The request path (see DESIGN.md) runs on reactor threads, each a single-threaded tokio
//! runtime accepting on its own SO_REUSEPORT socket and owning its upstream connection pool,
//! balancer instances and counters, so the hot path takes no lock shared between threads.
//!
//! - [`server`]: start a server from a [`switchyard_config::Config`], stop it gracefully.
//! - [`net`]: listening sockets and client connections (timeouts, byte counts).
//! - [`l4`]: raw TCP proxying for `[l4 NAME]` listeners (byte streams, half-close).
//! - [`l7`]: the HTTP/1.1 proxy: framing checks, routing, forwarding, bodies, errors.
//! - [`upstream`]: the per-thread pool of keep-alive connections to backends.
//! - [`observe`]: counters, latency histograms and the `/stats` document.
//! - [`admin`]: the admin listener (`/stats`, `/healthz`).
//! - [`loadgen`]: `switchyard loadgen`, an open-loop generator of streamed chat completions.
//! - [`flood`]: `switchyard flood`, a new-connection flood from many source addresses.
//! - [`cli`], [`demo`]: the command line and the built-in demo.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod flood;
pub mod l4;
pub mod l7;
pub mod loadgen;
pub mod logging;
pub mod net;
pub mod observe;
pub mod reload;
pub mod routing;
pub mod security;
pub mod server;
pub mod traffic;
pub mod upstream;

pub use server::{start, ServerHandle, StartError};
