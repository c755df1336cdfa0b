//! Which backends of a route serve which model (the route's model table).

use std::collections::{BTreeSet, HashMap};

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
}
