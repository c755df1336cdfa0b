//! Listeners and client connections.

pub mod conn;
pub mod detect;
pub mod listener;
