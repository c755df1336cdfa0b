//! The table of balancers by name.
//!
//! Adding an algorithm is a new file with a constructor plus one line in [`REGISTRY`].

use crate::{
    consistent_hash, gpu, least_conn, least_queue, prefix_cache, response_time, round_robin,
    Balancer,
};

/// A constructor: `seed` feeds any randomness the algorithm uses, so that each reactor thread
/// (which owns its own balancer instances) makes independent choices and tests can be
/// deterministic.
pub type Constructor = fn(seed: u64) -> Box<dyn Balancer>;

/// Every balancer switchyard knows, by the name used in `balancer = NAME`.
pub const REGISTRY: &[(&str, Constructor)] = &[
    ("round_robin", round_robin::new),
    ("least_conn", least_conn::new_p2c),
    ("least_conn_strict", least_conn::new_strict),
    ("consistent_hash", consistent_hash::new),
    ("response_time", response_time::new),
    ("least_queue", least_queue::new),
    ("gpu", gpu::new),
    ("prefix_cache", prefix_cache::new),
];

/// The names accepted by `balancer = NAME`, in registration order.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|(name, _)| *name)
}

/// Whether `name` names a registered balancer.
pub fn is_known(name: &str) -> bool {
    REGISTRY.iter().any(|(n, _)| *n == name)
}

/// Builds the balancer registered as `name`, or `None` if there is none.
pub fn build(name: &str, seed: u64) -> Option<Box<dyn Balancer>> {
    REGISTRY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ctor)| ctor(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_name_builds_a_balancer_of_that_name() {
        for name in names() {
            assert_eq!(build(name, 0).expect(name).name(), name);
        }
        assert!(build("nope", 0).is_none());
        assert!(is_known("least_conn") && !is_known("Least_Conn"));
    }
}
