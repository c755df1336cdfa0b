//! Listeners and client connections.

pub mod accept;
pub mod accept_limit;
pub mod acme;
pub mod certs;
pub mod conn;
pub mod detect;
pub mod h2c_upgrade;
pub mod listener;
pub mod listeners;
pub mod port_tasks;
pub mod ports;
pub mod proxy_protocol;
pub mod tls;
