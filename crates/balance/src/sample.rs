//! Keeping a pick O(1) in large groups.
//!
//! The balancers that rank backends (`least_queue`, `gpu`, the fallbacks of `prefix_cache` and
//! `consistent_hash`) scan every member of a group of up to [`FULL_SCAN_MAX`]: exact, and cheap
//! at that size. Above it they compare two members drawn at random (the "power of two choices":
//! nearly as good as the exact minimum, and it spreads requests instead of herding them onto
//! one backend between two scrapes). `least_conn` and `response_time` always use two choices.
//! Draws are by rejection: an ineligible draw is drawn again, up to [`DRAWS`] times; a group
//! where most members are down or excluded is listed in full instead, so the result is the same
//! uniform choice among eligible members either way.

use std::sync::Arc;

use crate::{BackendState, PickContext, SplitMix64};

/// The largest group scanned in full by the ranking balancers.
pub const FULL_SCAN_MAX: usize = 64;
/// Random draws tried before listing the eligible members.
pub const DRAWS: usize = 16;

/// What [`two_choices`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choices {
    /// No member is eligible.
    None,
    /// Exactly one is.
    One(usize),
    /// Two distinct eligible members, drawn uniformly.
    Two(usize, usize),
}

/// Two distinct members for which `ok` holds (and the context allows), chosen uniformly at
/// random; `scratch` is reused for the listing fallback.
pub fn two_choices(
    backends: &[Arc<BackendState>],
    ctx: &PickContext<'_>,
    rng: &mut SplitMix64,
    scratch: &mut Vec<usize>,
    ok: impl Fn(&BackendState) -> bool,
) -> Choices {
    let n = backends.len();
    let usable = |i: usize| ctx.eligible(i, &backends[i]) && ok(&backends[i]);
    if n > FULL_SCAN_MAX {
        let mut first: Option<usize> = None;
        for _ in 0..DRAWS {
            let i = rng.below(n);
            if first == Some(i) || !usable(i) {
                continue;
            }
            match first {
                None => first = Some(i),
                Some(a) => return Choices::Two(a, i),
            }
        }
    }
    scratch.clear();
    scratch.extend((0..n).filter(|i| usable(*i)));
    match scratch.len() {
        0 => Choices::None,
        1 => Choices::One(scratch[0]),
        m => {
            let x = rng.below(m);
            let mut y = rng.below(m - 1);
            if y >= x {
                y += 1;
            }
            Choices::Two(scratch[x], scratch[y])
        }
    }
}

/// The member with the smallest `key`: every member compared in groups up to
/// [`FULL_SCAN_MAX`] (ties going round the group via `next`), the better of two random ones
/// above.
pub fn min_by_key<K: PartialOrd>(
    backends: &[Arc<BackendState>],
    ctx: &PickContext<'_>,
    next: &mut usize,
    rng: &mut SplitMix64,
    scratch: &mut Vec<usize>,
    mut key: impl FnMut(&BackendState) -> K,
) -> Option<usize> {
    if backends.len() <= FULL_SCAN_MAX {
        return crate::rotating_min(backends, ctx, next, key);
    }
    match two_choices(backends, ctx, rng, scratch, |_| true) {
        Choices::None => None,
        Choices::One(i) => Some(i),
        Choices::Two(a, b) => Some(if key(&backends[b]) < key(&backends[a]) {
            b
        } else {
            a
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize) -> Vec<Arc<BackendState>> {
        (0..n)
            .map(|i| Arc::new(BackendState::new(format!("b{i}"), 1)))
            .collect()
    }

    #[test]
    fn two_choices_are_distinct_eligible_and_cover_the_group() {
        for n in [4usize, 10, 65, 1000] {
            let g = group(n);
            let exclude: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
            let ctx = PickContext {
                exclude: &exclude,
                ..PickContext::at(0)
            };
            let mut rng = SplitMix64::new(n as u64);
            let mut scratch = Vec::new();
            let mut seen = vec![false; n];
            for _ in 0..(n * 40) {
                match two_choices(&g, &ctx, &mut rng, &mut scratch, |_| true) {
                    Choices::Two(a, b) => {
                        assert_ne!(a, b);
                        assert!(a % 3 != 0 && b % 3 != 0, "{a} {b}");
                        seen[a] = true;
                        seen[b] = true;
                    }
                    other => panic!("{other:?} with n={n}"),
                }
            }
            assert!((0..n).filter(|i| i % 3 != 0).all(|i| seen[i]), "n={n}");
        }
    }

    #[test]
    fn mostly_excluded_large_groups_still_find_the_eligible_ones() {
        let g = group(1000);
        let exclude: Vec<usize> = (0..1000).filter(|i| *i != 777).collect();
        let ctx = PickContext {
            exclude: &exclude,
            ..PickContext::at(0)
        };
        let mut rng = SplitMix64::new(1);
        let mut scratch = Vec::new();
        assert_eq!(
            two_choices(&g, &ctx, &mut rng, &mut scratch, |_| true),
            Choices::One(777)
        );
        let all: Vec<usize> = (0..1000).collect();
        let ctx = PickContext {
            exclude: &all,
            ..PickContext::at(0)
        };
        assert_eq!(
            two_choices(&g, &ctx, &mut rng, &mut scratch, |_| true),
            Choices::None
        );
    }

    #[test]
    fn large_groups_prefer_the_smaller_key() {
        let g = group(200);
        let mut rng = SplitMix64::new(3);
        let (mut next, mut scratch) = (0, Vec::new());
        let ctx = PickContext::at(0);
        // Key = index: the better of two random members is below the median far more often.
        let low = (0..2000)
            .filter(|_| {
                min_by_key(&g, &ctx, &mut next, &mut rng, &mut scratch, |b| {
                    b.name()[1..].parse::<usize>().unwrap()
                })
                .unwrap()
                    < 100
            })
            .count();
        assert!(low > 1300, "{low} of 2000 below the median");
    }
}
