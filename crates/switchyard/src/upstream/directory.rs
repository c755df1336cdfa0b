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

use super::tls::UpstreamTls;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderValue;
use switchyard_balance::outlier::Outlier;
use switchyard_balance::BackendState;
use switchyard_config::{BackendConfig, Config};

use crate::l7::models::ModelTable;

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
    /// The routes (indices) whose groups it belongs to.
    pub routes: Vec<usize>,
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
                .all(|(a, b)| Arc::ptr_eq(a, b))
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
}

impl Membership {
    /// The occupied slots' backends, in slot order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.slots.iter().flatten()
    }
}

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
    /// The routes it joins (indices); all routes when the request named none.
    pub routes: Vec<usize>,
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
    /// room for `max_registered` more.
    /// `tls` holds each static backend's TLS settings, in config order (missing: none).
    pub fn new(
        config: &Config,
        addrs: &[SocketAddr],
        tls: &[Option<Arc<UpstreamTls>>],
        max_registered: usize,
    ) -> Self {
        let mut slots: Vec<Option<Arc<Backend>>> = config
            .backends
            .iter()
            .zip(addrs)
            .enumerate()
            .map(|(i, (b, addr))| {
                let routes = config
                    .routes
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.backends.contains(&b.name))
                    .map(|(ri, _)| ri)
                    .collect();
                Some(Arc::new(Backend {
                    slot: i,
                    generation: i as u64,
                    state: Arc::new(BackendState::new(b.name.clone(), b.weight)),
                    addr: *addr,
                    host: host_header(&b.address.to_string()),
                    source: Source::Static,
                    routes,
                    expires_ms: AtomicU64::new(u64::MAX),
                    outlier: Outlier::default(),
                    tls: tls.get(i).cloned().flatten(),
                    config: b.clone(),
                }))
            })
            .collect();
        let statics = slots.len();
        slots.resize_with(statics + max_registered, || None);
        // Static members in each route's `backends` order.
        let groups = config
            .routes
            .iter()
            .map(|r| {
                let members = r
                    .backends
                    .iter()
                    .filter_map(|name| config.backends.iter().position(|b| &b.name == name))
                    .filter_map(|i| slots[i].clone())
                    .collect();
                Members::build(members)
            })
            .collect();
        Directory {
            version: AtomicU64::new(0),
            current: RwLock::new(Arc::new(Membership {
                version: 0,
                slots,
                groups,
            })),
            writer: Mutex::new(Writer {
                next_generation: statics as u64,
            }),
            statics,
            max_registered,
        }
    }

    /// The version of the current snapshot (cheap: one atomic load).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Membership> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
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
            routes: reg.routes,
            expires_ms: AtomicU64::new(now_ms.saturating_add(reg.ttl.as_millis() as u64)),
            outlier: Outlier::default(),
            tls: None,
            config: reg.config,
        });
        let mut slots = cur.slots.clone();
        slots[slot] = Some(Arc::clone(&backend));
        self.publish(&cur, slots);
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
        self.publish(&cur, slots);
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
        self.publish(&cur, slots);
        gone
    }

    fn registered_slot(&self, cur: &Membership, id: &str) -> Option<usize> {
        (self.statics..cur.slots.len())
            .find(|i| cur.slots[*i].as_ref().is_some_and(|b| b.name() == id))
    }

    /// Builds the groups for `slots` and makes them current. Static members keep their
    /// route order; registered ones follow in slot order.
    fn publish(&self, cur: &Membership, slots: Vec<Option<Arc<Backend>>>) {
        let groups = cur
            .groups
            .iter()
            .enumerate()
            .map(|(route, g)| {
                let mut members: Vec<Arc<Backend>> = g
                    .backends
                    .iter()
                    .filter(|b| !b.is_registered())
                    .cloned()
                    .collect();
                members.extend(
                    slots[self.statics..]
                        .iter()
                        .flatten()
                        .filter(|b| b.routes.contains(&route))
                        .cloned(),
                );
                Members::build(members)
            })
            .collect();
        let version = cur.version + 1;
        let next = Arc::new(Membership {
            version,
            slots,
            groups,
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        self.version.store(version, Ordering::Release);
    }
}

/// A `Host` header value for an address (`localhost` if it is not a valid header value).
pub fn host_header(address: &str) -> HeaderValue {
    HeaderValue::from_str(address).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        switchyard_config::parse(
            "[backend s]\naddress = 127.0.0.1:1\n[route r]\nbackends = s\ndiscovery = true\n",
            "t.ini",
        )
        .unwrap()
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
            routes: vec![0],
        }
    }

    #[test]
    fn registrations_take_free_slots_and_keep_state_when_only_models_change() {
        let c = config();
        let d = Directory::new(&c, &["127.0.0.1:1".parse().unwrap()], &[], 2);
        assert_eq!(d.capacity(), 3);
        let (a, how) = d.register(reg("a", 2, &["m"]), 0).unwrap();
        assert_eq!((a.slot, how), (1, Registered::Created));
        let v = d.version();
        let (a2, how) = d.register(reg("a", 2, &["m", "n"]), 0).unwrap();
        assert_eq!(how, Registered::Updated);
        assert!(Arc::ptr_eq(&a.state, &a2.state) && a.generation == a2.generation);
        assert!(d.version() > v);
        assert_eq!(d.snapshot().groups[0].backends.len(), 2);
        // Another address: a new occupant of the same slot.
        let (a3, _) = d.register(reg("a", 3, &[]), 0).unwrap();
        assert_eq!(a3.slot, 1);
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
