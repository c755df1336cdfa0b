//! The UDP session table, without I/O: client address -> session, with idle expiry and a cap,
//! driven by an injected `now` so it is tested with a clock the test controls.
//!
//! A session counts as expired once `idle` has passed since it last saw a datagram either way;
//! an expired session is never handed out again, even before [`SessionTable::expire`] has
//! swept it away. [`SessionSlots`] caps the sessions of one listener over every reactor
//! thread (each thread has its own table).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One table entry: the session and when it last carried a datagram.
#[derive(Debug)]
struct Entry<S> {
    session: S,
    last: Instant,
}

/// What [`SessionTable::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted<S> {
    /// The session is in the table; no other was there for the address.
    New,
    /// The session replaced this expired one for the same address (not yet swept).
    Replaced(S),
    /// The table holds `cap` sessions already: the session given is handed back.
    Full(S),
}

/// Sessions keyed by client address, at most `cap`, expiring after `idle` without traffic.
#[derive(Debug)]
pub struct SessionTable<S> {
    entries: HashMap<SocketAddr, Entry<S>>,
    cap: usize,
    idle: Duration,
}

impl<S> SessionTable<S> {
    /// An empty table of at most `cap` sessions that expire after `idle`.
    pub fn new(cap: usize, idle: Duration) -> Self {
        SessionTable {
            entries: HashMap::new(),
            cap,
            idle,
        }
    }

    /// Sessions in the table, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expired(&self, last: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last) >= self.idle
    }

    /// The live session of `peer`, marked as used at `now`; `None` if there is none or it
    /// has expired.
    pub fn touch(&mut self, peer: SocketAddr, now: Instant) -> Option<&S> {
        let idle = self.idle;
        let entry = self.entries.get_mut(&peer)?;
        if now.saturating_duration_since(entry.last) >= idle {
            return None;
        }
        entry.last = entry.last.max(now);
        Some(&entry.session)
    }

    /// Adds `session` for `peer`, used at `now`. An expired session of `peer` is replaced
    /// (and returned); a live one is left alone and `session` handed back as
    /// [`Inserted::Full`] — callers [`touch`](Self::touch) first, so that does not happen.
    pub fn insert(&mut self, peer: SocketAddr, session: S, now: Instant) -> Inserted<S> {
        if let Some(old) = self.entries.get(&peer) {
            if !self.expired(old.last, now) {
                return Inserted::Full(session);
            }
            let old = self
                .entries
                .insert(peer, Entry { session, last: now })
                .expect("the entry was just seen");
            return Inserted::Replaced(old.session);
        }
        if self.entries.len() >= self.cap {
            return Inserted::Full(session);
        }
        self.entries.insert(peer, Entry { session, last: now });
        Inserted::New
    }

    /// Removes `peer`'s session if `which` says it is the one meant (a newer session for the
    /// same address may have taken its place).
    pub fn remove_if(&mut self, peer: SocketAddr, which: impl FnOnce(&S) -> bool) -> Option<S> {
        if which(&self.entries.get(&peer)?.session) {
            self.entries.remove(&peer).map(|e| e.session)
        } else {
            None
        }
    }

    /// Removes and returns every session expired at `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<S> {
        let idle = self.idle;
        let gone: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last) >= idle)
            .map(|(peer, _)| *peer)
            .collect();
        gone.into_iter()
            .filter_map(|peer| self.entries.remove(&peer).map(|e| e.session))
            .collect()
    }

    /// Removes and returns every session (shutdown).
    pub fn drain(&mut self) -> Vec<S> {
        self.entries.drain().map(|(_, e)| e.session).collect()
    }
}

/// The count of one listener's sessions over every thread, against its `max_sessions`.
#[derive(Debug, Default)]
pub struct SessionSlots {
    open: AtomicUsize,
}

impl SessionSlots {
    /// Sessions open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot for one more session if fewer than `max` are open; it is given back when the
    /// returned guard drops.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }
}

/// One session's place in [`SessionSlots`]; dropping it frees the place.
#[derive(Debug)]
pub struct Slot(Arc<SessionSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const IDLE: Duration = Duration::from_millis(100);

    #[test]
    fn touch_keeps_a_session_alive_and_expiry_ends_it() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(10, IDLE);
        assert_eq!(t.insert(peer(1), "a", t0), Inserted::New);
        assert_eq!(t.touch(peer(1), t0 + ms(99)), Some(&"a"));
        // Used at 99 ms, so alive until 199 ms.
        assert_eq!(t.touch(peer(1), t0 + ms(198)), Some(&"a"));
        assert!(t.expire(t0 + ms(297)).is_empty());
        assert_eq!(t.touch(peer(1), t0 + ms(298)), None);
        assert_eq!(t.len(), 1, "expired but not swept yet");
        assert_eq!(t.expire(t0 + ms(298)), vec!["a"]);
        assert!(t.is_empty());
        assert_eq!(t.touch(peer(2), t0), None);
    }

    #[test]
    fn an_expired_session_not_yet_swept_is_replaced() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(1, IDLE);
        assert_eq!(t.insert(peer(1), 1, t0), Inserted::New);
        assert_eq!(t.insert(peer(1), 2, t0 + ms(50)), Inserted::Full(2));
        assert_eq!(t.insert(peer(1), 3, t0 + ms(100)), Inserted::Replaced(1));
        assert_eq!(t.touch(peer(1), t0 + ms(150)), Some(&3));
    }

    #[test]
    fn the_cap_refuses_new_peers_until_one_expires() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(2, IDLE);
        assert_eq!(t.insert(peer(1), 1, t0), Inserted::New);
        assert_eq!(t.insert(peer(2), 2, t0 + ms(50)), Inserted::New);
        assert_eq!(t.insert(peer(3), 3, t0 + ms(60)), Inserted::Full(3));
        assert_eq!(t.touch(peer(2), t0 + ms(60)), Some(&2));
        assert_eq!(t.expire(t0 + ms(100)), vec![1]);
        assert_eq!(t.insert(peer(3), 3, t0 + ms(100)), Inserted::New);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn remove_if_spares_a_newer_session() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(4, IDLE);
        t.insert(peer(1), 7, t0);
        assert_eq!(t.remove_if(peer(1), |s| *s == 6), None);
        assert_eq!(t.remove_if(peer(1), |s| *s == 7), Some(7));
        assert_eq!(t.remove_if(peer(1), |_| true), None);
        t.insert(peer(2), 8, t0);
        assert_eq!(t.drain(), vec![8]);
    }

    #[test]
    fn slots_are_capped_and_given_back_on_drop() {
        let slots = Arc::new(SessionSlots::default());
        let a = slots.try_acquire(2).unwrap();
        let _b = slots.try_acquire(2).unwrap();
        assert!(slots.try_acquire(2).is_none());
        assert_eq!(slots.open(), 2);
        drop(a);
        assert!(slots.try_acquire(2).is_some());
        assert_eq!(slots.open(), 1);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A datagram from peer `p`: touch, else insert.
        Datagram(u16),
        /// The clock moves on.
        Advance(u64),
        /// A sweep.
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..8).prop_map(Op::Datagram),
            2 => (0u64..150).prop_map(Op::Advance),
            1 => Just(Op::Expire),
        ]
    }

    proptest! {
        /// Against a model that remembers each peer's last datagram: the table never holds
        /// more than `cap`, hands out a session exactly when the model says it is live,
        /// and a sweep removes exactly the expired ones.
        #[test]
        fn matches_a_simple_model(cap in 1usize..6, ops in prop::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut t: SessionTable<u16> = SessionTable::new(cap, IDLE);
            let mut model: HashMap<u16, Instant> = HashMap::new();
            for op in ops {
                match op {
                    Op::Datagram(p) => {
                        let live = model.get(&p).is_some_and(|l| now - *l < IDLE);
                        let got = t.touch(peer(p), now).copied();
                        prop_assert_eq!(got.is_some(), live);
                        if live {
                            model.insert(p, now);
                        } else {
                            match t.insert(peer(p), p, now) {
                                Inserted::New => {
                                    prop_assert!(!model.contains_key(&p));
                                    prop_assert!(model.len() < cap);
                                    model.insert(p, now);
                                }
                                Inserted::Replaced(old) => {
                                    prop_assert_eq!(old, p);
                                    model.insert(p, now);
                                }
                                Inserted::Full(_) => prop_assert!(model.len() >= cap),
                            }
                        }
                    }
                    Op::Advance(n) => now += ms(n),
                    Op::Expire => {
                        let mut gone = t.expire(now);
                        gone.sort_unstable();
                        let mut want: Vec<u16> = model
                            .iter()
                            .filter(|(_, l)| now - **l >= IDLE)
                            .map(|(p, _)| *p)
                            .collect();
                        want.sort_unstable();
                        model.retain(|_, l| now - *l < IDLE);
                        prop_assert_eq!(gone, want);
                    }
                }
                prop_assert!(t.len() <= cap);
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
