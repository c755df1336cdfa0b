//! Security in front of L7 routing: access control lists (`[acl NAME]`, also guarding TCP
//! `[l4 NAME]` listeners) and request rate limits (`[limit NAME]`).
//!
//! The algorithms are sans-io ([`gcra`], [`keyed`]: time is an argument), tested with a
//! controllable clock; [`limits`] binds them to the configuration and the wall clock.

pub mod acl;
pub mod gcra;
pub mod keyed;
pub mod limits;

pub use acl::Acls;
pub use limits::{Limits, Refusal};
