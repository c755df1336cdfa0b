//! How a reactor thread takes up a new directory snapshot (a registration, an expiry, or a
//! reload's new routing generation): one atomic version load per request notices it.

use std::rc::Rc;
use std::sync::Arc;

use switchyard_balance::Balancer;
use switchyard_config::ServerConfig;

use super::Worker;
use crate::routing::balancer_kept;
use crate::upstream::directory::Membership;

impl Worker {
    /// The directory snapshot to use for a request: the thread's own, replaced first when the
    /// directory has published a newer one (one atomic load per request otherwise).
    #[allow(clippy::redundant_allocation)] // see the field
    pub(super) fn membership(&self) -> Rc<Arc<Membership>> {
        if self.shared.directory.version() != self.membership.borrow().version {
            self.refresh_membership();
        }
        Rc::clone(&self.membership.borrow())
    }

    /// A `[server]` setting in force as this thread last saw it (for settings read outside a
    /// request's routing phase: connect timeouts, ejection policy); no reference count taken.
    pub(super) fn server_setting<R>(&self, f: impl FnOnce(&ServerConfig) -> R) -> R {
        f(&self.membership.borrow().routing.config.server)
    }

    /// Takes the directory's current snapshot. A slot with a new occupant loses this thread's
    /// pooled connections and counters of the old one; a route whose members changed gets a
    /// fresh balancer (its per-member state, such as a hash ring or prefix index, refers to
    /// member positions). After a reload, routes are matched by name: one with the same
    /// balancer and members keeps this thread's balancer (and what it learned).
    pub(super) fn refresh_membership(&self) {
        let next = self.shared.directory.snapshot();
        let old = Rc::clone(&self.membership.borrow());
        for (slot, (a, b)) in old.slots.iter().zip(&next.slots).enumerate() {
            let same = match (a, b) {
                (Some(a), Some(b)) => a.generation == b.generation,
                (None, None) => true,
                _ => false,
            };
            if !same {
                self.pool.clear_backend(slot);
                self.h2.clear(slot);
                if let Some(s) = self.stats.backends.get(slot) {
                    s.reset();
                }
                self.stats.pairs.forget_backend(slot);
            }
        }
        let mut balancers = self.balancers.borrow_mut();
        let seed = |route: usize| self.seed.wrapping_add(route as u64);
        if Arc::ptr_eq(&old.routing, &next.routing) {
            for (route, (a, b)) in old.groups.iter().zip(&next.groups).enumerate() {
                if !a.same_members(b) {
                    balancers[route] = next.routing.balancer(route, next.version, seed(route));
                }
            }
        } else {
            // The pairs of routes gone from the config free their entries.
            for slot in &old.routing.stat_slots {
                if !next.routing.stat_slots.contains(slot) {
                    self.stats.pairs.forget_route(*slot);
                }
            }
            let mut previous: Vec<Option<Box<dyn Balancer>>> =
                balancers.drain(..).map(Some).collect();
            let routes = &next.routing.config.routes;
            for (route, r) in routes.iter().enumerate() {
                // A counter slot this thread last knew under another route (or none) starts
                // at zero, even when the thread skipped the generations in between.
                let slot = next.routing.stat_slots[route];
                let known = old
                    .routing
                    .route_index(&r.name)
                    .is_some_and(|i| old.routing.stat_slots[i] == slot);
                if !known {
                    if let Some(s) = self.stats.routes.get(slot) {
                        s.reset();
                    }
                    self.stats.pairs.forget_route(slot);
                }
                let kept = old.routing.route_index(&r.name).filter(|i| {
                    balancer_kept(&old.routing.config.routes[*i], r)
                        && old.groups[*i].same_members(&next.groups[route])
                });
                let balancer = kept
                    .and_then(|i| previous[i].take())
                    .unwrap_or_else(|| next.routing.balancer(route, next.version, seed(route)));
                balancers.push(balancer);
            }
        }
        *self.membership.borrow_mut() = Rc::new(next);
    }
}
