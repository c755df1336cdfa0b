//! The backend directory: which backends exist and which route groups they belong to, static
//! ones from the config and registered ones from the admin API (service discovery).
//!
//! Backends live in a fixed number of *slots*: the static backends take the first slots, in
//! config order, and registered backends take free slots after them, up to a cap. Per-backend
//! tables elsewhere (counters, pools, scrape and health figures) are sized by slot once, at
//! start, so discovery never grows them.
//!
//! The directory publishes immutable [`Membership`] snapshots. A change (register, remove,
//! expire) builds a new snapshot under a writer lock and bumps a version counter; reactor
//! threads compare the counter (one relaxed load per request) and take the new snapshot only
//! when it changed, so the data plane takes no lock and requests already running keep the
//! snapshot, and the backends, they started with. A slot reused by a new backend gets a new
//! *generation*, so pooled connections and counters of the old occupant are never mistaken for
//! the new one's.
//!
//! Each snapshot also carries the [`Routing`] generation it goes with (routes, groups'
//! settings, limits...), so one version load gives a consistent pair. A reload
//! ([`Directory::reconfigure`]) re-resolves the static backends by name: the same name and
//! settings keep their `Backend` (state, pooled connections, counters); changed settings make a
//! new generation in the same slot; new names take free static slots (there is headroom, see
//! [`static_capacity`]); removed ones free theirs. Registered backends keep their slots and
//! join routes by name.

use super::tls::UpstreamTls;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderValue;
use switchyard_balance::outlier::Outlier;
use switchyard_balance::BackendState;
use switchyard_config::BackendConfig;

use crate::l7::models::ModelTable;
use crate::routing::Routing;

/// Where a backend came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `[backend]` section of the config.
    Static,
    /// `POST /admin/backends`; removed when its TTL lapses without a heartbeat.
    Registered {
        /// Time to live after registration or the last heartbeat.
        ttl: Duration,
    },
}

/// One backend in its slot.
#[derive(Debug)]
pub struct Backend {
    /// Its slot: the index of its counters, pool and figures.
    pub slot: usize,
    /// Distinguishes successive occupants of the same slot.
    pub generation: u64,
    /// Its settings (a registered backend's are built from the registration).
    pub config: BackendConfig,
    /// What balancers look at.
    pub state: Arc<BackendState>,
    /// The resolved address.
    pub addr: SocketAddr,
    /// Its address as a `Host` value, for requests that came without one.
    pub host: HeaderValue,
    /// Static or registered.
    pub source: Source,
    /// For a registered backend, the names of the routes it joins (a static backend's are
    /// the routes that list it).
    pub route_names: Vec<String>,
    /// For a registered backend, when it lapses (clock milliseconds); `u64::MAX` otherwise.
    pub expires_ms: AtomicU64,
    /// Its run of failures and ejections (passive health).
    pub outlier: Outlier,
    /// With `tls = true`, how to open TLS to it.
    pub tls: Option<Arc<UpstreamTls>>,
}

impl Backend {
    /// The backend's name (a registered backend's is its id).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether re-registering as `reg` keeps this backend's state, counters and pooled
    /// connections (and its scraper and health check): the same address, weight, metrics and
    /// health check; only models, routes or TTL change.
    fn keeps_state(&self, reg: &Registration) -> bool {
        self.addr == reg.addr
            && self.config.address == reg.config.address
            && self.config.weight == reg.config.weight
            && self.config.metrics == reg.config.metrics
            && self.config.health == reg.config.health
            && self.config.protocol == reg.config.protocol
    }

    /// Whether it came from the admin API.
    pub fn is_registered(&self) -> bool {
        matches!(self.source, Source::Registered { .. })
    }
}

/// A route's backend group in one snapshot.
#[derive(Debug, Default)]
pub struct Members {
    /// The members, static ones in the route's `backends` order, then registered ones.
    pub backends: Vec<Arc<Backend>>,
    /// The same members' states, in the same order (what balancers take).
    pub states: Vec<Arc<BackendState>>,
    /// Which members serve which model, when any member declares `models`.
    pub models: Option<ModelTable>,
}

impl Members {
    fn build(backends: Vec<Arc<Backend>>) -> Self {
        let configs: Vec<&BackendConfig> = backends.iter().map(|b| &b.config).collect();
        let models = ModelTable::new(&configs);
        Members {
            states: backends.iter().map(|b| Arc::clone(&b.state)).collect(),
            backends,
            models,
        }
    }

    /// Whether two groups have the same members in the same order (same occupants).
    pub fn same_members(&self, other: &Members) -> bool {
        self.backends.len() == other.backends.len()
            && self
                .backends
                .iter()
                .zip(&other.backends)
                .all(|(a, b)| a.slot == b.slot && a.generation == b.generation)
    }
}

/// One immutable view of every backend and group.
#[derive(Debug)]
pub struct Membership {
    /// The version this snapshot was published as.
    pub version: u64,
    /// Every slot, occupied or not.
    pub slots: Vec<Option<Arc<Backend>>>,
    /// Per route, its group.
    pub groups: Vec<Members>,
    /// The routes and everything else derived from the config, this snapshot's generation.
    pub routing: Arc<Routing>,
}

impl Membership {
    /// The occupied slots' backends, in slot order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.slots.iter().flatten()
    }

    /// The names of the routes whose groups `b` is in.
    pub fn routes_of(&self, b: &Backend) -> Vec<&str> {
        self.groups
            .iter()
            .zip(&self.routing.config.routes)
            .filter(|(g, _)| g.backends.iter().any(|m| m.slot == b.slot))
            .map(|(_, r)| r.name.as_str())
            .collect()
    }
}

/// Slots for static backends of a server started with `statics` of them: room to add as
/// many again (at least 16) by reloads.
pub fn static_capacity(statics: usize) -> usize {
    statics + statics.max(16)
}

/// A static backend of a config being applied, its address resolved.
#[derive(Debug, Clone)]
pub struct StaticBackend {
    /// Its settings.
    pub config: BackendConfig,
    /// The resolved address.
    pub addr: SocketAddr,
    /// With `tls = true`, how to open TLS to it.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// Why a config's static backends cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconfigureError {
    /// More static backends than static slots (fixed at start).
    TooManyBackends {
        /// Static backends in the new config.
        backends: usize,
        /// The slots.
        capacity: usize,
    },
    /// A new static backend has a registered backend's name.
    RegisteredName(String),
}

impl fmt::Display for ReconfigureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconfigureError::TooManyBackends { backends, capacity } => write!(
                f,
                "the config has {backends} backends; this server has room for {capacity} \
                 static backends (backends at start plus max(16, backends at start)); \
                 restart to grow it"
            ),
            ReconfigureError::RegisteredName(n) => write!(
                f,
                "[backend {n}]: {n:?} is a registered backend's id; remove the registration \
                 (DELETE /admin/backends/{n}) or pick another name"
            ),
        }
    }
}

impl std::error::Error for ReconfigureError {}

/// A registration request, already validated (see [`crate::admin::backends`]).
#[derive(Debug, Clone)]
pub struct Registration {
    /// The id; also the backend's name.
    pub id: String,
    /// Its settings; `name` equals `id`.
    pub config: BackendConfig,
    /// The resolved address.
    pub addr: SocketAddr,
    /// Time to live.
    pub ttl: Duration,
    /// The names of the routes it joins (it rejoins them by name after a reload); all open
    /// routes when the request named none.
    pub routes: Vec<String>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// Every slot for registered backends is taken.
    Full {
        /// The cap (`max_registered_backends`).
        max: usize,
    },
    /// The id is a static backend's name.
    StaticName(String),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Full { max } => write!(
                f,
                "all {max} slots for registered backends are taken (max_registered_backends)"
            ),
            RegisterError::StaticName(n) => {
                write!(
                    f,
                    "{n:?} is a static backend of the config; pick another id"
                )
            }
        }
    }
}

impl std::error::Error for RegisterError {}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new backend.
    Created,
    /// An existing registration with the same id was updated (see `Backend::keeps_state`:
    /// it keeps its state and pooled connections, or becomes a new occupant of its slot).
    Updated,
}

/// The directory. See the module documentation.
#[derive(Debug)]
pub struct Directory {
    version: AtomicU64,
    current: RwLock<Arc<Membership>>,
    writer: Mutex<Writer>,
    statics: usize,
    max_registered: usize,
}

#[derive(Debug)]
struct Writer {
    next_generation: u64,
}

impl Directory {
    /// The directory of a config's static backends (`addrs` resolved, in config order), with
    /// room for more static ones (see [`static_capacity`]) and `max_registered` registered
    /// ones. `tls` holds each static backend's TLS settings, in config order (missing: none).
    pub fn new(
        routing: Arc<Routing>,
        addrs: &[SocketAddr],
        tls: &[Option<Arc<UpstreamTls>>],
        max_registered: usize,
    ) -> Self {
        let config = Arc::clone(&routing.config);
        let mut slots: Vec<Option<Arc<Backend>>> = config
            .backends
            .iter()
            .zip(addrs)
            .enumerate()
            .map(|(i, (b, addr))| {
                Some(Arc::new(static_backend(
                    i,
                    i as u64,
                    StaticBackend {
                        config: b.clone(),
                        addr: *addr,
                        tls: tls.get(i).cloned().flatten(),
                    },
                )))
            })
            .collect();
        let statics = static_capacity(slots.len());
        let first = slots.len();
        slots.resize_with(statics + max_registered, || None);
        let groups = groups(&routing, &slots, statics);
        Directory {
            version: AtomicU64::new(0),
            current: RwLock::new(Arc::new(Membership {
                version: 0,
                slots,
                groups,
                routing,
            })),
            writer: Mutex::new(Writer {
                next_generation: first as u64,
            }),
            statics,
            max_registered,
        }
    }

    /// Applies a reloaded config: `routing` (its generation) with its static backends
    /// `backends` (config order), all published in one new snapshot. See the module
    /// documentation for what each backend keeps. Nothing changes on an error.
    pub fn reconfigure(
        &self,
        routing: Arc<Routing>,
        backends: Vec<StaticBackend>,
    ) -> Result<(), ReconfigureError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.snapshot();
        self.check_against(&cur, &backends)?;
        let mut slots = cur.slots.clone();
        // Statics gone from the config free their slots.
        for s in slots[..self.statics].iter_mut() {
            if s.as_ref()
                .is_some_and(|b| !backends.iter().any(|n| n.config.name == b.name()))
            {
                *s = None;
            }
        }
        for b in backends {
            let existing = (0..self.statics).find(|i| {
                slots[*i]
                    .as_ref()
                    .is_some_and(|o| o.name() == b.config.name)
            });
            match existing {
                Some(i) => {
                    let old = slots[i].as_ref().expect("found occupied");
                    let same = old.config == b.config
                        && old.addr == b.addr
                        && old.tls.is_some() == b.tls.is_some();
                    if !same {
                        w.next_generation += 1;
                        slots[i] = Some(Arc::new(static_backend(i, w.next_generation, b)));
                    }
                }
                None => {
                    // Room: at most `statics` backends, and each has at most one slot.
                    let i = (0..self.statics)
                        .find(|i| slots[*i].is_none())
                        .expect("a free static slot");
                    w.next_generation += 1;
                    slots[i] = Some(Arc::new(static_backend(i, w.next_generation, b)));
                }
            }
        }
        self.publish(&cur, routing, slots);
        Ok(())
    }

    /// The version of the current snapshot (cheap: one atomic load).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Membership> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether [`Directory::reconfigure`] would take `backends` as things stand.
    pub fn check_statics(&self, backends: &[StaticBackend]) -> Result<(), ReconfigureError> {
        self.check_against(&self.snapshot(), backends)
    }

    fn check_against(
        &self,
        cur: &Membership,
        backends: &[StaticBackend],
    ) -> Result<(), ReconfigureError> {
        if backends.len() > self.statics {
            return Err(ReconfigureError::TooManyBackends {
                backends: backends.len(),
                capacity: self.statics,
            });
        }
        match backends
            .iter()
            .find(|b| self.registered_slot(cur, &b.config.name).is_some())
        {
            Some(b) => Err(ReconfigureError::RegisteredName(b.config.name.clone())),
            None => Ok(()),
        }
    }

    /// Slots for static backends (those at start plus headroom for reloads).
    pub fn static_slots(&self) -> usize {
        self.statics
    }

    /// Slots in all: static backends plus room for registered ones.
    pub fn capacity(&self) -> usize {
        self.statics + self.max_registered
    }

    /// The cap on registered backends.
    pub fn max_registered(&self) -> usize {
        self.max_registered
    }

    /// Registers a backend, or updates the registration with the same id.
    pub fn register(
        &self,
        reg: Registration,
        now_ms: u64,
    ) -> Result<(Arc<Backend>, Registered), RegisterError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.snapshot();
        if cur.slots[..self.statics]
            .iter()
            .flatten()
            .any(|b| b.name() == reg.id)
        {
            return Err(RegisterError::StaticName(reg.id));
        }
        let existing = cur.slots[self.statics..]
            .iter()
            .flatten()
            .find(|b| b.name() == reg.id)
            .cloned();
        let (slot, generation, state, outcome) = match &existing {
            Some(old) if old.keeps_state(&reg) => (
                old.slot,
                old.generation,
                Arc::clone(&old.state),
                Registered::Updated,
            ),
            Some(old) => {
                w.next_generation += 1;
                let state = Arc::new(BackendState::new(reg.id.clone(), reg.config.weight));
                (old.slot, w.next_generation, state, Registered::Updated)
            }
            None => {
                let slot = (self.statics..cur.slots.len())
                    .find(|i| cur.slots[*i].is_none())
                    .ok_or(RegisterError::Full {
                        max: self.max_registered,
                    })?;
                w.next_generation += 1;
                let state = Arc::new(BackendState::new(reg.id.clone(), reg.config.weight));
                (slot, w.next_generation, state, Registered::Created)
            }
        };
        let backend = Arc::new(Backend {
            slot,
            generation,
            state,
            addr: reg.addr,
            host: host_header(&reg.config.address.to_string()),
            source: Source::Registered { ttl: reg.ttl },
            route_names: reg.routes,
            expires_ms: AtomicU64::new(now_ms.saturating_add(reg.ttl.as_millis() as u64)),
            outlier: Outlier::default(),
            tls: None,
            config: reg.config,
        });
        let mut slots = cur.slots.clone();
        slots[slot] = Some(Arc::clone(&backend));
        self.publish(&cur, Arc::clone(&cur.routing), slots);
        Ok((backend, outcome))
    }

    /// Removes the registered backend `id`; `false` if there is none.
    pub fn remove(&self, id: &str) -> bool {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.snapshot();
        let Some(slot) = self.registered_slot(&cur, id) else {
            return false;
        };
        let mut slots = cur.slots.clone();
        slots[slot] = None;
        self.publish(&cur, Arc::clone(&cur.routing), slots);
        true
    }

    /// Extends the registered backend `id` by its TTL from `now_ms`; the new expiry, or `None`
    /// if there is no such registration.
    pub fn heartbeat(&self, id: &str, now_ms: u64) -> Option<u64> {
        let cur = self.snapshot();
        let b = cur.slots[self.registered_slot(&cur, id)?].as_ref()?;
        let Source::Registered { ttl } = b.source else {
            return None;
        };
        let until = now_ms.saturating_add(ttl.as_millis() as u64);
        b.expires_ms.store(until, Ordering::Relaxed);
        Some(until)
    }

    /// Removes every registered backend whose TTL lapsed by `now_ms`; their names.
    pub fn expire(&self, now_ms: u64) -> Vec<String> {
        let cur = self.snapshot();
        if !cur
            .backends()
            .any(|b| b.expires_ms.load(Ordering::Relaxed) <= now_ms)
        {
            return Vec::new();
        }
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.snapshot();
        let mut slots = cur.slots.clone();
        let mut gone = Vec::new();
        for s in slots.iter_mut() {
            if s.as_ref()
                .is_some_and(|b| b.expires_ms.load(Ordering::Relaxed) <= now_ms)
            {
                if let Some(b) = s.take() {
                    gone.push(b.name().to_string());
                }
            }
        }
        self.publish(&cur, Arc::clone(&cur.routing), slots);
        gone
    }

    fn registered_slot(&self, cur: &Membership, id: &str) -> Option<usize> {
        (self.statics..cur.slots.len())
            .find(|i| cur.slots[*i].as_ref().is_some_and(|b| b.name() == id))
    }

    /// Makes `slots` with `routing` current, as the next version.
    fn publish(&self, cur: &Membership, routing: Arc<Routing>, slots: Vec<Option<Arc<Backend>>>) {
        let groups = groups(&routing, &slots, self.statics);
        let version = cur.version + 1;
        let next = Arc::new(Membership {
            version,
            slots,
            groups,
            routing,
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        self.version.store(version, Ordering::Release);
    }
}

/// Each route's group: its static members in the route's `backends` order, then the
/// registered backends that joined it (by route name), in slot order.
fn groups(routing: &Routing, slots: &[Option<Arc<Backend>>], statics: usize) -> Vec<Members> {
    routing
        .config
        .routes
        .iter()
        .map(|r| {
            let mut members: Vec<Arc<Backend>> = r
                .backends
                .iter()
                .filter_map(|name| slots[..statics].iter().flatten().find(|b| b.name() == name))
                .cloned()
                .collect();
            members.extend(
                slots[statics..]
                    .iter()
                    .flatten()
                    .filter(|b| b.route_names.contains(&r.name))
                    .cloned(),
            );
            Members::build(members)
        })
        .collect()
}

fn static_backend(slot: usize, generation: u64, b: StaticBackend) -> Backend {
    Backend {
        slot,
        generation,
        state: Arc::new(BackendState::new(b.config.name.clone(), b.config.weight)),
        addr: b.addr,
        host: host_header(&b.config.address.to_string()),
        source: Source::Static,
        route_names: Vec::new(),
        expires_ms: AtomicU64::new(u64::MAX),
        outlier: Outlier::default(),
        tls: b.tls,
        config: b.config,
    }
}

/// A `Host` header value for an address (`localhost` if it is not a valid header value).
pub fn host_header(address: &str) -> HeaderValue {
    HeaderValue::from_str(address).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::Config;

    fn config() -> Config {
        switchyard_config::parse(
            "[backend s]\naddress = 127.0.0.1:1\n[route r]\nbackends = s\ndiscovery = true\n",
            "t.ini",
        )
        .unwrap()
    }

    fn directory(c: Config, max_registered: usize) -> Directory {
        let addrs: Vec<SocketAddr> = c
            .backends
            .iter()
            .map(|b| format!("127.0.0.1:{}", b.address.port).parse().unwrap())
            .collect();
        Directory::new(
            Arc::new(Routing::new(Arc::new(c)).unwrap()),
            &addrs,
            &[],
            max_registered,
        )
    }

    fn statics(c: &Config) -> Vec<StaticBackend> {
        c.backends
            .iter()
            .map(|b| StaticBackend {
                config: b.clone(),
                addr: format!("127.0.0.1:{}", b.address.port).parse().unwrap(),
                tls: None,
            })
            .collect()
    }

    fn names(g: &Members) -> Vec<&str> {
        g.backends.iter().map(|b| b.name()).collect()
    }

    #[test]
    fn reconfigure_keeps_unchanged_statics_and_registered_backends_rejoin_by_route_name() {
        let d = directory(config(), 2);
        d.register(reg("dyn", 9, &[]), 0).unwrap();
        let before = d.snapshot();
        let s = Arc::clone(before.slots[0].as_ref().unwrap());
        // Route `r` moves after a new route, gains backend `t`; `s` is unchanged.
        let c = switchyard_config::parse(
            "[backend s]\naddress = 127.0.0.1:1\n[backend t]\naddress = 127.0.0.1:2\n\
             [route first]\npath_prefix = /x/\nbackends = t\n\
             [route r]\nbackends = s, t\ndiscovery = true\n",
            "t.ini",
        )
        .unwrap();
        let routing = Routing::next(Arc::new(c.clone()), &before.routing, 32).unwrap();
        d.reconfigure(Arc::new(routing), statics(&c)).unwrap();
        let after = d.snapshot();
        assert!(after.version > before.version);
        let s2 = after.slots[0].as_ref().unwrap();
        assert!(Arc::ptr_eq(&s, s2), "unchanged backend keeps its Backend");
        assert_eq!(after.slots[1].as_ref().unwrap().name(), "t");
        assert_eq!(names(&after.groups[0]), ["t"]);
        assert_eq!(names(&after.groups[1]), ["s", "t", "dyn"]);
        // Route `r` kept its counter slot; `first` got a fresh one.
        assert_eq!(after.routing.stat_slots[1], before.routing.stat_slots[0]);
        assert_eq!(
            after.routing.fresh_stat_slots,
            [after.routing.stat_slots[0]]
        );
        // `s` changes weight: a new generation in its slot; `t` goes: its slot is freed.
        let c2 = switchyard_config::parse(
            "[backend s]\naddress = 127.0.0.1:1\nweight = 3\n[route r]\nbackends = s\n",
            "t.ini",
        )
        .unwrap();
        let routing = Routing::next(Arc::new(c2.clone()), &after.routing, 32).unwrap();
        d.reconfigure(Arc::new(routing), statics(&c2)).unwrap();
        let last = d.snapshot();
        let s3 = last.slots[0].as_ref().unwrap();
        assert_eq!(s3.slot, 0);
        assert_ne!(s3.generation, s.generation);
        assert!(last.slots[1].is_none());
        // The route no longer has discovery... but `dyn` joined it by name and stays.
        assert_eq!(names(&last.groups[0]), ["s", "dyn"]);
        // A static backend named like a registration is refused; so are too many statics.
        let c3 = switchyard_config::parse(
            "[backend dyn]\naddress = 127.0.0.1:1\n[route r]\nbackends = dyn\n",
            "t.ini",
        )
        .unwrap();
        let routing = Routing::next(Arc::new(c3.clone()), &last.routing, 32).unwrap();
        assert_eq!(
            d.reconfigure(Arc::new(routing), statics(&c3)).unwrap_err(),
            ReconfigureError::RegisteredName("dyn".into())
        );
        let many: Vec<StaticBackend> = (0..18)
            .map(|i| {
                let mut b = statics(&c2).remove(0);
                b.config.name = format!("b{i}");
                b
            })
            .collect();
        assert!(matches!(
            d.check_statics(&many),
            Err(ReconfigureError::TooManyBackends {
                backends: 18,
                capacity: 17
            })
        ));
        assert_eq!(
            d.snapshot().version,
            last.version,
            "refusals change nothing"
        );
    }

    fn reg(id: &str, port: u16, models: &[&str]) -> Registration {
        let address: switchyard_config::Address = format!("127.0.0.1:{port}").parse().unwrap();
        Registration {
            id: id.into(),
            config: BackendConfig {
                name: id.into(),
                address,
                weight: 1,
                metrics: None,
                models: models.iter().map(|m| m.parse().unwrap()).collect(),
                health: None,
                protocol: Default::default(),
                tls: None,
            },
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            ttl: Duration::from_secs(10),
            routes: vec!["r".into()],
        }
    }

    #[test]
    fn registrations_take_free_slots_and_keep_state_when_only_models_change() {
        let d = directory(config(), 2);
        assert_eq!(d.capacity(), 17 + 2);
        let (a, how) = d.register(reg("a", 2, &["m"]), 0).unwrap();
        assert_eq!((a.slot, how), (17, Registered::Created));
        let v = d.version();
        let (a2, how) = d.register(reg("a", 2, &["m", "n"]), 0).unwrap();
        assert_eq!(how, Registered::Updated);
        assert!(Arc::ptr_eq(&a.state, &a2.state) && a.generation == a2.generation);
        assert!(d.version() > v);
        assert_eq!(d.snapshot().groups[0].backends.len(), 2);
        // Another address: a new occupant of the same slot.
        let (a3, _) = d.register(reg("a", 3, &[]), 0).unwrap();
        assert_eq!(a3.slot, 17);
        assert!(a3.generation != a2.generation && !Arc::ptr_eq(&a2.state, &a3.state));
        d.register(reg("b", 4, &[]), 0).unwrap();
        assert_eq!(
            d.register(reg("c", 5, &[]), 0).unwrap_err(),
            RegisterError::Full { max: 2 }
        );
        assert_eq!(
            d.register(reg("s", 5, &[]), 0).unwrap_err(),
            RegisterError::StaticName("s".into())
        );
        // Expiry removes both registrations (TTL 10 s), not the static backend.
        assert_eq!(d.expire(10_000).len(), 2);
        let names: Vec<String> = d
            .snapshot()
            .backends()
            .map(|b| b.name().to_string())
            .collect();
        assert_eq!(names, ["s"]);
        assert!(d.heartbeat("a", 10_000).is_none());
        assert!(!d.remove("a"));
    }
}
