//! Traffic shaping between routing and backend selection: the route's request and response
//! rewrites (see the pipeline in `docs/config.md`, "Rewrite order"), and the response cache
//! (its policy, store and miss collapsing; not yet on the request path).

pub mod cache;
pub mod mirror;
pub mod rewrite;

pub use rewrite::{InvalidPath, Rewrite};
