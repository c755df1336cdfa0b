//! Responses by route × backend × status class on one reactor thread, behind
//! `switchyard_requests_total{route,backend,code}`.
//!
//! A full matrix of route slots × backend slots × classes would grow with both capacities
//! (hundreds of route slots times thousands of registrable backends), yet a route only ever
//! answers through its own few backends. So each thread keeps a fixed-size open-addressing
//! table of the (route slot, backend slot) pairs it has answered for: [`PAIRS`] entries of a
//! key and six counters, 56 KiB per thread whatever the config. "No route" and "no backend"
//! are pairs too. A pair takes its entry on its first response; when a route's or a
//! backend's slot changes hands, the thread forgets the slot's pairs (their entries become
//! reusable). Past [`MAX_USED`] entries in use, further new pairs are counted in one overflow
//! row, so every response is counted somewhere.
//!
//! Like the rest of [`super::stats`], only the owning thread writes (plain load and store);
//! a reader sums the threads' tables. A key is published with release ordering after its
//! counters are zero, so a reader never sees a new pair with an old pair's counts.

use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::Bump;

/// Entries per thread (a power of two).
pub const PAIRS: usize = 1024;
/// Entries that may be in use (live or forgotten) before new pairs go to the overflow row:
/// three quarters, so that probe sequences stay short.
pub const MAX_USED: usize = PAIRS / 4 * 3;

/// Status classes counted per pair: index 1..=5 for 1xx..5xx, 0 for anything else.
pub const CLASSES: usize = 6;

const EMPTY: u64 = 0;
/// A forgotten pair's entry: skipped by lookups and readers, reusable by a new pair.
const GONE: u64 = u64::MAX;
const OCCUPIED: u64 = 1 << 63;

/// A route slot or backend slot, `None` for "no route" or "no backend".
fn part(slot: Option<usize>) -> u64 {
    slot.map_or(0, |s| (s as u64 + 1) & 0x7fff_ffff)
}

fn key(route: Option<usize>, backend: Option<usize>) -> u64 {
    OCCUPIED | part(route) << 32 | part(backend)
}

fn unpart(p: u64) -> Option<usize> {
    p.checked_sub(1).map(|s| s as usize)
}

/// The pair a live key stands for.
fn pair(key: u64) -> Pair {
    Pair {
        route: unpart((key >> 32) & 0x7fff_ffff),
        backend: unpart(key & 0xffff_ffff),
    }
}

fn home(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - PAIRS.trailing_zeros())) as usize
}

/// A (route slot, backend slot) pair; `None` for "no route" or "no backend".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pair {
    /// The route's counter slot.
    pub route: Option<usize>,
    /// The backend's slot.
    pub backend: Option<usize>,
}

/// One thread's table.
#[derive(Debug)]
pub struct PairTable {
    keys: Box<[AtomicU64]>,
    counts: Box<[[AtomicU64; CLASSES]]>,
    overflow: [AtomicU64; CLASSES],
    /// Entries not [`EMPTY`] (live or [`GONE`]); written by the owner only.
    used: AtomicU64,
}

impl Default for PairTable {
    fn default() -> Self {
        PairTable {
            keys: (0..PAIRS).map(|_| AtomicU64::new(EMPTY)).collect(),
            counts: (0..PAIRS).map(|_| Default::default()).collect(),
            overflow: Default::default(),
            used: AtomicU64::new(0),
        }
    }
}

impl PairTable {
    /// Counts a response of status class `class` for the pair (owner thread only).
    pub fn count(&self, route: Option<usize>, backend: Option<usize>, class: usize) {
        let k = key(route, backend);
        match self.find_or_insert(k) {
            Some(i) => self.counts[i][class].bump(1),
            None => self.overflow[class].bump(1),
        }
    }

    fn find_or_insert(&self, k: u64) -> Option<usize> {
        let mask = PAIRS - 1;
        let mut i = home(k);
        let mut reusable = None;
        for _ in 0..PAIRS {
            match self.keys[i].load(Ordering::Relaxed) {
                found if found == k => return Some(i),
                EMPTY => break,
                GONE => {
                    reusable.get_or_insert(i);
                }
                _ => {}
            }
            i = (i + 1) & mask;
        }
        // Not in the table: a forgotten entry of the probe sequence, else the empty one that
        // ended it (while there is room).
        let slot = match reusable {
            Some(r) => r,
            None if (self.used.load(Ordering::Relaxed) as usize) < MAX_USED => {
                self.used.bump(1);
                i
            }
            None => return None,
        };
        // Its counters are zero (never used, or zeroed when forgotten).
        self.keys[slot].store(k, Ordering::Release);
        Some(slot)
    }

    /// Forgets every pair `gone` selects: its slot has a new occupant (owner thread only).
    fn forget(&self, gone: impl Fn(Pair) -> bool) {
        for (k, counts) in self.keys.iter().zip(self.counts.iter()) {
            let v = k.load(Ordering::Relaxed);
            if v == EMPTY || v == GONE || !gone(pair(v)) {
                continue;
            }
            k.store(GONE, Ordering::Release);
            for c in counts {
                c.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Forgets the pairs of route slot `slot` (owner thread only).
    pub fn forget_route(&self, slot: usize) {
        self.forget(|p| p.route == Some(slot));
    }

    /// Forgets the pairs of backend slot `slot` (owner thread only).
    pub fn forget_backend(&self, slot: usize) {
        self.forget(|p| p.backend == Some(slot));
    }

    /// Adds this table's live pairs to `into`, and its overflow row to `overflow`.
    pub fn merge_into(
        &self,
        into: &mut std::collections::BTreeMap<Pair, [u64; CLASSES]>,
        overflow: &mut [u64; CLASSES],
    ) {
        for (k, counts) in self.keys.iter().zip(self.counts.iter()) {
            let v = k.load(Ordering::Acquire);
            if v == EMPTY || v == GONE {
                continue;
            }
            let sums = into.entry(pair(v)).or_default();
            for (s, c) in sums.iter_mut().zip(counts) {
                *s += c.load(Ordering::Relaxed);
            }
        }
        for (s, c) in overflow.iter_mut().zip(&self.overflow) {
            *s += c.load(Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn merged(t: &PairTable) -> (BTreeMap<Pair, [u64; CLASSES]>, [u64; CLASSES]) {
        let mut m = BTreeMap::new();
        let mut o = [0; CLASSES];
        t.merge_into(&mut m, &mut o);
        (m, o)
    }

    fn p(route: Option<usize>, backend: Option<usize>) -> Pair {
        Pair { route, backend }
    }

    #[test]
    fn pairs_are_counted_by_class() {
        let t = PairTable::default();
        t.count(Some(0), Some(1), 2);
        t.count(Some(0), Some(1), 2);
        t.count(Some(0), Some(2), 5);
        t.count(Some(0), None, 4);
        t.count(None, None, 4);
        let (m, o) = merged(&t);
        assert_eq!(m.len(), 4);
        assert_eq!(m[&p(Some(0), Some(1))], [0, 0, 2, 0, 0, 0]);
        assert_eq!(m[&p(Some(0), Some(2))], [0, 0, 0, 0, 0, 1]);
        assert_eq!(m[&p(Some(0), None)], [0, 0, 0, 0, 1, 0]);
        assert_eq!(m[&p(None, None)], [0, 0, 0, 0, 1, 0]);
        assert_eq!(o, [0; CLASSES]);
    }

    #[test]
    fn forgotten_slots_start_again_from_zero_and_free_their_entries() {
        let t = PairTable::default();
        t.count(Some(3), Some(7), 2);
        t.count(Some(4), Some(7), 2);
        t.count(Some(3), Some(8), 2);
        t.forget_backend(7);
        let (m, _) = merged(&t);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [p(Some(3), Some(8))]);
        t.forget_route(3);
        assert!(merged(&t).0.is_empty());
        // The new occupants count from zero, in reused entries.
        t.count(Some(3), Some(7), 3);
        let (m, _) = merged(&t);
        assert_eq!(m[&p(Some(3), Some(7))], [0, 0, 0, 1, 0, 0]);
        assert_eq!(t.used.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn pairs_past_the_bound_go_to_the_overflow_row() {
        let t = PairTable::default();
        for b in 0..MAX_USED + 10 {
            t.count(Some(1), Some(b), 2);
        }
        // Known pairs still find their entries.
        t.count(Some(1), Some(0), 2);
        let (m, o) = merged(&t);
        assert_eq!(m.len(), MAX_USED);
        assert_eq!(m[&p(Some(1), Some(0))][2], 2);
        assert_eq!(o[2], 10);
        assert_eq!(
            m.values().map(|c| c[2]).sum::<u64>() + o[2],
            MAX_USED as u64 + 11
        );
    }
}
