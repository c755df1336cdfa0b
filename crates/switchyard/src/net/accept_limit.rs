//! The accept limiter: in front of everything else on a listener (before any TLS or HTTP
//! parsing), a cap on connections open at once over the whole process, and per client IP a
//! cap on open connections and on new connections per second, with an optional ban of an IP
//! that keeps going over. A refused connection is closed at once and counted.
//!
//! The state is one table of IPs in shards, each behind a mutex held for one lookup (the
//! accept path, not the per-request path), with no clock of its own: callers pass the time in
//! milliseconds, so every rule is tested with a controllable clock. The table holds at most
//! `max_tracked` IPs; when a shard is full, an IP with nothing open and no ban or rate debt
//! left makes room; if there is none, a new IP is admitted untracked (only the global cap
//! applies to it) and counted, so a flood of distinct addresses costs bounded memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Shards of the IP table.
const SHARDS: usize = 16;

/// The limits (`[server]` keys; 0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptLimits {
    /// `max_connections`: connections open at once, all listeners and IPs together.
    pub max_connections: usize,
    /// `max_connections_per_ip`: connections one IP may have open at once.
    pub per_ip: u32,
    /// `max_connection_rate_per_ip`: new connections one IP may open per second (a burst of
    /// as many at once).
    pub rate_per_ip: u32,
    /// `ban_after`: refusals of one IP, in a row without an admitted connection, after which
    /// it is banned.
    pub ban_after: u32,
    /// `ban_time`: how long a ban lasts, in milliseconds.
    pub ban_ms: u64,
    /// IPs tracked at most.
    pub max_tracked: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Global,
    /// The IP has `max_connections_per_ip` open.
    PerIp,
    /// The IP opened connections faster than `max_connection_rate_per_ip`.
    Rate,
    /// The IP is banned.
    Banned,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    open: u32,
    /// GCRA theoretical arrival time, in milliseconds.
    tat_ms: u64,
    refusals: u32,
    banned_until_ms: u64,
}

/// Counters for `/stats`.
#[derive(Debug, Default)]
pub struct AcceptCounters {
    /// Refused by `max_connections`.
    pub global: AtomicU64,
    /// Refused by `max_connections_per_ip`.
    pub per_ip: AtomicU64,
    /// Refused by `max_connection_rate_per_ip`.
    pub rate: AtomicU64,
    /// Refused during a ban.
    pub banned: AtomicU64,
    /// Bans started.
    pub bans: AtomicU64,
    /// Admitted without per-IP tracking because the table was full.
    pub untracked: AtomicU64,
}

/// The limiter, shared by every reactor thread.
#[derive(Debug)]
pub struct AcceptLimiter {
    limits: AcceptLimits,
    open: AtomicUsize,
    shards: Vec<Mutex<HashMap<IpAddr, Entry>>>,
    hasher: RandomState,
    /// The counters.
    pub counters: AcceptCounters,
}

/// An admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<AcceptLimiter>,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.open.fetch_sub(1, Relaxed);
        if let Some(ip) = self.ip {
            let mut shard = self.limiter.shard(ip);
            if let Some(e) = shard.get_mut(&ip) {
                e.open = e.open.saturating_sub(1);
            }
        }
    }
}

impl AcceptLimiter {
    /// A limiter with `limits`; `None` when every limit is off.
    pub fn new(limits: AcceptLimits) -> Option<Arc<Self>> {
        let on = limits.max_connections > 0 || limits.per_ip > 0 || limits.rate_per_ip > 0;
        on.then(|| {
            Arc::new(AcceptLimiter {
                limits,
                open: AtomicUsize::new(0),
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                counters: AcceptCounters::default(),
            })
        })
    }

    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        let i = (self.hasher.hash_one(ip) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// IPs tracked now.
    pub fn tracked(&self) -> usize {
        (0..SHARDS)
            .map(|i| self.shards[i].lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Admits a new connection from `ip` at `now_ms`, or says why not (counted).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now_ms: u64) -> Result<Permit, Refusal> {
        let l = &self.limits;
        let per_ip_rules = l.per_ip > 0 || l.rate_per_ip > 0;
        let mut shard = self.shard(ip);
        let cap = l.max_tracked.div_ceil(SHARDS).max(1);
        if per_ip_rules && !shard.contains_key(&ip) && shard.len() >= cap {
            // Room for a newcomer: an IP with nothing open, no ban and no rate debt.
            let idle = shard
                .iter()
                .find(|(_, e)| e.open == 0 && e.banned_until_ms <= now_ms && e.tat_ms <= now_ms)
                .map(|(k, _)| *k);
            if let Some(k) = idle {
                shard.remove(&k);
            }
        }
        let tracked = per_ip_rules && (shard.contains_key(&ip) || shard.len() < cap);
        let verdict = if tracked {
            let e = shard.entry(ip).or_default();
            check_ip(e, l, now_ms)
        } else {
            Ok(())
        };
        let verdict = verdict.and_then(|()| {
            if l.max_connections > 0 && self.open.load(Relaxed) >= l.max_connections {
                Err(Refusal::Global)
            } else {
                Ok(())
            }
        });
        match verdict {
            Ok(()) => {
                if tracked {
                    let e = shard.entry(ip).or_default();
                    e.open += 1;
                    e.refusals = 0;
                    if l.rate_per_ip > 0 {
                        // GCRA: one connection every `interval`, a burst of `rate_per_ip`.
                        let interval = 1000 / u64::from(l.rate_per_ip).max(1);
                        e.tat_ms = e.tat_ms.max(now_ms) + interval.max(1);
                    }
                } else if per_ip_rules {
                    self.counters.untracked.fetch_add(1, Relaxed);
                }
                self.open.fetch_add(1, Relaxed);
                Ok(Permit {
                    limiter: Arc::clone(self),
                    ip: tracked.then_some(ip),
                })
            }
            Err(why) => {
                if tracked {
                    let e = shard.entry(ip).or_default();
                    if why != Refusal::Banned {
                        e.refusals += 1;
                        if l.ban_after > 0 && e.refusals >= l.ban_after {
                            e.banned_until_ms = now_ms + l.ban_ms;
                            e.refusals = 0;
                            self.counters.bans.fetch_add(1, Relaxed);
                        }
                    }
                }
                let counter = match why {
                    Refusal::Global => &self.counters.global,
                    Refusal::PerIp => &self.counters.per_ip,
                    Refusal::Rate => &self.counters.rate,
                    Refusal::Banned => &self.counters.banned,
                };
                counter.fetch_add(1, Relaxed);
                Err(why)
            }
        }
    }
}

/// The per-IP rules, in order: a ban, the open cap, the rate.
fn check_ip(e: &Entry, l: &AcceptLimits, now_ms: u64) -> Result<(), Refusal> {
    if e.banned_until_ms > now_ms {
        return Err(Refusal::Banned);
    }
    if l.per_ip > 0 && e.open >= l.per_ip {
        return Err(Refusal::PerIp);
    }
    if l.rate_per_ip > 0 {
        let interval = (1000 / u64::from(l.rate_per_ip).max(1)).max(1);
        let burst = interval * u64::from(l.rate_per_ip);
        // Admitted while the debt ahead of now stays within the burst.
        if e.tat_ms.saturating_sub(now_ms) + interval > burst {
            return Err(Refusal::Rate);
        }
    }
    Ok(())
}

/// The limits of `[server]`'s accept keys; `None` when they are all off.
pub fn from_config(a: &switchyard_config::AcceptSettings) -> Option<Arc<AcceptLimiter>> {
    AcceptLimiter::new(AcceptLimits {
        max_connections: a.max_connections,
        per_ip: a.max_connections_per_ip,
        rate_per_ip: a.max_connection_rate_per_ip,
        ban_after: a.ban_after,
        ban_ms: a.ban_time.as_millis() as u64,
        max_tracked: a.max_tracked_ips,
    })
}

/// Admits a connection just accepted from `peer`: `Ok(None)` without limits, `Ok(permit)` to
/// hold for the connection's life, or the reason it is to be closed at once (counted).
pub fn check(
    shared: &crate::server::Shared,
    peer: std::net::SocketAddr,
) -> Result<Option<Permit>, Refusal> {
    let Some(limiter) = &shared.accept_limit else {
        return Ok(None);
    };
    let now = shared.clock.ms_at(crate::clock::coarse_now());
    limiter.admit(peer.ip(), now).map(Some)
}

/// The limiter's figures for `/stats` (`accept`).
pub fn report(limiter: Option<&Arc<AcceptLimiter>>) -> serde_json::Value {
    let Some(l) = limiter else {
        return serde_json::json!({ "enabled": false });
    };
    let c = &l.counters;
    serde_json::json!({
        "enabled": true,
        "open": l.open(),
        "tracked_ips": l.tracked(),
        "refused_global": c.global.load(Relaxed),
        "refused_per_ip": c.per_ip.load(Relaxed),
        "refused_rate": c.rate.load(Relaxed),
        "refused_banned": c.banned.load(Relaxed),
        "bans": c.bans.load(Relaxed),
        "untracked": c.untracked.load(Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AcceptLimits {
        AcceptLimits {
            max_connections: 0,
            per_ip: 0,
            rate_per_ip: 0,
            ban_after: 0,
            ban_ms: 0,
            max_tracked: 1024,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn every_limit_off_is_no_limiter() {
        assert!(AcceptLimiter::new(limits()).is_none());
    }

    #[test]
    fn the_per_ip_cap_refuses_the_next_and_frees_on_close() {
        let l = AcceptLimiter::new(AcceptLimits {
            per_ip: 2,
            ..limits()
        })
        .unwrap();
        let a = l.admit(ip(1), 0).unwrap();
        let _b = l.admit(ip(1), 0).unwrap();
        assert_eq!(l.admit(ip(1), 0).unwrap_err(), Refusal::PerIp);
        // Another IP is unaffected.
        let _c = l.admit(ip(2), 0).unwrap();
        drop(a);
        assert!(l.admit(ip(1), 0).is_ok());
        assert_eq!(l.counters.per_ip.load(Relaxed), 1);
    }

    #[test]
    fn the_global_cap_counts_every_ip() {
        let l = AcceptLimiter::new(AcceptLimits {
            max_connections: 3,
            ..limits()
        })
        .unwrap();
        let permits: Vec<_> = (1..=3).map(|n| l.admit(ip(n), 0).unwrap()).collect();
        assert_eq!(l.admit(ip(9), 0).unwrap_err(), Refusal::Global);
        assert_eq!(l.open(), 3);
        drop(permits);
        assert_eq!(l.open(), 0);
        assert!(l.admit(ip(9), 0).is_ok());
    }

    #[test]
    fn the_rate_allows_a_burst_then_one_per_interval() {
        let l = AcceptLimiter::new(AcceptLimits {
            rate_per_ip: 10, // a burst of 10, then one every 100 ms
            ..limits()
        })
        .unwrap();
        for _ in 0..10 {
            drop(l.admit(ip(1), 1_000).unwrap());
        }
        assert_eq!(l.admit(ip(1), 1_000).unwrap_err(), Refusal::Rate);
        assert_eq!(l.admit(ip(1), 1_050).unwrap_err(), Refusal::Rate);
        assert!(l.admit(ip(1), 1_100).is_ok());
        assert_eq!(l.admit(ip(1), 1_100).unwrap_err(), Refusal::Rate);
        // After a quiet second the whole burst is back.
        for _ in 0..10 {
            drop(l.admit(ip(1), 3_000).unwrap());
        }
    }

    #[test]
    fn repeated_refusals_ban_an_ip_for_a_while() {
        let l = AcceptLimiter::new(AcceptLimits {
            per_ip: 1,
            ban_after: 3,
            ban_ms: 10_000,
            ..limits()
        })
        .unwrap();
        let held = l.admit(ip(1), 0).unwrap();
        for _ in 0..3 {
            assert_eq!(l.admit(ip(1), 0).unwrap_err(), Refusal::PerIp);
        }
        drop(held);
        // Banned now, though it has nothing open.
        assert_eq!(l.admit(ip(1), 5_000).unwrap_err(), Refusal::Banned);
        assert_eq!(l.counters.bans.load(Relaxed), 1);
        assert!(l.admit(ip(1), 10_001).is_ok());
    }

    #[test]
    fn a_flood_of_addresses_keeps_the_table_bounded() {
        let l = AcceptLimiter::new(AcceptLimits {
            per_ip: 1,
            max_tracked: 64,
            ..limits()
        })
        .unwrap();
        // Each holds its connection: nothing is idle, so newcomers past the bound go
        // untracked (the global cap would still apply).
        let mut held = Vec::new();
        for n in 0..10_000u32 {
            let addr = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            held.push(l.admit(addr, 0).unwrap());
        }
        assert!(l.tracked() <= 64 + SHARDS, "{}", l.tracked());
        assert!(l.counters.untracked.load(Relaxed) > 9_000);
        // Once they close, newcomers take the idle places and are tracked again.
        drop(held);
        let before = l.counters.untracked.load(Relaxed);
        let _p = l.admit(ip(200), 1).unwrap();
        assert_eq!(l.counters.untracked.load(Relaxed), before);
        assert!(l.tracked() <= 64 + SHARDS);
    }
}
