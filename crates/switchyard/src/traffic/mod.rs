//! Traffic shaping between routing and backend selection (see the pipeline in
//! `docs/config.md`, "Rewrite order"): the route's request and response rewrites, the response
//! cache (its policy, store, miss collapsing and the copy of an answer being stored; the
//! request path's phase is `l7/proxy/cached.rs`), and mirroring's shared counters (the copies
//! are sent by `l7/proxy/mirror.rs`).

pub mod cache;
pub mod mirror;
pub mod rewrite;

pub use rewrite::{InvalidPath, Rewrite};
