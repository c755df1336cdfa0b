//! GCRA (the generic cell rate algorithm): a token bucket kept as one number, the theoretical
//! arrival time (TAT) of the next request, so it needs no refill timer and fits one atomic.
//!
//! Sans-io: time is passed in, in nanoseconds on any monotonic scale that starts above zero
//! (a stored TAT of 0 is a bucket never used, that is, a full one).

use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_config::Rate;

/// A limit's parameters: one request every `interval` ns, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds one request costs: the rate's period over its count.
    interval: u64,
    /// How far the TAT may run ahead of now: `interval * (burst - 1)`.
    tolerance: u64,
    /// The burst, as configured.
    burst: u32,
}

/// What [`Gcra`] decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request may pass.
    Allow {
        /// Requests the key may still send right now.
        remaining: u32,
        /// Nanoseconds until the key's bucket is full again.
        reset_ns: u64,
    },
    /// The request is over the limit.
    Deny {
        /// Nanoseconds until one request would pass.
        retry_after_ns: u64,
        /// Nanoseconds until the key's bucket is full again.
        reset_ns: u64,
    },
}

impl Gcra {
    /// `rate` with `burst` (at least 1).
    pub fn new(rate: Rate, burst: u32) -> Self {
        let interval = rate.interval_ns();
        let burst = burst.max(1);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst - 1)),
            burst,
        }
    }

    /// The configured burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The decision for a request at `now` against a key whose stored TAT is `tat`, and the
    /// TAT to store afterwards (unchanged when denied).
    pub fn decide(&self, tat: u64, now: u64) -> (Decision, u64) {
        let tat = tat.max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let decision = Decision::Deny {
                retry_after_ns: ahead - self.tolerance,
                reset_ns: ahead,
            };
            return (decision, tat);
        }
        let new_tat = tat.saturating_add(self.interval);
        let remaining = (self.tolerance - ahead) / self.interval;
        let decision = Decision::Allow {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_ns: new_tat - now,
        };
        (decision, new_tat)
    }

    /// [`Gcra::decide`] on a TAT shared by every thread: a lock-free compare-and-swap loop, so
    /// N threads together still allow only the configured rate.
    pub fn check_atomic(&self, cell: &AtomicU64, now: u64) -> Decision {
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            let (decision, new_tat) = self.decide(tat, now);
            if matches!(decision, Decision::Deny { .. }) || new_tat == tat {
                return decision;
            }
            match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return decision,
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn gcra(count: u32, secs: u64, burst: u32) -> Gcra {
        Gcra::new(
            Rate {
                count,
                per: Duration::from_secs(secs),
            },
            burst,
        )
    }

    /// Runs requests at `times` (ms) and returns which passed.
    fn run(g: &Gcra, times: &[u64]) -> Vec<bool> {
        let mut tat = 0;
        times
            .iter()
            .map(|t| {
                let (d, next) = g.decide(tat, 1 + t * MS);
                tat = next;
                matches!(d, Decision::Allow { .. })
            })
            .collect()
    }

    #[test]
    fn a_burst_then_the_rate() {
        // 10/s, burst 3: three at once, then one every 100ms.
        let g = gcra(10, 1, 3);
        assert_eq!(
            run(&g, &[0, 0, 0, 0, 50, 100, 150, 200, 200]),
            [true, true, true, false, false, true, false, true, false]
        );
    }

    #[test]
    fn remaining_reset_and_retry_after() {
        let g = gcra(10, 1, 3);
        let now = 1_000 * MS;
        let (d, tat) = g.decide(0, now);
        assert_eq!(
            d,
            Decision::Allow {
                remaining: 2,
                reset_ns: 100 * MS
            }
        );
        let (d, tat) = g.decide(tat, now);
        assert_eq!(
            d,
            Decision::Allow {
                remaining: 1,
                reset_ns: 200 * MS
            }
        );
        let (_, tat) = g.decide(tat, now);
        let (d, same) = g.decide(tat, now);
        assert_eq!(
            d,
            Decision::Deny {
                retry_after_ns: 100 * MS,
                reset_ns: 300 * MS
            }
        );
        assert_eq!(same, tat, "a refusal costs nothing");
        // 100ms later exactly one passes again.
        let (d, _) = g.decide(tat, now + 100 * MS);
        assert_eq!(
            d,
            Decision::Allow {
                remaining: 0,
                reset_ns: 300 * MS
            }
        );
    }

    #[test]
    fn burst_one_spaces_requests_evenly() {
        let g = gcra(60, 60, 1);
        assert_eq!(
            run(&g, &[0, 999, 1000, 1500, 2000]),
            [true, false, true, false, true]
        );
    }

    #[test]
    fn long_idle_refills_only_to_the_burst() {
        let g = gcra(1, 1, 2);
        assert_eq!(
            run(&g, &[0, 0, 0, 100_000, 100_000, 100_000]),
            [true, true, false, true, true, false]
        );
    }

    #[test]
    fn over_any_window_no_more_than_burst_plus_rate_pass() {
        // A property over many request patterns: in [0, T] at most burst + T/interval pass.
        let g = gcra(100, 1, 5);
        let mut seed = 0x1234_5678_u64;
        for _ in 0..200 {
            let mut t = 0;
            let mut times = Vec::new();
            for _ in 0..300 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                t += (seed >> 33) % 7;
                times.push(t);
            }
            let passed = run(&g, &times).iter().filter(|p| **p).count() as u64;
            let span = times.last().unwrap();
            assert!(passed <= 5 + span / 10 + 1, "{passed} in {span}ms");
        }
    }

    #[test]
    fn threads_share_one_atomic_tat() {
        let g = gcra(1, 3600, 100);
        let cell = std::sync::Arc::new(AtomicU64::new(0));
        let passed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let cell = &cell;
                    s.spawn(move || {
                        (0..100)
                            .filter(|_| matches!(g.check_atomic(cell, 1), Decision::Allow { .. }))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, 100, "4 threads together get exactly the burst");
    }
}
