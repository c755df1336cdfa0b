//! Traffic shaping between routing and backend selection: the route's request and response
//! rewrites (see the pipeline in `docs/config.md`, "Rewrite order").

pub mod rewrite;

pub use rewrite::{InvalidPath, Rewrite};
