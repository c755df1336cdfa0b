//! Connections to backends: the HTTP/1.1 client (codec and connection) and the per-thread pool.

pub mod codec;
pub mod conn;
pub mod directory;
pub mod errlog;
pub mod h2;
pub mod health;
pub mod metrics;
pub mod pool;
pub mod scrape;
pub mod tls;
