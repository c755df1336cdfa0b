//! A small, fast, seedable pseudo-random generator (SplitMix64).
//!
//! Balancers only need cheap, well-mixed numbers to break ties and sample candidates; a seed
//! makes a run reproducible in tests and lets each reactor thread draw its own sequence.

/// SplitMix64: one 64-bit state word, full period, passes BigCrush when used as here.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl Default for SplitMix64 {
    /// A generator with a fixed seed.
    fn default() -> Self {
        SplitMix64::new(0x5EED_5EED)
    }
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2^-32 for small n).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let v = r.below(5);
            seen[v] += 1;
        }
        for count in seen {
            assert!((1_600..2_400).contains(&count), "{seen:?}");
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let mut r = SplitMix64::new(42);
        let b: Vec<u64> = (0..8).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
    }
}
