//! Security in front of L7 routing: request rate limits (`[limit NAME]`).
//!
//! The algorithms are sans-io ([`gcra`], [`keyed`]: time is an argument), tested with a
//! controllable clock; [`limits`] binds them to the configuration and the wall clock.

pub mod gcra;
pub mod keyed;
pub mod limits;

pub use limits::{Limits, Refusal};
