//! Traffic shaping between routing and the backend: the response cache (and, as they come,
//! mirroring and rewrites).

pub mod cache;
