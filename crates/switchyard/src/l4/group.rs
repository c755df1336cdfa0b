//! An `[l4 NAME]` listener's backend group as one reactor thread sees it: the backends, their
//! shared states and the thread's own balancer instance.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use switchyard_balance::{BackendState, Balancer, PickContext};
use switchyard_config::L4Config;

use crate::server::Shared;
use crate::upstream::directory::Backend;

/// Why a listener cannot run.
#[derive(Debug)]
pub enum SetupError {
    /// The balancer name is not registered (the config check should have caught it).
    UnknownBalancer(String),
    /// A backend named by the listener has no static slot in the directory.
    UnknownBackend(String),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::UnknownBalancer(b) => write!(f, "unknown balancer {b:?}"),
            SetupError::UnknownBackend(b) => write!(f, "unknown backend {b:?}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// The backends of one L4 listener and the balancer that picks among them.
pub struct Group {
    /// The backends, in the listener's `backends` order.
    pub backends: Vec<Arc<Backend>>,
    states: Vec<Arc<BackendState>>,
    balancer: RefCell<Box<dyn Balancer>>,
    /// Whether the balancer is `consistent_hash` (the client's IP address is the key).
    hash_client: bool,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("backends", &self.states.len())
            .finish()
    }
}

impl Group {
    /// The group of `[l4 NAME]` `config` on reactor thread `thread`: its backends as the
    /// directory holds them now (static ones by name).
    pub fn new(shared: &Shared, thread: usize, config: &L4Config) -> Result<Self, SetupError> {
        let seed = 0x14_u64
            ^ ((thread as u64 + 1) << 32)
            ^ switchyard_balance::hash_bytes(config.name.as_bytes());
        let balancer = switchyard_balance::build(&config.balancer, seed)
            .ok_or_else(|| SetupError::UnknownBalancer(config.balancer.clone()))?;
        let membership = shared.directory.snapshot();
        let mut backends = Vec::with_capacity(config.backends.len());
        for name in &config.backends {
            let backend = membership
                .backends()
                .find(|b| b.name() == name)
                .cloned()
                .ok_or_else(|| SetupError::UnknownBackend(name.clone()))?;
            backends.push(backend);
        }
        Ok(Group {
            states: backends.iter().map(|b| Arc::clone(&b.state)).collect(),
            backends,
            balancer: RefCell::new(balancer),
            hash_client: config.balancer == "consistent_hash",
        })
    }

    /// How many backends the group has.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether the group has no backends (the config check forbids it).
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The balancer's affinity key for a client at `peer`: its IP address, with
    /// `consistent_hash`.
    pub fn key(&self, peer: SocketAddr) -> Option<u64> {
        self.hash_client.then(|| match peer.ip() {
            IpAddr::V4(a) => switchyard_balance::hash_bytes(&a.octets()),
            IpAddr::V6(a) => switchyard_balance::hash_bytes(&a.octets()),
        })
    }

    /// The index of the backend the balancer picks, none of `tried`; `None` when it picks
    /// none (or one already tried).
    pub fn pick(&self, now_ms: u64, key: Option<u64>, tried: &[usize]) -> Option<usize> {
        let ctx = PickContext {
            now_ms,
            exclude: tried,
            key,
            prefix: &[],
        };
        let i = self.balancer.borrow_mut().pick(&self.states, &ctx)?;
        (!tried.contains(&i) && i < self.backends.len()).then_some(i)
    }
}
