//! Which backends of a route serve which model (the route's model table).

use std::collections::{BTreeSet, HashMap};

use std::borrow::Cow;

use switchyard_config::versions::{compare_versions, ModelVersions, VersionChoice};
use switchyard_config::BackendConfig;

/// For one route: per model id, the group members that do *not* serve it (what a balancer must
/// exclude), and every id served.
#[derive(Debug, Clone, Default)]
pub struct ModelTable {
    excluded: HashMap<String, Vec<usize>>,
    /// Per group member, the ids it declares (empty: it serves any model).
    declared: Vec<Vec<String>>,
}

impl ModelTable {
    /// The table for a group of `members` (in group order), or `None` when none of them
    /// declares `models` (the route does no model routing).
    pub fn new(members: &[&BackendConfig]) -> Option<Self> {
        if members.iter().all(|b| b.models.is_empty()) {
            return None;
        }
        // Every key a request may use: `name@version` pins a version, `name` takes any.
        let mut serving: HashMap<String, BTreeSet<usize>> = HashMap::new();
        for (i, b) in members.iter().enumerate() {
            for m in &b.models {
                serving.entry(m.to_string()).or_default().insert(i);
                serving.entry(m.name.clone()).or_default().insert(i);
            }
        }
        let wildcard: Vec<usize> = (0..members.len())
            .filter(|i| members[*i].models.is_empty())
            .collect();
        let excluded = serving
            .into_iter()
            .map(|(id, set)| {
                let out = (0..members.len())
                    .filter(|i| !set.contains(i) && !wildcard.contains(i))
                    .collect();
                (id, out)
            })
            .collect();
        let declared = members
            .iter()
            .map(|b| b.models.iter().map(ToString::to_string).collect())
            .collect();
        Some(ModelTable { excluded, declared })
    }

    /// The members to exclude for `model`, or `None` if no member serves it.
    pub fn excluded(&self, model: &str) -> Option<&[usize]> {
        self.excluded.get(model).map(Vec::as_slice)
    }

    /// The ids declared by the members for which `up(member)` holds, sorted, without repeats.
    pub fn served(&self, up: impl Fn(usize) -> bool) -> Vec<String> {
        let mut all: BTreeSet<&String> = BTreeSet::new();
        for (i, ids) in self.declared.iter().enumerate() {
            if up(i) {
                all.extend(ids);
            }
        }
        all.into_iter().cloned().collect()
    }
}

/// Which id a request for `model` is served as on a route with `versions` rules: the model
/// itself when it names a version or has no rule; else the version the rule picks (`draw` is a
/// uniform random number for weighted rules), falling back to `model` (any version) when no
/// member for which `up` holds serves the picked version.
pub fn choose_version<'a>(
    rules: &[ModelVersions],
    table: &ModelTable,
    model: &'a str,
    up: impl Fn(usize) -> bool,
    draw: u64,
) -> Cow<'a, str> {
    if model.contains('@') {
        return Cow::Borrowed(model);
    }
    let Some(rule) = rules.iter().find(|r| r.model == model) else {
        return Cow::Borrowed(model);
    };
    let picked = match &rule.choice {
        VersionChoice::Newest => table.newest(model, &up),
        VersionChoice::Weighted(entries) => {
            let total: u64 = entries.iter().map(|(_, w)| u64::from(*w)).sum();
            let mut point = draw % total.max(1);
            entries
                .iter()
                .find(|(_, w)| {
                    let hit = point < u64::from(*w);
                    point = point.saturating_sub(u64::from(*w));
                    hit
                })
                .map(|(v, _)| format!("{model}@{v}"))
        }
    };
    match picked {
        Some(id) if table.serves(&id, &up) => Cow::Owned(id),
        _ => Cow::Borrowed(model),
    }
}

impl ModelTable {
    /// Whether a member for which `up` holds serves `id`.
    pub fn serves(&self, id: &str, up: impl Fn(usize) -> bool) -> bool {
        self.excluded(id).is_some_and(|excluded| {
            (0..self.declared.len()).any(|m| !excluded.contains(&m) && up(m))
        })
    }

    /// `name@VERSION` with the highest version that a member for which `up` holds declares.
    pub fn newest(&self, name: &str, up: impl Fn(usize) -> bool) -> Option<String> {
        let mut best: Option<&str> = None;
        for (m, ids) in self.declared.iter().enumerate() {
            if !up(m) {
                continue;
            }
            for id in ids {
                let Some(v) = id.strip_prefix(name).and_then(|r| r.strip_prefix('@')) else {
                    continue;
                };
                if best.is_none_or(|b| compare_versions(v, b).is_gt()) {
                    best = Some(v);
                }
            }
        }
        best.map(|v| format!("{name}@{v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, models: &[&str]) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            address: "127.0.0.1:1".parse().unwrap(),
            weight: 1,
            metrics: None,
            models: models.iter().map(|m| m.parse().unwrap()).collect(),
            health: None,
            protocol: Default::default(),
            tls: None,
        }
    }

    #[test]
    fn versions_names_and_wildcards() {
        let a = backend("a", &["llama@v1"]);
        let b = backend("b", &["llama@v2", "qwen"]);
        let any = backend("any", &[]);
        let t = ModelTable::new(&[&a, &b, &any]).unwrap();
        assert_eq!(t.excluded("llama"), Some(&[][..]));
        assert_eq!(t.excluded("llama@v2"), Some(&[0][..]));
        assert_eq!(t.excluded("qwen"), Some(&[0][..]));
        assert_eq!(t.excluded("mistral"), None);
        assert_eq!(t.served(|_| true), vec!["llama@v1", "llama@v2", "qwen"]);
        assert_eq!(t.served(|i| i != 1), vec!["llama@v1"]);
        assert!(ModelTable::new(&[&any]).is_none());
    }

    #[test]
    fn versions_are_chosen_by_rule() {
        let v1 = backend("a", &["llama@v1"]);
        let v2 = backend("b", &["llama@v2"]);
        let v10 = backend("c", &["llama@v10", "qwen"]);
        let t = ModelTable::new(&[&v1, &v2, &v10]).unwrap();
        let rules = switchyard_config::versions::parse_versions("llama@v1 3, llama@v2 1").unwrap();
        let all = |_: usize| true;
        let picks: Vec<String> = (0..8)
            .map(|d| choose_version(&rules, &t, "llama", all, d).into_owned())
            .collect();
        assert_eq!(
            picks,
            ["llama@v1", "llama@v1", "llama@v1", "llama@v2"].repeat(2)
        );
        // A version asked for is kept; a model without a rule is left alone.
        assert_eq!(choose_version(&rules, &t, "llama@v10", all, 0), "llama@v10");
        assert_eq!(choose_version(&rules, &t, "qwen", all, 0), "qwen");
        // The picked version is down: any version of the model.
        assert_eq!(choose_version(&rules, &t, "llama", |m| m != 0, 0), "llama");

        let newest = switchyard_config::versions::parse_versions("llama@newest").unwrap();
        assert_eq!(choose_version(&newest, &t, "llama", all, 0), "llama@v10");
        assert_eq!(
            choose_version(&newest, &t, "llama", |m| m != 2, 0),
            "llama@v2"
        );
        assert_eq!(choose_version(&newest, &t, "llama", |_| false, 0), "llama");
    }
}
