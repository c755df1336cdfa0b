//! One generation of the config-derived request state: the applied config, the router, each
//! route's group settings, balancer prototypes and WebSocket counts, the limits, ACLs and
//! budgets, and each route's counter slot.
//!
//! A [`Routing`] is immutable once built and published together with the backend directory's
//! membership (see [`crate::upstream::directory::Membership::routing`]): one version load per
//! request tells a reactor thread that either changed, and a request keeps the pair it started
//! with until its exchange ends. A reload builds the next generation from the previous one,
//! so that what should survive does: a route's counter slot and WebSocket count (by name), its
//! balancer prototype when the route's balancer is unchanged, and the buckets of limits and
//! budgets whose settings are unchanged.

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use switchyard_balance::Balancer;
use switchyard_config::{Config, HashKey, RouteConfig};

use crate::l7::route::Router;
use crate::plugin::{LoadError, Plugins};
use crate::security::{Acls, Budgets, Limits};
use crate::traffic::Rewrite;

/// What a route's backend group does with its members (who the members are is in the
/// directory's membership, as they change with registrations).
#[derive(Debug)]
pub struct Group {
    /// What to hash for the balancer's affinity key, when the balancer uses one.
    pub hash_key: Option<HashKey>,
    /// Whether the balancer reads peak-EWMA latency (only then is it measured).
    pub tracks_latency: bool,
    /// Whether the balancer needs the prompt's block hashes (`prefix_cache`).
    pub wants_prompt: bool,
    /// Whether responses say why their backend was picked (`explain`).
    pub explain: bool,
}

impl Group {
    fn of(r: &RouteConfig) -> Self {
        Group {
            hash_key: (r.balancer == "consistent_hash").then(|| r.hash_key.clone()),
            tracks_latency: r.balancer == "response_time",
            wants_prompt: r.balancer == "prefix_cache",
            explain: r.explain,
        }
    }
}

/// A route's balancer prototype with the membership version it was built for.
pub type Prototype = Arc<Mutex<(u64, Box<dyn Balancer>)>>;

/// One generation of the config-derived request state. See the module documentation.
#[derive(Debug)]
pub struct Routing {
    /// The configuration in force (restart-only settings hold their running values).
    pub config: Arc<Config>,
    /// The routing table.
    pub router: Router,
    /// Per route, its backend group's settings.
    pub groups: Vec<Group>,
    /// Per route, the balancer instance the reactor threads' own instances are made from
    /// (they share what it shares, such as `prefix_cache`'s index), with the membership
    /// version it was built for.
    pub prototypes: Vec<Prototype>,
    /// Per route, WebSocket tunnels open (or being set up) on every thread.
    pub websockets: Vec<Arc<AtomicU32>>,
    /// Per route, the index of its counters in [`crate::observe::Stats`] (stable by name
    /// across reloads).
    pub stat_slots: Vec<usize>,
    /// Counter slots given to new routes by this generation (each thread resets a slot it
    /// last knew under another route as it takes a generation up).
    pub fresh_stat_slots: Vec<usize>,
    /// The `[limit NAME]` rate limits and their buckets.
    pub limits: Limits,
    /// The `[budget NAME]` token budgets.
    pub budgets: Budgets,
    /// The `[acl NAME]` access control lists.
    pub acls: Acls,
    /// Per route, its compiled rewrite rules; `None` when it has none.
    pub rewrites: Vec<Option<Arc<Rewrite>>>,
    /// The `[plugin NAME]` instances, and per route the ones it runs.
    pub plugins: Plugins,
    /// Per route, the index of the route its `mirror` names.
    pub mirror_targets: Vec<Option<usize>>,
}

/// Why a config cannot be applied to the running server.
#[derive(Debug)]
pub enum RoutingError {
    /// More routes than counter slots (fixed at start).
    TooManyRoutes {
        /// Routes in the new config.
        routes: usize,
        /// The slots.
        capacity: usize,
    },
    /// A `[plugin NAME]` could not be loaded.
    Plugin(LoadError),
    /// A route's rewrite rules could not be compiled.
    Rewrite {
        /// The route.
        route: String,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for RoutingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoutingError::TooManyRoutes { routes, capacity } => write!(
                f,
                "the config has {routes} routes; this server has room for {capacity} \
                 (routes at start plus max(16, routes at start)); restart to grow it"
            ),
            RoutingError::Plugin(e) => e.fmt(f),
            RoutingError::Rewrite { route, reason } => {
                write!(f, "[route {route}] rewrite rules: {reason}")
            }
        }
    }
}

impl std::error::Error for RoutingError {}

/// Counter slots for routes of a server started with `routes` routes: room to add as many
/// again (at least 16) by reloads.
pub fn route_capacity(routes: usize) -> usize {
    routes + routes.max(16)
}

impl Routing {
    /// The first generation, for a server starting with `config`.
    pub fn new(config: Arc<Config>) -> Result<Self, RoutingError> {
        let slots = (0..config.routes.len()).collect();
        Self::build(config, None, slots, Vec::new())
    }

    /// The generation after `previous` for `config`, whose routes fit `capacity` counter
    /// slots.
    pub fn next(
        config: Arc<Config>,
        previous: &Routing,
        capacity: usize,
    ) -> Result<Self, RoutingError> {
        if config.routes.len() > capacity {
            return Err(RoutingError::TooManyRoutes {
                routes: config.routes.len(),
                capacity,
            });
        }
        let kept: Vec<Option<usize>> = config
            .routes
            .iter()
            .map(|r| {
                previous
                    .route_index(&r.name)
                    .map(|i| previous.stat_slots[i])
            })
            .collect();
        let mut used = vec![false; capacity];
        for s in kept.iter().flatten() {
            used[*s] = true;
        }
        let mut fresh = Vec::new();
        let mut free = (0..capacity).filter(|s| !used[*s]);
        let slots = kept
            .into_iter()
            .map(|k| {
                k.unwrap_or_else(|| {
                    // Enough free slots: routes <= capacity, and kept ones are distinct.
                    let s = free.next().unwrap_or(0);
                    fresh.push(s);
                    s
                })
            })
            .collect();
        Self::build(config, Some(previous), slots, fresh)
    }

    fn build(
        config: Arc<Config>,
        previous: Option<&Routing>,
        stat_slots: Vec<usize>,
        fresh_stat_slots: Vec<usize>,
    ) -> Result<Self, RoutingError> {
        // The rules were checked with the config; a rule this build of the proxy cannot
        // compile all the same is refused like any other invalid config.
        let rewrites = config
            .routes
            .iter()
            .map(|r| {
                Rewrite::compile(&r.rewrite)
                    .map(|c| c.map(Arc::new))
                    .map_err(|e| RoutingError::Rewrite {
                        route: r.name.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let plugins =
            Plugins::load(&config, previous.map(|p| &p.plugins)).map_err(RoutingError::Plugin)?;
        let same_route =
            |r: &RouteConfig| previous.and_then(|p| p.route_index(&r.name).map(|i| (p, i)));
        let mirror_targets = config
            .routes
            .iter()
            .map(|r| {
                let target = &r.traffic.mirror.as_ref()?.route;
                config.routes.iter().position(|t| t.name == *target)
            })
            .collect();
        Ok(Routing {
            plugins,
            mirror_targets,
            router: Router::new(&config.routes),
            groups: config.routes.iter().map(Group::of).collect(),
            prototypes: config
                .routes
                .iter()
                .map(|r| match same_route(r) {
                    Some((p, i)) if balancer_kept(&p.config.routes[i], r) => {
                        Arc::clone(&p.prototypes[i])
                    }
                    _ => {
                        let b = switchyard_balance::build(&r.balancer, 0)
                            .expect("balancer names are validated with the config");
                        Arc::new(Mutex::new((u64::MAX, b)))
                    }
                })
                .collect(),
            websockets: config
                .routes
                .iter()
                .map(|r| {
                    same_route(r).map_or_else(Arc::default, |(p, i)| Arc::clone(&p.websockets[i]))
                })
                .collect(),
            limits: Limits::reloaded(&config, previous.map(|p| &p.limits)),
            budgets: Budgets::reloaded(&config, previous.map(|p| &p.budgets)),
            acls: Acls::new(&config),
            rewrites,
            stat_slots,
            fresh_stat_slots,
            config,
        })
    }

    /// The index of the route named `name`.
    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.config.routes.iter().position(|r| r.name == name)
    }

    /// A balancer for `route` on a reactor thread whose members are those of membership
    /// version `version`: shared state comes from the route's prototype, rebuilt once per
    /// version (positions in a shared index would not survive a change of members).
    pub fn balancer(&self, route: usize, version: u64, seed: u64) -> Box<dyn Balancer> {
        let name = &self.config.routes[route].balancer;
        let build = || {
            switchyard_balance::build(name, seed)
                .expect("balancer names are validated with the config")
        };
        let mut proto = self.prototypes[route]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if proto.0 != version {
            *proto = (version, build());
        }
        proto.1.share(seed).unwrap_or_else(build)
    }
}

/// Whether a route's balancer (and what it learned) carries over from `old` to `new`: the
/// same balancer with the same affinity key.
pub fn balancer_kept(old: &RouteConfig, new: &RouteConfig) -> bool {
    old.balancer == new.balancer && old.hash_key == new.hash_key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(burst: u32, routes: &[&str]) -> Arc<Config> {
        let mut text = format!(
            "[backend b]\naddress = 127.0.0.1:1\n[limit all]\nkey = global\nrate = 1/m\nburst = {burst}\n"
        );
        for (i, r) in routes.iter().enumerate() {
            text.push_str(&format!(
                "[route {r}]\npath_prefix = /{i}/\nbackends = b\nbalancer = prefix_cache\n"
            ));
        }
        Arc::new(switchyard_config::parse(&text, "t.ini").unwrap())
    }

    fn admitted(r: &Routing) -> bool {
        r.limits
            .check(0, "/0/", &http::HeaderMap::new(), b"127.0.0.1")
            .is_ok()
    }

    #[test]
    fn unchanged_limits_keep_their_buckets_and_changed_ones_start_full() {
        let first = Routing::new(config(1, &["a"])).unwrap();
        assert!(admitted(&first));
        assert!(!admitted(&first));
        let same = Routing::next(config(1, &["a"]), &first, 32).unwrap();
        assert!(!admitted(&same), "the spent bucket carried over");
        let changed = Routing::next(config(2, &["a"]), &same, 32).unwrap();
        assert!(admitted(&changed), "a changed limit starts full");
    }

    #[test]
    fn routes_keep_counter_slots_prototypes_and_websocket_counts_by_name() {
        let first = Routing::new(config(1, &["a", "b"])).unwrap();
        first.websockets[1].store(3, std::sync::atomic::Ordering::Relaxed);
        let next = Routing::next(config(1, &["new", "b"]), &first, 4).unwrap();
        // `new` takes the slot `a` freed (each thread resets it as it takes the generation up).
        assert_eq!(next.stat_slots, [0, 1]);
        assert_eq!(next.fresh_stat_slots, [0]);
        assert_eq!(
            next.websockets[1].load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert!(Arc::ptr_eq(&next.prototypes[1], &first.prototypes[1]));
        assert!(!Arc::ptr_eq(&next.prototypes[0], &first.prototypes[0]));
        let again = Routing::next(config(1, &["c", "b", "new", "d"]), &next, 4).unwrap();
        assert_eq!(again.stat_slots, [2, 1, 0, 3]);
        assert_eq!(again.fresh_stat_slots, [2, 3]);
        assert!(matches!(
            Routing::next(config(1, &["a", "b", "c", "d", "e"]), &again, 4),
            Err(RoutingError::TooManyRoutes {
                routes: 5,
                capacity: 4
            })
        ));
    }
}
