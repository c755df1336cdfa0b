//! Observability: counters, latency histograms and the `/stats` document.

pub mod histogram;
pub mod report;
pub mod stats;

pub use stats::{ErrorKind, Stats, ThreadStats};
