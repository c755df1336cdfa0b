//! A simulated prefix cache: which prompt blocks this engine has computed.
//!
//! A prompt is tokenised as [`count_prompt_tokens`](crate::tokens::count_prompt_tokens)
//! counts it (whitespace-separated words) and cut into blocks of a fixed number of tokens.
//! Each full block is identified by a hash chained with the previous block's hash, so one
//! hash stands for the whole prefix up to and including its block, as in vLLM's automatic
//! prefix caching; a trailing partial block is never cached. The chain is seeded with the
//! model name: two models never share blocks.
//!
//! [`BlockLru`] holds at most `capacity` block hashes and evicts the least recently used.
//! A request looks up its chain ([`BlockLru::lookup`]): the cached prefix is its leading
//! blocks found in the cache, up to the first miss. Once the request is prefilled its chain is
//! inserted ([`BlockLru::insert`]) from the last block to the first, so the first blocks are
//! the most recent and a chain is evicted from its tail, never leaving a tail without its
//! head.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use crate::tokens::fnv1a64;

/// An engine's prefix cache: the block size and the shared [`BlockLru`].
#[derive(Debug)]
pub(crate) struct PrefixCache {
    block_tokens: usize,
    enabled: bool,
    lru: Mutex<BlockLru>,
}

impl PrefixCache {
    /// A cache of `capacity` blocks (0 disables it) of `block_tokens` tokens (at least 1).
    pub(crate) fn new(block_tokens: usize, capacity: usize) -> Self {
        Self {
            block_tokens: block_tokens.max(1),
            enabled: capacity > 0,
            lru: Mutex::new(BlockLru::new(capacity)),
        }
    }

    /// Whether lookups are made at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The block chain of each prompt text (none when disabled).
    pub(crate) fn chains<'a>(
        &self,
        model: &str,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Vec<Vec<u64>> {
        if !self.enabled {
            return Vec::new();
        }
        texts
            .into_iter()
            .map(|t| block_chain(model, t, self.block_tokens))
            .collect()
    }

    /// Prompt tokens found in the cache: the cached leading blocks of every chain times the
    /// block size.
    pub(crate) fn lookup(&self, chains: &[Vec<u64>]) -> u64 {
        if chains.is_empty() {
            return 0;
        }
        let mut lru = self.lru.lock().unwrap_or_else(PoisonError::into_inner);
        let blocks: usize = chains.iter().map(|c| lru.lookup(c)).sum();
        blocks as u64 * self.block_tokens as u64
    }

    /// Records every chain as computed.
    pub(crate) fn insert(&self, chains: &[Vec<u64>]) {
        if chains.is_empty() {
            return;
        }
        let mut lru = self.lru.lock().unwrap_or_else(PoisonError::into_inner);
        for c in chains {
            lru.insert(c);
        }
    }

    /// Blocks currently cached.
    pub(crate) fn blocks(&self) -> usize {
        self.lru
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues a 64-bit FNV-1a hash over `bytes`.
fn fnv_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The chained hashes of the full blocks of `text` (blocks of `block_tokens` tokens, at
/// least 1), for `model`: entry `i` identifies blocks `0..=i`.
pub(crate) fn block_chain(model: &str, text: &str, block_tokens: usize) -> Vec<u64> {
    let block_tokens = block_tokens.max(1);
    let mut chain = Vec::new();
    let mut prev = fnv1a64(model.as_bytes());
    let mut hash = 0;
    let mut in_block = 0;
    for word in text.split_whitespace() {
        if in_block == 0 {
            hash = fnv_extend(fnv1a64(&[]), &prev.to_le_bytes());
        }
        hash = fnv_extend(hash, word.as_bytes());
        hash = fnv_extend(hash, b" ");
        in_block += 1;
        if in_block == block_tokens {
            chain.push(hash);
            prev = hash;
            in_block = 0;
        }
    }
    chain
}

/// A bounded set of block hashes with least-recently-used eviction.
///
/// Every touch appends `(hash, stamp)` to a log and records the stamp in the map; eviction
/// pops the log's front, skipping pairs whose stamp is no longer current. The log is
/// compacted when it grows past twice the map, so each operation is amortised O(1) and
/// memory stays O(capacity).
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockLru {
    capacity: usize,
    map: HashMap<u64, u64>,
    log: VecDeque<(u64, u64)>,
    next_stamp: u64,
}

impl BlockLru {
    /// An empty cache of at most `capacity` blocks; 0 disables it.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Blocks currently held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether `hash` is held (without touching it).
    #[cfg(test)]
    pub(crate) fn contains(&self, hash: u64) -> bool {
        self.map.contains_key(&hash)
    }

    /// The number of leading blocks of `chain` held, up to the first miss; those are
    /// touched (most recent first block, as [`BlockLru::insert`] orders them).
    pub(crate) fn lookup(&mut self, chain: &[u64]) -> usize {
        let hits = chain
            .iter()
            .take_while(|h| self.map.contains_key(h))
            .count();
        for &h in chain[..hits].iter().rev() {
            self.touch(h);
        }
        hits
    }

    /// Inserts or touches every block of `chain`, the last one first, evicting the least
    /// recently used blocks beyond the capacity.
    pub(crate) fn insert(&mut self, chain: &[u64]) {
        if self.capacity == 0 {
            return;
        }
        for &h in chain.iter().rev() {
            self.touch(h);
            while self.map.len() > self.capacity {
                self.evict_one();
            }
        }
    }

    fn touch(&mut self, hash: u64) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.map.insert(hash, stamp);
        self.log.push_back((hash, stamp));
        if self.log.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.log.retain(|(h, s)| map.get(h) == Some(s));
        }
    }

    fn evict_one(&mut self) {
        while let Some((h, s)) = self.log.pop_front() {
            if self.map.get(&h) == Some(&s) {
                self.map.remove(&h);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn engine_cache_counts_block_aligned_tokens() {
        let c = PrefixCache::new(2, 100);
        let chains = c.chains("m", ["a b c d e", "a b"]);
        assert_eq!(chains.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(c.lookup(&chains), 0);
        c.insert(&chains);
        assert_eq!(
            c.blocks(),
            2,
            "the second prompt's block is the first one's head"
        );
        assert_eq!(c.lookup(&chains), 6);
        let off = PrefixCache::new(2, 0);
        assert!(!off.enabled() && off.chains("m", ["a b"]).is_empty());
    }

    #[test]
    fn chain_covers_full_blocks_only() {
        assert!(block_chain("m", "", 4).is_empty());
        assert!(block_chain("m", "a b c", 4).is_empty());
        assert_eq!(block_chain("m", "a b c d", 4).len(), 1);
        assert_eq!(block_chain("m", "a b c d e f g h i", 4).len(), 2);
        assert_eq!(
            block_chain("m", "a b", 0).len(),
            2,
            "block size 0 acts as 1"
        );
    }

    #[test]
    fn chain_identifies_the_whole_prefix() {
        let a = block_chain("m", "a b c d e f g h", 4);
        let b = block_chain("m", "a b c d e f g h i j k l", 4);
        assert_eq!(a[..], b[..2]);
        // Same second block after a different first block: different hash.
        let c = block_chain("m", "x b c d e f g h", 4);
        assert_ne!(a[0], c[0]);
        assert_ne!(a[1], c[1]);
        // Whitespace does not matter, words and their order do.
        assert_eq!(a, block_chain("m", " a  b\nc d\te f g h ", 4));
        assert_ne!(a, block_chain("m", "b a c d e f g h", 4));
        assert_ne!(block_chain("ab", "c d", 1), block_chain("a", "bc d", 1));
        // Another model has its own chains.
        assert_ne!(a, block_chain("other", "a b c d e f g h", 4));
    }

    #[test]
    fn lookup_stops_at_the_first_miss() {
        let mut lru = BlockLru::new(16);
        assert_eq!(lru.lookup(&[1, 2, 3]), 0);
        lru.insert(&[1, 2]);
        assert_eq!(lru.lookup(&[1, 2, 3]), 2);
        assert_eq!(lru.lookup(&[9, 1, 2]), 0);
        lru.insert(&[1, 2, 3]);
        assert_eq!(lru.lookup(&[1, 2, 3, 4]), 3);
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut lru = BlockLru::new(3);
        lru.insert(&[1]);
        lru.insert(&[2]);
        lru.insert(&[3]);
        assert_eq!(lru.lookup(&[1]), 1); // 1 is now the most recent
        lru.insert(&[4]); // evicts 2
        assert!(lru.contains(1) && !lru.contains(2) && lru.contains(3) && lru.contains(4));
        lru.insert(&[5]); // evicts 3
        assert!(!lru.contains(3));
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn chains_are_evicted_from_the_tail() {
        let mut lru = BlockLru::new(4);
        lru.insert(&[1, 2, 3, 4]);
        lru.insert(&[10]);
        // The tail block went first: the chain's head still matches.
        assert!(!lru.contains(4));
        assert_eq!(lru.lookup(&[1, 2, 3, 4]), 3);
        // A chain longer than the cache keeps its head.
        lru.insert(&[20, 21, 22, 23, 24, 25]);
        assert_eq!(lru.lookup(&[20, 21, 22, 23, 24, 25]), 4);
    }

    #[test]
    fn zero_capacity_disables() {
        let mut lru = BlockLru::new(0);
        lru.insert(&[1, 2, 3]);
        assert_eq!(lru.len(), 0);
        assert_eq!(lru.lookup(&[1]), 0);
    }

    #[test]
    fn log_stays_bounded_under_repeated_touches() {
        let mut lru = BlockLru::new(8);
        for _ in 0..10_000 {
            lru.insert(&[1, 2, 3]);
            lru.lookup(&[1, 2, 3]);
        }
        assert_eq!(lru.len(), 3);
        assert!(lru.log.len() <= 2 * lru.len() + 17, "log {}", lru.log.len());
    }

    proptest! {
        #[test]
        fn size_never_exceeds_capacity(
            capacity in 0usize..20,
            ops in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(0u64..40, 0..12)),
                0..200,
            ),
        ) {
            let mut lru = BlockLru::new(capacity);
            for (insert, chain) in ops {
                if insert {
                    lru.insert(&chain);
                    // The most recently inserted head is always held.
                    if capacity > 0 {
                        if let Some(&head) = chain.first() {
                            prop_assert!(lru.contains(head));
                        }
                    }
                } else {
                    let hits = lru.lookup(&chain);
                    prop_assert!(hits <= chain.len());
                }
                prop_assert!(lru.len() <= capacity);
                prop_assert!(lru.log.len() <= 2 * lru.len() + 17);
                prop_assert!(lru.log.len() >= lru.len());
            }
        }
    }
}
