//! Observability: counters, latency histograms and the `/stats` document.

pub mod alerts;
pub mod exposition;
pub mod histogram;
pub mod history;
pub mod metrics;
pub mod monitor;
pub mod pairs;
pub mod report;
pub mod sampler;
pub mod stats;
pub mod webhook;

pub use stats::{ErrorKind, Stats, ThreadStats};
