//! L4 proxying: `[l4 NAME]` listeners forward TCP byte streams or UDP datagrams, unparsed, to
//! one backend of a group chosen by a balancer.
//!
//! Each reactor thread has its own SO_REUSEPORT socket per listener (as for `[server]
//! listen`) and runs the tunnels or sessions that come in on it. Backends are the same
//! `[backend NAME]` states the L7 routes use, so in-flight counts and `least_conn` see every
//! kind of traffic.
//!
//! - [`tcp`]: pick a backend, connect within `connect_timeout` (trying each other backend once
//!   on failure), then copy both ways with half-close and `idle_timeout`.
//! - [`udp`]: a session per client address, with its own socket to the backend picked for
//!   it, expiring after `idle_timeout`, at most `max_sessions`; the table is [`sessions`].

pub mod group;
pub mod sessions;
pub mod tcp;
pub mod udp;

pub use group::SetupError;
