//! The alert state machine: a rule watches one series, fires when its condition has held for
//! the rule's `for` duration, and resolves when the value has been back past the resolve
//! threshold (hysteresis) for the rule's resolve duration.
//!
//! Sans-io: each evaluation takes the sample's value and time as arguments and returns the
//! transition, if any, for the caller to log, list and notify.

/// How a value is compared with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `value > threshold`.
    Above,
    /// `value < threshold`.
    Below,
}

impl Comparison {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::Below => value < threshold,
        }
    }
}

/// What a rule watches and when it fires.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Above or below.
    pub comparison: Comparison,
    /// The value past which the condition holds.
    pub threshold: f64,
    /// The value the series must come back past to resolve (equal to `threshold` for no
    /// hysteresis; below it for `Above`, above it for `Below`).
    pub resolve_threshold: f64,
    /// How long the condition must hold before the alert fires.
    pub for_ms: u64,
    /// How long the value must stay resolved before the alert resolves.
    pub resolve_for_ms: u64,
}

impl Condition {
    fn firing(&self, v: f64) -> bool {
        self.comparison.holds(v, self.threshold)
    }

    /// Whether `v` is back past the resolve threshold (not merely short of the firing one).
    fn resolved(&self, v: f64) -> bool {
        match self.comparison {
            Comparison::Above => v <= self.resolve_threshold,
            Comparison::Below => v >= self.resolve_threshold,
        }
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// The condition does not hold.
    Inactive,
    /// The condition has held since `since`, not yet for the rule's `for`.
    Pending {
        /// When it started holding (ms).
        since: u64,
    },
    /// Fired at `since`; `clearing` is when the value came back past the resolve threshold,
    /// if it has.
    Firing {
        /// When it fired (ms).
        since: u64,
        /// When the value came back, while waiting out the resolve duration.
        clearing: Option<u64>,
    },
}

/// A change worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// The alert fired with this value.
    Fired(f64),
    /// The alert resolved with this value.
    Resolved(f64),
}

/// One rule's alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    condition: Condition,
    state: State,
    last: Option<f64>,
}

impl Alert {
    /// An inactive alert for `condition`.
    pub fn new(condition: Condition) -> Self {
        Alert {
            condition,
            state: State::Inactive,
            last: None,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// The last value evaluated.
    pub fn last_value(&self) -> Option<f64> {
        self.last
    }

    /// Whether it is firing.
    pub fn is_firing(&self) -> bool {
        matches!(self.state, State::Firing { .. })
    }

    /// Evaluates the sample `value` taken at `now_ms`. A missing value (`None` or NaN: no data)
    /// resets a pending alert and leaves a firing one firing: no data is no evidence of
    /// recovery.
    pub fn evaluate(&mut self, value: Option<f64>, now_ms: u64) -> Option<Transition> {
        let c = &self.condition;
        let Some(v) = value.filter(|v| v.is_finite()) else {
            if let State::Pending { .. } = self.state {
                self.state = State::Inactive;
            }
            return None;
        };
        self.last = Some(v);
        match self.state {
            State::Inactive | State::Pending { .. } if !c.firing(v) => {
                self.state = State::Inactive;
                None
            }
            State::Inactive | State::Pending { .. } => {
                let since = match self.state {
                    State::Pending { since } => since,
                    _ => now_ms,
                };
                if now_ms.saturating_sub(since) >= c.for_ms {
                    self.state = State::Firing {
                        since: now_ms,
                        clearing: None,
                    };
                    Some(Transition::Fired(v))
                } else {
                    self.state = State::Pending { since };
                    None
                }
            }
            State::Firing { since, clearing } => {
                if !c.resolved(v) {
                    self.state = State::Firing {
                        since,
                        clearing: None,
                    };
                    return None;
                }
                let from = clearing.unwrap_or(now_ms);
                if now_ms.saturating_sub(from) >= c.resolve_for_ms {
                    self.state = State::Inactive;
                    Some(Transition::Resolved(v))
                } else {
                    self.state = State::Firing {
                        since,
                        clearing: Some(from),
                    };
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn above(threshold: f64, resolve: f64, for_ms: u64, resolve_for_ms: u64) -> Alert {
        Alert::new(Condition {
            comparison: Comparison::Above,
            threshold,
            resolve_threshold: resolve,
            for_ms,
            resolve_for_ms,
        })
    }

    #[test]
    fn fires_only_after_holding_for_its_duration() {
        let mut a = above(0.05, 0.05, 3_000, 0);
        assert_eq!(a.evaluate(Some(0.1), 0), None);
        assert_eq!(a.state(), State::Pending { since: 0 });
        assert_eq!(a.evaluate(Some(0.1), 2_000), None);
        assert_eq!(a.evaluate(Some(0.1), 3_000), Some(Transition::Fired(0.1)));
        assert!(a.is_firing());
        assert_eq!(a.evaluate(Some(0.2), 4_000), None, "fires once");
    }

    #[test]
    fn a_dip_restarts_the_pending_wait() {
        let mut a = above(10.0, 10.0, 2_000, 0);
        a.evaluate(Some(11.0), 0);
        a.evaluate(Some(9.0), 1_000);
        assert_eq!(a.state(), State::Inactive);
        a.evaluate(Some(11.0), 2_000);
        assert_eq!(a.evaluate(Some(11.0), 3_000), None);
        assert_eq!(a.evaluate(Some(11.0), 4_000), Some(Transition::Fired(11.0)));
    }

    #[test]
    fn zero_duration_fires_on_the_first_sample() {
        let mut a = above(1.0, 1.0, 0, 0);
        assert_eq!(a.evaluate(Some(2.0), 5), Some(Transition::Fired(2.0)));
        assert_eq!(a.evaluate(Some(0.5), 6), Some(Transition::Resolved(0.5)));
    }

    #[test]
    fn hysteresis_holds_between_the_thresholds() {
        let mut a = above(0.9, 0.8, 0, 0);
        assert_eq!(a.evaluate(Some(0.95), 0), Some(Transition::Fired(0.95)));
        assert_eq!(a.evaluate(Some(0.85), 1_000), None, "between: still firing");
        assert!(a.is_firing());
        assert_eq!(
            a.evaluate(Some(0.8), 2_000),
            Some(Transition::Resolved(0.8))
        );
        assert_eq!(
            a.evaluate(Some(0.85), 3_000),
            None,
            "between: stays resolved"
        );
        assert_eq!(a.state(), State::Inactive);
    }

    #[test]
    fn resolving_waits_its_duration_and_a_relapse_resets_it() {
        let mut a = above(100.0, 100.0, 0, 5_000);
        a.evaluate(Some(150.0), 0);
        assert_eq!(a.evaluate(Some(50.0), 1_000), None);
        assert_eq!(a.evaluate(Some(150.0), 3_000), None, "relapse");
        assert_eq!(a.evaluate(Some(50.0), 4_000), None);
        assert_eq!(a.evaluate(Some(50.0), 8_000), None, "4 s of the 5");
        assert_eq!(
            a.evaluate(Some(50.0), 9_000),
            Some(Transition::Resolved(50.0))
        );
    }

    #[test]
    fn below_rules_and_missing_data() {
        let mut a = Alert::new(Condition {
            comparison: Comparison::Below,
            threshold: 1.0,
            resolve_threshold: 1.0,
            for_ms: 1_000,
            resolve_for_ms: 0,
        });
        a.evaluate(Some(0.0), 0);
        assert_eq!(a.evaluate(None, 500), None);
        assert_eq!(a.state(), State::Inactive, "no data resets pending");
        a.evaluate(Some(0.0), 1_000);
        assert_eq!(a.evaluate(Some(0.0), 2_000), Some(Transition::Fired(0.0)));
        assert_eq!(a.evaluate(Some(f64::NAN), 3_000), None);
        assert!(a.is_firing(), "no data is no recovery");
        assert_eq!(
            a.evaluate(Some(1.0), 4_000),
            Some(Transition::Resolved(1.0))
        );
        assert_eq!(a.last_value(), Some(1.0));
    }
}
