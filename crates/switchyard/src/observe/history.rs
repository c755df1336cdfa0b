//! The history of the key series behind `/history` and the dashboard: one ring buffer per
//! resolution, fixed in size when it is made.
//!
//! Sans-io: a sample arrives with its time as an argument, so the buffer is tested with any
//! clock. The finest tier keeps every sample (one per sampler interval); each coarser tier keeps
//! the mean of the samples that fell into each of its steps, so an hour at one second and a day
//! at one minute cost `3600 + 1440` rows, whatever the traffic. A row holds one `f32` per
//! series; a value that was not available (a backend slot with no backend, a figure not yet
//! scraped) is stored as NaN and reported as `null`.

use std::collections::HashMap;

/// One resolution: a sample every `step_ms`, the last `len` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierSpec {
    /// Milliseconds between rows.
    pub step_ms: u64,
    /// Rows kept.
    pub len: usize,
}

/// A ring of rows at one resolution.
#[derive(Debug)]
struct Tier {
    step_ms: u64,
    len: usize,
    /// Row times (ms), `len` of them once full; `next` is where the next row goes.
    times: Vec<u64>,
    /// Row values, `width` per row, in the same order as `times`.
    values: Vec<f32>,
    next: usize,
    /// For a tier that averages: the step being accumulated, its sums and counts.
    open: Option<u64>,
    sums: Vec<f64>,
    counts: Vec<u32>,
}

impl Tier {
    fn new(spec: TierSpec, width: usize) -> Self {
        let len = spec.len.max(1);
        Tier {
            step_ms: spec.step_ms.max(1),
            len,
            times: Vec::with_capacity(len),
            values: Vec::with_capacity(len * width),
            next: 0,
            open: None,
            sums: vec![0.0; width],
            counts: vec![0; width],
        }
    }

    fn push(&mut self, t: u64, row: &[f32]) {
        let width = row.len();
        if self.times.len() < self.len {
            self.times.push(t);
            self.values.extend_from_slice(row);
        } else {
            self.times[self.next] = t;
            self.values[self.next * width..(self.next + 1) * width].copy_from_slice(row);
        }
        self.next = (self.next + 1) % self.len;
    }

    /// Adds a sample to the step being averaged; a sample in a later step first closes the
    /// open one (its row is stamped with the step's start).
    fn accumulate(&mut self, t: u64, row: &[f32]) {
        let step = t / self.step_ms;
        match self.open {
            Some(open) if open == step => {}
            Some(open) if step < open => return, // time never goes back; ignore if it does
            Some(open) => {
                self.close(open);
                self.open = Some(step);
            }
            None => self.open = Some(step),
        }
        for (i, v) in row.iter().enumerate() {
            if v.is_finite() {
                self.sums[i] += f64::from(*v);
                self.counts[i] += 1;
            }
        }
    }

    fn close(&mut self, step: u64) {
        let mean: Vec<f32> = self
            .sums
            .iter()
            .zip(&self.counts)
            .map(|(s, n)| {
                if *n == 0 {
                    f32::NAN
                } else {
                    (s / f64::from(*n)) as f32
                }
            })
            .collect();
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.counts.iter_mut().for_each(|n| *n = 0);
        self.push(step * self.step_ms, &mean);
    }

    /// Row indices oldest first.
    fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.times.len();
        let start = if n < self.len { 0 } else { self.next };
        (0..n).map(move |k| (start + k) % n.max(1))
    }

    fn oldest(&self) -> Option<u64> {
        self.order().next().map(|i| self.times[i])
    }
}

/// The points of one series since a time, at one resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    /// Milliseconds between points.
    pub step_ms: u64,
    /// `(time in ms, value)`, oldest first; `None` where the value was not available.
    pub points: Vec<(u64, Option<f32>)>,
}

/// Every tier of every series.
#[derive(Debug)]
pub struct History {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, usize>,
    tiers: Vec<Tier>,
}

impl History {
    /// A history of the series `names` at the resolutions `tiers`, finest first (a tier with a
    /// step no longer than the first's records every sample as it comes).
    pub fn new(names: Vec<String>, tiers: &[TierSpec]) -> Self {
        let names: Vec<Box<str>> = names.into_iter().map(String::into_boxed_str).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let width = names.len();
        History {
            tiers: tiers.iter().map(|s| Tier::new(*s, width)).collect(),
            names,
            index,
        }
    }

    /// The series' names, in row order.
    pub fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// Records one sample taken at `t_ms`: one value per series, in the order of
    /// [`History::names`] (NaN for not available). A row of the wrong width is ignored.
    pub fn record(&mut self, t_ms: u64, row: &[f32]) {
        if row.len() != self.names.len() {
            return;
        }
        let finest = self.tiers.first().map_or(0, |t| t.step_ms);
        for tier in &mut self.tiers {
            if tier.step_ms <= finest {
                tier.push(t_ms, row);
            } else {
                tier.accumulate(t_ms, row);
            }
        }
    }

    /// The points of `series` at or after `since_ms`, from the finest tier that still holds
    /// `since_ms` (else the coarsest), or `None` for an unknown series.
    pub fn query(&self, series: &str, since_ms: u64) -> Option<Points> {
        let col = *self.index.get(series)?;
        let width = self.names.len();
        let tier = self
            .tiers
            .iter()
            .find(|t| t.oldest().is_some_and(|o| o <= since_ms))
            .or_else(|| {
                // Nothing reaches back that far: the tier that reaches back furthest.
                self.tiers
                    .iter()
                    .filter(|t| !t.times.is_empty())
                    .min_by_key(|t| t.oldest())
            })
            .or(self.tiers.first())?;
        let points = tier
            .order()
            .filter(|&i| tier.times[i] >= since_ms)
            .map(|i| {
                let v = tier.values[i * width + col];
                (tier.times[i], v.is_finite().then_some(v))
            })
            .collect();
        Some(Points {
            step_ms: tier.step_ms,
            points,
        })
    }

    /// Bytes held by the rings once full (what the window costs, fixed at creation).
    pub fn memory_bytes(&self) -> usize {
        let width = self.names.len();
        self.tiers
            .iter()
            .map(|t| {
                t.len * (std::mem::size_of::<u64>() + width * std::mem::size_of::<f32>())
                    + width * (std::mem::size_of::<f64>() + std::mem::size_of::<u32>())
            })
            .sum()
    }

    /// Forgets column `series`'s past (a backend slot taken by another backend): its values
    /// become not available.
    pub fn clear(&mut self, series: &str) {
        let Some(&col) = self.index.get(series) else {
            return;
        };
        let width = self.names.len();
        for tier in &mut self.tiers {
            for row in 0..tier.times.len() {
                tier.values[row * width + col] = f32::NAN;
            }
            tier.sums[col] = 0.0;
            tier.counts[col] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        History::new(
            vec!["rps".into(), "p99".into()],
            &[
                TierSpec {
                    step_ms: 1_000,
                    len: 5,
                },
                TierSpec {
                    step_ms: 60_000,
                    len: 3,
                },
            ],
        )
    }

    fn values(p: &Points) -> Vec<Option<f32>> {
        p.points.iter().map(|(_, v)| *v).collect()
    }

    #[test]
    fn the_fine_ring_keeps_the_last_samples_in_order() {
        let mut h = history();
        for s in 0..8u64 {
            h.record(s * 1_000, &[s as f32, 0.0]);
        }
        let p = h.query("rps", 3_000).unwrap();
        assert_eq!(p.step_ms, 1_000);
        assert_eq!(
            p.points.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![3_000, 4_000, 5_000, 6_000, 7_000]
        );
        assert_eq!(values(&p), [3.0, 4.0, 5.0, 6.0, 7.0].map(Some).to_vec());
        assert_eq!(
            values(&h.query("rps", 6_500).unwrap()),
            vec![Some(7.0)],
            "only points at or after since"
        );
    }

    #[test]
    fn the_coarse_ring_averages_each_step_and_answers_older_queries() {
        let mut h = history();
        // Two minutes of samples, one per second: the first minute at 10, the second at 20.
        for s in 0..120u64 {
            let v = if s < 60 { 10.0 } else { 20.0 };
            h.record(s * 1_000, &[v, f32::NAN]);
        }
        // A sample in the third minute closes the second.
        h.record(120_000, &[30.0, f32::NAN]);
        let p = h.query("rps", 0).unwrap();
        assert_eq!(
            p.step_ms, 60_000,
            "the fine ring no longer reaches back to 0"
        );
        assert_eq!(p.points, vec![(0, Some(10.0)), (60_000, Some(20.0))]);
        assert_eq!(
            values(&h.query("p99", 0).unwrap()),
            vec![None, None],
            "not available stays not available"
        );
        // A recent query is answered at one second.
        assert_eq!(h.query("rps", 117_000).unwrap().step_ms, 1_000);
    }

    #[test]
    fn the_coarse_ring_is_bounded_too() {
        let mut h = history();
        // Ten minutes at one sample per 30 s: the fine ring reaches back two minutes, the
        // coarse one three (the tenth minute is still open).
        for half in 0..20u64 {
            h.record(half * 30_000, &[(half / 2) as f32, 1.0]);
        }
        let p = h.query("rps", 0).unwrap();
        assert_eq!(p.step_ms, 60_000);
        assert_eq!(values(&p), [6.0, 7.0, 8.0].map(Some).to_vec());
    }

    #[test]
    fn unknown_series_wrong_widths_and_clearing() {
        let mut h = history();
        assert!(h.query("nope", 0).is_none());
        h.record(0, &[1.0]);
        assert!(h.query("rps", 0).unwrap().points.is_empty());
        h.record(1_000, &[1.0, 2.0]);
        h.clear("p99");
        assert_eq!(values(&h.query("p99", 0).unwrap()), vec![None]);
        assert_eq!(values(&h.query("rps", 0).unwrap()), vec![Some(1.0)]);
    }

    #[test]
    fn memory_is_fixed_by_the_window() {
        let mut h = history();
        let before = h.memory_bytes();
        for s in 0..10_000u64 {
            h.record(s * 1_000, &[1.0, 2.0]);
        }
        assert_eq!(h.memory_bytes(), before);
        assert_eq!(before, 5 * (8 + 8) + 3 * (8 + 8) + 2 * 2 * 12);
    }
}
