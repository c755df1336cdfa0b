//! Replacing the alert rules of a running sampler (a reload of `[alert NAME]` sections or
//! `default_alerts`).
//!
//! A rule that is unchanged (same name, series, condition and severity) keeps its alerts as
//! they stand: pending, firing or clearing. A new or changed rule starts inactive. The alerts
//! of a removed (or changed) rule that were firing resolve: the next sample reports each as
//! resolved (logged, and notified when a webhook is set), with its last value, so no receiver
//! is left with an alert that never ends; then they are gone from `/admin/alerts`.

use super::{target, AlertEvent, Rule, RuleState, Sampler, Target, UnknownSeries, BACKEND_FIELDS};

impl Sampler {
    /// Watches `rules` from now on (see the module documentation); `now_ms` stamps the
    /// resolutions of removed rules' firing alerts. An unknown series changes nothing.
    pub fn set_rules(&mut self, rules: Vec<Rule>, now_ms: u64) -> Result<(), UnknownSeries> {
        let targets = rules
            .iter()
            .map(|r| target(r, self.slots))
            .collect::<Result<Vec<_>, _>>()?;
        let mut old = std::mem::take(&mut self.rules);
        let mut next = Vec::with_capacity(rules.len());
        for (rule, target) in rules.into_iter().zip(targets) {
            match old.iter().position(|o| o.rule == rule) {
                Some(i) => next.push(old.remove(i)),
                None => next.push(RuleState { rule, target }),
            }
        }
        for gone in old {
            self.retired.extend(resolutions(&gone, now_ms));
        }
        self.rules = next;
        Ok(())
    }
}

/// A resolution for each firing alert of `r`.
fn resolutions(r: &RuleState, now_ms: u64) -> Vec<AlertEvent> {
    let event = |series: String, value: Option<f64>| AlertEvent {
        rule: r.rule.name.clone(),
        series,
        severity: r.rule.severity,
        firing: false,
        value: value.unwrap_or(f64::NAN),
        at_ms: now_ms,
    };
    match &r.target {
        Target::Global(_, a) if a.is_firing() => vec![event(r.rule.series.clone(), a.last_value())],
        Target::Global(..) => Vec::new(),
        Target::Backends(field, alerts) => alerts
            .iter()
            .flatten()
            .filter(|(_, a)| a.is_firing())
            .map(|(name, a)| {
                let series = format!("backend:{name}:{}", BACKEND_FIELDS[*field]);
                event(series, a.last_value())
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::alerts::{Comparison, Condition};
    use super::super::super::history::TierSpec;
    use super::super::{Reading, Severity};
    use super::*;

    fn rule(name: &str, threshold: f64) -> Rule {
        Rule {
            name: name.into(),
            series: "active_connections".into(),
            condition: Condition {
                comparison: Comparison::Above,
                threshold,
                resolve_threshold: threshold,
                for_ms: 0,
                resolve_for_ms: 0,
            },
            severity: Severity::Warning,
        }
    }

    fn reading(active: u64) -> Reading {
        Reading {
            requests: 0,
            responses: 0,
            errors: 0,
            latency: Default::default(),
            active_connections: active,
            backends: Vec::new(),
        }
    }

    #[test]
    fn unchanged_rules_keep_their_state_and_removed_firing_ones_resolve_once() {
        let tiers = [TierSpec {
            step_ms: 1000,
            len: 4,
        }];
        let mut s = Sampler::new(0, &tiers, vec![rule("kept", 1.0), rule("gone", 1.0)]).unwrap();
        let fired = s.sample(1000, &reading(5));
        assert_eq!(fired.len(), 2, "{fired:?}");
        s.set_rules(vec![rule("kept", 1.0), rule("new", 1.0)], 1500)
            .unwrap();
        let names = |s: &Sampler| -> Vec<String> { s.firing().into_iter().map(|f| f.0).collect() };
        assert_eq!(
            names(&s),
            ["kept"],
            "kept stays firing, gone is no longer listed"
        );
        let events = s.sample(2000, &reading(5));
        let summary: Vec<(&str, bool)> = events.iter().map(|e| (&*e.rule, e.firing)).collect();
        assert_eq!(summary, [("gone", false), ("new", true)]);
        assert_eq!(events[0].at_ms, 1500);
        assert!(s.sample(3000, &reading(5)).is_empty(), "reported once");
        let bad = Rule {
            series: "nope".into(),
            ..rule("bad", 1.0)
        };
        assert!(s.set_rules(vec![bad], 4000).is_err());
        assert_eq!(names(&s), ["kept", "new"], "a refused set changes nothing");
    }
}
