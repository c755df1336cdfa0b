//! Listeners and client connections.

pub mod conn;
pub mod listener;
