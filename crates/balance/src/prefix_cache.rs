//! Prefix-cache affinity: send a prompt to the engine most likely to hold its prefix in its KV
//! cache, so the engine skips recomputing it (the largest published gain for LLM serving:
//! multi-turn chats and shared system prompts resend the same prefix every time).
//!
//! A prompt is cut into [`BLOCK_BYTES`]-byte blocks and hashed as a chain (each block's hash
//! covers every block before it, as engines' prefix caches key their blocks), see
//! [`block_chain`]. An index remembers which backend last served each chain hash. A request
//! goes to the backend of its longest indexed prefix, unless that backend is down, or its queue
//! is well above the group's average ([`OVERLOAD_FACTOR`]), or it is saturated while the
//! shortest queue is not; otherwise, or with no match, to the shortest queue (as
//! `least_queue`). Either way the request's chain is then indexed under the chosen backend.
//!
//! **Saturated** means the request would wait for a batch slot there: the engine reports
//! requests waiting, or its queue (as `least_queue` estimates it) has reached the number of
//! requests it was last seen running while others waited (its batch size, learned from its
//! scraped figures). Waiting behind a full batch costs the time a running request takes to
//! finish — on a slow engine, seconds — while a cache miss costs only the prefill of the
//! prompt, so a saturated home is given up for an engine with a free slot. When every engine
//! is saturated the match is kept (a cached prefix still saves work). Engines without figures
//! are never judged saturated.
//!
//! The index is bounded: at most [`MAX_ENTRIES`] chain hashes per shard, the least recently
//! used evicted first. A route's reactor threads share one index ([`SharedIndex`], obtained through
//! [`Balancer::share`]), sharded by a prompt's first block so a pick takes one shard's lock;
//! its size is reported in `/stats`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::least_queue::LeastQueue;
use crate::sample::FULL_SCAN_MAX;
use crate::{hash_bytes, BackendState, Balancer, PickContext};

/// Insertions within which an entry used again for the same backend is not re-logged (see
/// [`PrefixIndex::insert`]): an eighth of the index.
pub const FRESH_TICKS: u64 = (MAX_ENTRIES / 8) as u64;
/// Bytes of prompt per block.
pub const BLOCK_BYTES: usize = 256;
/// Most blocks hashed per prompt (1 MiB of prompt).
pub const MAX_BLOCKS: usize = 4096;
/// Most chain hashes in one index (about 2.4 MiB with the eviction log).
pub const MAX_ENTRIES: usize = 100_000;
/// A matched backend is passed over when its queue exceeds this factor times the group's
/// average queue (plus [`OVERLOAD_SLACK`]).
pub const OVERLOAD_FACTOR: f64 = 1.5;
/// Requests a matched backend may have beyond [`OVERLOAD_FACTOR`] x average.
pub const OVERLOAD_SLACK: f64 = 2.0;
/// In groups larger than [`FULL_SCAN_MAX`], picks between two computations of the average
/// queue (a pick stays independent of the group's size).
pub const AVERAGE_EVERY: u32 = 32;

/// The chain of block hashes of `prompt`: entry `i` covers blocks `0..=i`. A trailing partial
/// block is included (the next turn of a conversation extends it, and its hash then differs,
/// which only shortens the match by one block).
pub fn block_chain(prompt: &[u8]) -> Vec<u64> {
    let mut out = Vec::with_capacity(prompt.len().div_ceil(BLOCK_BYTES).min(MAX_BLOCKS));
    let mut h: u64 = 0;
    for block in prompt.chunks(BLOCK_BYTES).take(MAX_BLOCKS) {
        let mut buf = [0u8; 8 + BLOCK_BYTES];
        buf[..8].copy_from_slice(&h.to_le_bytes());
        buf[8..8 + block.len()].copy_from_slice(block);
        h = hash_bytes(&buf[..8 + block.len()]);
        out.push(h);
    }
    out
}

/// Registered as `prefix_cache`.
pub fn new(_seed: u64) -> Box<dyn Balancer> {
    Box::new(PrefixCache::default())
}

/// Hashes the index's keys, which are already well-mixed 64-bit chain hashes: one xor with a
/// per-process secret and one multiply, instead of SipHash's rounds. The block hashes are not
/// keyed (anyone can compute a prompt's chain), so the secret is what keeps a client from
/// choosing prompts whose entries collide in one bucket.
#[derive(Debug, Clone, Copy)]
pub struct ChainHasher {
    secret: u64,
}

impl Default for ChainHasher {
    fn default() -> Self {
        // std's RandomState draws its keys from the operating system once per thread.
        let secret = std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64) | 1;
        ChainHasher { secret }
    }
}

impl BuildHasher for ChainHasher {
    type Hasher = ChainHash;
    fn build_hasher(&self) -> ChainHash {
        ChainHash {
            secret: self.secret,
            state: 0,
        }
    }
}

/// See [`ChainHasher`].
#[derive(Debug)]
pub struct ChainHash {
    secret: u64,
    state: u64,
}

impl Hasher for ChainHash {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u64` keys; kept correct for any other.
        for b in bytes {
            self.state = (self.state ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.state = n;
    }

    fn finish(&self) -> u64 {
        let x = (self.state ^ self.secret).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }
}

/// The bounded index of chain hash -> backend, with LRU eviction.
#[derive(Debug, Clone)]
pub struct PrefixIndex {
    map: HashMap<u64, (usize, u64), ChainHasher>,
    /// (hash, stamp) in the order touched; stale pairs are skipped when evicting.
    log: VecDeque<(u64, u64)>,
    tick: u64,
    /// The most entries held.
    cap: usize,
}

impl Default for PrefixIndex {
    fn default() -> Self {
        PrefixIndex::with_capacity(MAX_ENTRIES)
    }
}

/// Shards of the index shared by a route's reactor threads, each of up to [`MAX_ENTRIES`]
/// entries (prompts sharing a first block, such as one system prompt, share a shard, so each
/// shard gets the whole budget a single index had).
pub const SHARDS: usize = 4;

/// A route's prefix index, shared by every reactor thread's `prefix_cache` instance, so a
/// conversation's turns match whichever thread accepted their connections. Sharded by the
/// prompt's first block (all of a prompt's chain lives in one shard, so a pick takes one lock,
/// held for the lookup and the insertions only); [`SHARDS`] x [`MAX_ENTRIES`] in all.
#[derive(Debug)]
pub struct SharedIndex {
    shards: Box<[std::sync::Mutex<PrefixIndex>]>,
    entries: std::sync::atomic::AtomicUsize,
}

impl Default for SharedIndex {
    fn default() -> Self {
        SharedIndex {
            shards: (0..SHARDS)
                .map(|_| std::sync::Mutex::new(PrefixIndex::with_capacity(MAX_ENTRIES)))
                .collect(),
            entries: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl SharedIndex {
    /// The shard holding chains that start with block hash `first`.
    fn shard(&self, first: u64) -> std::sync::MutexGuard<'_, PrefixIndex> {
        // The top bits: the low ones pick the shard's own hash buckets.
        let i = (first >> 60) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries held in all shards.
    pub fn len(&self) -> usize {
        self.entries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PrefixIndex {
    /// An empty index of at most `cap` entries.
    pub fn with_capacity(cap: usize) -> Self {
        PrefixIndex {
            map: HashMap::default(),
            log: VecDeque::new(),
            tick: 0,
            cap: cap.max(1),
        }
    }

    /// The backend that last served chain hash `h`.
    pub fn get(&self, h: u64) -> Option<usize> {
        self.map.get(&h).map(|(b, _)| *b)
    }

    /// Records that `backend` served chain hash `h` (now the most recently used).
    ///
    /// An entry already held for the same backend and used within the last
    /// [`FRESH_TICKS`] insertions is left as it is: it is far from eviction, and not logging
    /// it again keeps a hot prefix (a shared system prompt, resent by every request) from
    /// costing a log entry per request. Recency is then exact to within that window.
    pub fn insert(&mut self, h: u64, backend: usize) {
        self.tick += 1;
        match self.map.entry(h) {
            Entry::Occupied(e) if e.get().0 == backend && self.tick - e.get().1 < FRESH_TICKS => {
                return;
            }
            Entry::Occupied(mut e) => {
                e.insert((backend, self.tick));
            }
            Entry::Vacant(e) => {
                e.insert((backend, self.tick));
            }
        }
        self.log.push_back((h, self.tick));
        while self.map.len() > self.cap || self.log.len() > 2 * self.cap {
            let Some((old, stamp)) = self.log.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(_, s)| *s == stamp) && self.map.len() > self.cap {
                self.map.remove(&old);
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Why the last pick did not go to the matched backend.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum PassedOver {
    /// It did, or there was no match.
    #[default]
    No,
    /// Its queue was well above the group's average.
    Overloaded,
    /// Its batch was full and the shortest queue's was not.
    Saturated,
}

/// Prefix-cache state: the index, the fallback, and each backend's batch size as observed.
#[derive(Debug, Default, Clone)]
pub struct PrefixCache {
    index: Arc<SharedIndex>,
    fallback: LeastQueue,
    /// Blocks matched by the last pick (0: the fallback chose).
    last_matched: usize,
    /// Why the last pick left its match, if it did.
    passed_over: PassedOver,
    /// Per backend: requests it was last seen running while others waited (0: never seen
    /// full). One entry per member of the group.
    batch: Vec<u64>,
    /// The eligible backends' average queue, and picks since it was computed (large groups
    /// recompute it every [`AVERAGE_EVERY`] picks).
    average: f64,
    since_average: u32,
}

impl PrefixCache {
    /// Whether a request sent to backend `b` now would wait for a batch slot (see the module
    /// documentation). Also learns `b`'s batch size from its figures.
    fn saturated(
        &mut self,
        backends: &[Arc<BackendState>],
        b: usize,
        ctx: &PickContext<'_>,
    ) -> bool {
        if self.batch.len() != backends.len() {
            self.batch = vec![0; backends.len()];
        }
        let Some(f) = backends[b].figures(ctx.now_ms) else {
            return false;
        };
        let (Some(waiting), Some(running)) = (f.waiting, f.running) else {
            return false;
        };
        if waiting > 0 {
            self.batch[b] = running;
            return true;
        }
        let batch = self.batch[b];
        batch > 0 && backends[b].queue_estimate(ctx.now_ms) >= batch
    }

    fn overloaded(
        &mut self,
        backends: &[Arc<BackendState>],
        b: usize,
        ctx: &PickContext<'_>,
    ) -> bool {
        if backends.len() <= FULL_SCAN_MAX || self.since_average >= AVERAGE_EVERY {
            let mut total = 0u64;
            let mut n = 0u64;
            for (i, s) in backends.iter().enumerate() {
                if ctx.eligible(i, s) {
                    total += s.queue_estimate(ctx.now_ms);
                    n += 1;
                }
            }
            self.average = total as f64 / n.max(1) as f64;
            self.since_average = 0;
        }
        self.since_average += 1;
        backends[b].queue_estimate(ctx.now_ms) as f64
            > OVERLOAD_FACTOR * self.average + OVERLOAD_SLACK
    }

    /// The longest prefix of `chain` in the index whose backend may be chosen: a binary search
    /// (a chain's blocks are indexed together, so if block `i` is indexed so are the blocks
    /// before it, but for eviction), then a walk back if that backend is not eligible.
    fn longest_match(
        index: &PrefixIndex,
        backends: &[Arc<BackendState>],
        ctx: &PickContext<'_>,
    ) -> Option<(usize, usize)> {
        let chain = ctx.prefix;
        let (mut lo, mut hi) = (0, chain.len()); // blocks chain[..lo] matched; chain[hi..] not
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if index.get(chain[mid - 1]).is_some() {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        chain[..lo].iter().enumerate().rev().find_map(|(i, h)| {
            let b = index.get(*h)?;
            (b < backends.len() && ctx.eligible(b, &backends[b])).then_some((b, i + 1))
        })
    }
}

impl Balancer for PrefixCache {
    fn name(&self) -> &'static str {
        "prefix_cache"
    }

    fn share(&self, seed: u64) -> Option<Box<dyn Balancer>> {
        Some(Box::new(PrefixCache {
            index: Arc::clone(&self.index),
            fallback: LeastQueue::seeded(seed),
            ..PrefixCache::default()
        }))
    }

    fn pick(&mut self, backends: &[Arc<BackendState>], ctx: &PickContext<'_>) -> Option<usize> {
        let index = Arc::clone(&self.index);
        let mut shard = ctx.prefix.first().map(|first| index.shard(*first));
        let matched = shard
            .as_deref()
            .and_then(|idx| Self::longest_match(idx, backends, ctx));
        self.last_matched = 0;
        self.passed_over = PassedOver::No;
        let chosen = match matched {
            Some((b, _)) if self.overloaded(backends, b, ctx) => {
                self.passed_over = PassedOver::Overloaded;
                self.fallback.pick(backends, ctx)?
            }
            Some((b, blocks)) if self.saturated(backends, b, ctx) => {
                // A free slot elsewhere beats waiting for one here; with none anywhere, the
                // cached prefix still saves work.
                match self.fallback.pick(backends, ctx) {
                    Some(other) if other != b && !self.saturated(backends, other, ctx) => {
                        self.passed_over = PassedOver::Saturated;
                        other
                    }
                    _ => {
                        self.last_matched = blocks;
                        b
                    }
                }
            }
            Some((b, blocks)) => {
                self.last_matched = blocks;
                b
            }
            None => self.fallback.pick(backends, ctx)?,
        };
        if let Some(idx) = shard.as_deref_mut() {
            let before = idx.len();
            for h in ctx.prefix {
                idx.insert(*h, chosen);
            }
            let after = idx.len();
            use std::sync::atomic::Ordering::Relaxed;
            if after >= before {
                index.entries.fetch_add(after - before, Relaxed);
            } else {
                index.entries.fetch_sub(before - after, Relaxed);
            }
        }
        Some(chosen)
    }

    fn index_len(&self) -> Option<usize> {
        Some(self.index.len())
    }

    fn explain(
        &self,
        backends: &[Arc<BackendState>],
        chosen: usize,
        ctx: &PickContext<'_>,
    ) -> String {
        let passed = match self.passed_over {
            PassedOver::No => "",
            PassedOver::Overloaded => " passed_over=overloaded",
            PassedOver::Saturated => " passed_over=saturated",
        };
        format!(
            "matched_blocks={} prompt_blocks={} queue={}{passed}",
            self.last_matched,
            ctx.prefix.len(),
            backends[chosen].queue_estimate(ctx.now_ms)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize) -> Vec<Arc<BackendState>> {
        (0..n)
            .map(|i| Arc::new(BackendState::new(format!("e{i}"), 1)))
            .collect()
    }

    fn ctx(prefix: &[u64]) -> PickContext<'_> {
        PickContext {
            now_ms: 0,
            exclude: &[],
            key: None,
            prefix,
        }
    }

    #[test]
    fn chains_share_prefixes() {
        let a = block_chain(&[b'a'; 1000]);
        let mut longer = vec![b'a'; 1000];
        longer.extend_from_slice(&[b'b'; 300]);
        let b = block_chain(&longer);
        assert_eq!(a.len(), 4);
        assert_eq!(b.len(), 6);
        assert_eq!(a[..3], b[..3]); // whole blocks match; the partial fourth differs
        assert_ne!(a[3], b[3]);
        assert!(block_chain(b"").is_empty());
        assert_eq!(block_chain(&vec![0u8; 10 << 20]).len(), MAX_BLOCKS);
    }

    #[test]
    fn a_conversation_returns_to_its_engine() {
        let g = group(4);
        let mut pc = PrefixCache::default();
        let mut homes = Vec::new();
        for conv in 0..8u8 {
            let mut prompt = vec![conv; 600];
            let first = pc.pick(&g, &ctx(&block_chain(&prompt))).unwrap();
            for turn in 0..4u8 {
                prompt.extend_from_slice(&[turn + 100; 300]);
                assert_eq!(pc.pick(&g, &ctx(&block_chain(&prompt))), Some(first));
            }
            homes.push(first);
        }
        homes.sort();
        homes.dedup();
        assert!(homes.len() >= 3, "conversations all on {homes:?}");
    }

    #[test]
    fn overloaded_or_down_home_falls_back() {
        let g = group(2);
        let mut pc = PrefixCache::default();
        let chain = block_chain(&[7u8; 2000]);
        let home = pc.pick(&g, &ctx(&chain)).unwrap();
        let _held: Vec<_> = (0..10).map(|_| g[home].start_request()).collect();
        let other = 1 - home;
        assert_eq!(pc.pick(&g, &ctx(&chain)), Some(other));
        // The chain now points at the other engine.
        drop(_held);
        assert_eq!(pc.pick(&g, &ctx(&chain)), Some(other));
        g[other].mark_down_until(u64::MAX);
        assert_eq!(pc.pick(&g, &ctx(&chain)), Some(home));
    }

    #[test]
    fn index_is_bounded_and_evicts_the_least_recent() {
        let mut idx = PrefixIndex::default();
        for h in 0..(MAX_ENTRIES as u64 + 500) {
            idx.insert(h, 0);
            if h == 10 {
                idx.insert(0, 1); // touch 0 again early on
            }
        }
        assert_eq!(idx.len(), MAX_ENTRIES);
        assert!(idx.log.len() <= 2 * MAX_ENTRIES);
        assert_eq!(idx.get(1), None); // evicted
        assert_eq!(idx.get(MAX_ENTRIES as u64 + 499), Some(0));
        // Repeated touches of few keys do not grow the log without bound.
        for _ in 0..(3 * MAX_ENTRIES) {
            idx.insert(5, 2);
        }
        assert!(idx.log.len() <= 2 * MAX_ENTRIES);
        assert_eq!(idx.get(5), Some(2));
    }

    #[test]
    fn a_fresh_entry_for_the_same_backend_is_not_logged_again() {
        let mut idx = PrefixIndex::default();
        idx.insert(7, 1);
        for _ in 0..100 {
            idx.insert(7, 1);
        }
        assert_eq!(idx.log.len(), 1);
        idx.insert(7, 2); // another backend: recorded at once
        assert_eq!((idx.get(7), idx.log.len()), (Some(2), 2));
        // Once it has aged past the window, a use logs it again (it must not be evicted).
        for h in 100..(100 + FRESH_TICKS) {
            idx.insert(h, 0);
        }
        let logged = idx.log.len();
        idx.insert(7, 2);
        assert_eq!(idx.log.len(), logged + 1);
    }

    #[test]
    fn explains_the_match() {
        let g = group(2);
        let mut pc = PrefixCache::default();
        let chain = block_chain(&[1u8; 1024]);
        let first = pc.pick(&g, &ctx(&chain)).unwrap();
        assert!(pc
            .explain(&g, first, &ctx(&chain))
            .starts_with("matched_blocks=0 prompt_blocks=4"));
        let again = pc.pick(&g, &ctx(&chain)).unwrap();
        assert!(pc
            .explain(&g, again, &ctx(&chain))
            .starts_with("matched_blocks=4 "));
    }

    fn figures(waiting: u64, running: u64) -> crate::LoadFigures {
        crate::LoadFigures {
            waiting: Some(waiting),
            running: Some(running),
            ..crate::LoadFigures::default()
        }
    }

    #[test]
    fn a_saturated_home_is_left_for_a_free_slot() {
        let g = group(2);
        let mut pc = PrefixCache::default();
        let chain = block_chain(&[3u8; 2000]);
        g[0].record_figures(figures(0, 0), 0, 10_000);
        g[1].record_figures(figures(0, 0), 0, 10_000);
        let home = pc.pick(&g, &ctx(&chain)).unwrap();
        let other = 1 - home;
        // The home runs a full batch of 4 with 2 waiting (within the average-queue bound:
        // 6 <= 1.5 x 4 + 2); the other engine runs 2 of its slots.
        g[home].record_figures(figures(2, 4), 0, 10_000);
        g[other].record_figures(figures(0, 2), 0, 10_000);
        assert_eq!(pc.pick(&g, &ctx(&chain)), Some(other));
        assert!(pc
            .explain(&g, other, &ctx(&chain))
            .ends_with("passed_over=saturated"));
        // The chain now points at the other engine; the first one's batch size (4) is learned:
        // with nobody waiting but 4 running it is still full.
        g[home].record_figures(figures(0, 4), 0, 10_000);
        g[other].record_figures(figures(0, 1), 0, 10_000);
        let mut pc2 = pc.clone();
        let chain2 = block_chain(&[4u8; 2000]);
        for h in &chain2 {
            pc2.index.shard(chain2[0]).insert(*h, home);
        }
        assert_eq!(pc2.pick(&g, &ctx(&chain2)), Some(other));
        // With a free slot at home, the match wins again (the chain was re-indexed under the
        // engine that took it; point it home once more).
        for h in &chain2 {
            pc2.index.shard(chain2[0]).insert(*h, home);
        }
        g[home].record_figures(figures(0, 3), 0, 10_000);
        assert_eq!(pc2.pick(&g, &ctx(&chain2)), Some(home));
        assert!(pc2
            .explain(&g, home, &ctx(&chain2))
            .starts_with("matched_blocks=8 "));
    }

    #[test]
    fn threads_share_one_index() {
        let g = group(4);
        let mut first = PrefixCache::default();
        let mut second = first.share(9).unwrap();
        let conversation = block_chain(&[7u8; 3000]);
        let home = first.pick(&g, &ctx(&conversation)).unwrap();
        // The next turn arrives on another thread's connection: it finds the same engine.
        let mut next_turn = vec![7u8; 3000];
        next_turn.extend_from_slice(&[8u8; 700]);
        assert_eq!(second.pick(&g, &ctx(&block_chain(&next_turn))), Some(home));
        assert_eq!(first.index_len(), second.index_len());
        assert!(first.index_len().unwrap() >= conversation.len());
    }

    #[test]
    fn when_every_engine_is_saturated_the_match_is_kept() {
        let g = group(2);
        let mut pc = PrefixCache::default();
        let chain = block_chain(&[5u8; 2000]);
        let home = pc.pick(&g, &ctx(&chain)).unwrap();
        g[home].record_figures(figures(2, 4), 0, 10_000);
        g[1 - home].record_figures(figures(1, 4), 0, 10_000);
        assert_eq!(pc.pick(&g, &ctx(&chain)), Some(home));
        assert!(!pc.explain(&g, home, &ctx(&chain)).contains("passed_over"));
        // Without figures (no metrics endpoint) nothing is judged saturated.
        let g = group(2);
        let mut pc = PrefixCache::default();
        let home = pc.pick(&g, &ctx(&chain)).unwrap();
        let _busy: Vec<_> = (0..3).map(|_| g[home].start_request()).collect();
        assert_eq!(pc.pick(&g, &ctx(&chain)), Some(home));
    }

    #[test]
    fn no_prompt_is_least_queue() {
        let g = group(3);
        let _busy = g[0].start_request();
        let mut pc = PrefixCache::default();
        assert_ne!(pc.pick(&g, &ctx(&[])), Some(0));
        assert_eq!(pc.index_len(), Some(0));
    }
}
