//! Connections to backends.

pub mod pool;
