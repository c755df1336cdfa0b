//! Raw TCP (L4) proxying: `[l4 NAME]` listeners forward byte streams, unparsed, to one backend
//! of a group chosen by a balancer.
//!
//! Each reactor thread accepts on its own SO_REUSEPORT socket per listener (as for `[server]
//! listen`) and runs every tunnel it accepts: pick a backend (the same `[backend NAME]` states
//! the L7 routes use, so in-flight counts and `least_conn` see both kinds of traffic), connect
//! within `connect_timeout` (trying each other backend once on failure), then copy both ways
//! with half-close and `idle_timeout`. See [`tcp`].

pub mod tcp;
