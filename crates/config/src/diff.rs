//! What changed between two configs (for logging a reload).

use std::fmt;

use crate::model::Config;
use crate::render::{backend_values, l4_values, route_values, server_values};

/// One difference between two configs. Values are rendered as INI text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A `[server]` key's value changed.
    ServerKey {
        /// The key.
        key: String,
        /// The old value.
        old: String,
        /// The new value.
        new: String,
    },
    /// A `[backend NAME]` section was added.
    BackendAdded(String),
    /// A `[backend NAME]` section was removed.
    BackendRemoved(String),
    /// A key of a backend present in both configs changed.
    BackendChanged {
        /// The backend's name.
        name: String,
        /// The key.
        key: String,
        /// The old value.
        old: String,
        /// The new value.
        new: String,
    },
    /// A `[route NAME]` section was added.
    RouteAdded(String),
    /// A `[route NAME]` section was removed.
    RouteRemoved(String),
    /// A key of a route present in both configs changed.
    RouteChanged {
        /// The route's name.
        name: String,
        /// The key.
        key: String,
        /// The old value.
        old: String,
        /// The new value.
        new: String,
    },
    /// An `[l4 NAME]` section was added.
    L4Added(String),
    /// An `[l4 NAME]` section was removed.
    L4Removed(String),
    /// A key of an L4 listener present in both configs changed.
    L4Changed {
        /// The listener's name.
        name: String,
        /// The key.
        key: String,
        /// The old value.
        old: String,
        /// The new value.
        new: String,
    },
    /// A `[acl NAME]` section was added.
    AclAdded(String),
    /// A `[acl NAME]` section was removed.
    AclRemoved(String),
    /// A key of a `[acl NAME]` present in both configs changed.
    AclChanged {
        /// The ACL's name.
        name: String,
        /// The key.
        key: String,
        /// Its old value as INI text (empty if unset).
        old: String,
        /// Its new value as INI text (empty if unset).
        new: String,
    },
    /// A `[limit NAME]` section was added.
    LimitAdded(String),
    /// A `[limit NAME]` section was removed.
    LimitRemoved(String),
    /// A key of a `[limit NAME]` present in both configs changed.
    LimitChanged {
        /// The limit's name.
        name: String,
        /// The key.
        key: String,
        /// Its old value as INI text (empty if unset).
        old: String,
        /// Its new value as INI text (empty if unset).
        new: String,
    },
    /// A `[plugin NAME]` section was added.
    PluginAdded(String),
    /// A `[plugin NAME]` section was removed.
    PluginRemoved(String),
    /// A `[plugin NAME]` present in both configs has a different `path` or settings (the
    /// plugin is loaded again; its settings may be secrets, so they are not shown).
    PluginChanged(String),
    /// An `[alert NAME]` section was added.
    AlertAdded(String),
    /// An `[alert NAME]` section was removed.
    AlertRemoved(String),
    /// A key of an `[alert NAME]` present in both configs changed.
    AlertChanged {
        /// The alert's name.
        name: String,
        /// The key.
        key: String,
        /// Its old value as INI text (empty if unset).
        old: String,
        /// Its new value as INI text (empty if unset).
        new: String,
    },
    /// A `[budget NAME]` section was added.
    BudgetAdded(String),
    /// A `[budget NAME]` section was removed.
    BudgetRemoved(String),
    /// A key of a `[budget NAME]` present in both configs changed.
    BudgetChanged {
        /// The budget's name.
        name: String,
        /// The key.
        key: String,
        /// Its old value as INI text (empty if unset).
        old: String,
        /// Its new value as INI text (empty if unset).
        new: String,
    },
    /// A `[listener NAME]` section was added.
    ListenerAdded(String),
    /// A `[listener NAME]` section was removed.
    ListenerRemoved(String),
    /// A key of a `[listener NAME]` present in both configs changed.
    ListenerChanged {
        /// The listener's name.
        name: String,
        /// The key.
        key: String,
        /// The old value.
        old: String,
        /// The new value.
        new: String,
    },
}

/// Shows an empty value (an unset `host`) readably.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            write!(f, "(unset)")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ServerKey { key, old, new } => {
                write!(f, "server: {key} {} -> {}", Shown(old), Shown(new))
            }
            Change::BackendAdded(name) => write!(f, "backend {name}: added"),
            Change::BackendRemoved(name) => write!(f, "backend {name}: removed"),
            Change::BackendChanged {
                name,
                key,
                old,
                new,
            } => write!(f, "backend {name}: {key} {} -> {}", Shown(old), Shown(new)),
            Change::RouteAdded(name) => write!(f, "route {name}: added"),
            Change::RouteRemoved(name) => write!(f, "route {name}: removed"),
            Change::RouteChanged {
                name,
                key,
                old,
                new,
            } => write!(f, "route {name}: {key} {} -> {}", Shown(old), Shown(new)),
            Change::L4Added(name) => write!(f, "l4 {name}: added"),
            Change::L4Removed(name) => write!(f, "l4 {name}: removed"),
            Change::L4Changed {
                name,
                key,
                old,
                new,
            } => write!(f, "l4 {name}: {key} {} -> {}", Shown(old), Shown(new)),
            Change::AclAdded(name) => write!(f, "acl {name}: added"),
            Change::AclRemoved(name) => write!(f, "acl {name}: removed"),
            Change::AclChanged {
                name,
                key,
                old,
                new,
            } => write!(f, "acl {name}: {key} {} -> {}", Shown(old), Shown(new)),
            Change::LimitAdded(name) => write!(f, "limit {name}: added"),
            Change::LimitRemoved(name) => write!(f, "limit {name}: removed"),
            Change::LimitChanged {
                name,
                key,
                old,
                new,
            } => write!(f, "limit {name}: {key} {} -> {}", Shown(old), Shown(new)),
            Change::PluginAdded(name) => write!(f, "plugin {name}: added"),
            Change::PluginRemoved(name) => write!(f, "plugin {name}: removed"),
            Change::PluginChanged(name) => write!(f, "plugin {name}: path or settings changed"),
            Change::AlertAdded(name) => write!(f, "alert {name}: added"),
            Change::AlertRemoved(name) => write!(f, "alert {name}: removed"),
            Change::AlertChanged {
                name,
                key,
                old,
                new,
            } => write!(f, "alert {name}: {key} {} -> {}", Shown(old), Shown(new)),
            Change::BudgetAdded(name) => write!(f, "budget {name}: added"),
            Change::BudgetRemoved(name) => write!(f, "budget {name}: removed"),
            Change::BudgetChanged {
                name,
                key,
                old,
                new,
            } => write!(f, "budget {name}: {key} {} -> {}", Shown(old), Shown(new)),
            Change::ListenerAdded(name) => write!(f, "listener {name}: added"),
            Change::ListenerRemoved(name) => write!(f, "listener {name}: removed"),
            Change::ListenerChanged {
                name,
                key,
                old,
                new,
            } => write!(f, "listener {name}: {key} {} -> {}", Shown(old), Shown(new)),
        }
    }
}

/// Whether `key` holds a list whose order carries no meaning.
fn is_set_valued(key: &str) -> bool {
    matches!(key, "listen" | "host" | "backends")
}

/// Compares two rendered values; for list keys, ignoring entry order.
fn same(key: &str, old: &str, new: &str) -> bool {
    if !is_set_valued(key) {
        return old == new;
    }
    sorted_entries(old) == sorted_entries(new)
}

fn sorted_entries(list: &str) -> Vec<&str> {
    let mut v: Vec<&str> = list.split(", ").collect();
    v.sort_unstable();
    v
}

/// The keys whose values differ, as `(key, old, new)`.
fn changed_keys(
    old: Vec<(&'static str, String)>,
    new: Vec<(&'static str, String)>,
) -> Vec<(String, String, String)> {
    old.into_iter()
        .zip(new)
        .filter(|((key, o), (_, n))| !same(key, o, n))
        .map(|((key, o), (_, n))| (key.to_string(), o, n))
        .collect()
}

/// The differences from `old` to `new`: server keys, then backends, then routes, then L4
/// listeners.
///
/// Sections are matched by name, so reordering sections (or the entries of `listen`, `host`
/// and `backends`) is not a change.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut changes: Vec<Change> =
        changed_keys(server_values(&old.server), server_values(&new.server))
            .into_iter()
            .map(|(key, old, new)| Change::ServerKey { key, old, new })
            .collect();

    for o in &old.backends {
        match new.backend(&o.name) {
            None => changes.push(Change::BackendRemoved(o.name.clone())),
            Some(n) => changes.extend(
                changed_keys(backend_values(o), backend_values(n))
                    .into_iter()
                    .map(|(key, old, new)| Change::BackendChanged {
                        name: o.name.clone(),
                        key,
                        old,
                        new,
                    }),
            ),
        }
    }
    for n in &new.backends {
        if old.backend(&n.name).is_none() {
            changes.push(Change::BackendAdded(n.name.clone()));
        }
    }

    for o in &old.routes {
        match new.route(&o.name) {
            None => changes.push(Change::RouteRemoved(o.name.clone())),
            Some(n) => changes.extend(
                changed_keys(route_values(o), route_values(n))
                    .into_iter()
                    .map(|(key, old, new)| Change::RouteChanged {
                        name: o.name.clone(),
                        key,
                        old,
                        new,
                    }),
            ),
        }
    }
    for n in &new.routes {
        if old.route(&n.name).is_none() {
            changes.push(Change::RouteAdded(n.name.clone()));
        }
    }
    for o in &old.l4 {
        match new.l4_listener(&o.name) {
            None => changes.push(Change::L4Removed(o.name.clone())),
            Some(n) => changes.extend(changed_keys(l4_values(o), l4_values(n)).into_iter().map(
                |(key, old, new)| Change::L4Changed {
                    name: o.name.clone(),
                    key,
                    old,
                    new,
                },
            )),
        }
    }
    for n in &new.l4 {
        if old.l4_listener(&n.name).is_none() {
            changes.push(Change::L4Added(n.name.clone()));
        }
    }
    listener_changes(old, new, &mut changes);
    limit_changes(old, new, &mut changes);
    acl_changes(old, new, &mut changes);
    budget_changes(old, new, &mut changes);
    alert_changes(old, new, &mut changes);
    for o in &old.plugins {
        match new.plugin(&o.name) {
            None => changes.push(Change::PluginRemoved(o.name.clone())),
            Some(n) if n != o => changes.push(Change::PluginChanged(o.name.clone())),
            Some(_) => {}
        }
    }
    for n in &new.plugins {
        if old.plugin(&n.name).is_none() {
            changes.push(Change::PluginAdded(n.name.clone()));
        }
    }
    changes
}

/// The `[alert NAME]` differences from `old` to `new`.
fn alert_changes(old: &Config, new: &Config, changes: &mut Vec<Change>) {
    use crate::alert::alert_values;
    for o in &old.alerts {
        match new.alert(&o.name) {
            None => changes.push(Change::AlertRemoved(o.name.clone())),
            Some(n) => changes.extend(
                changed_keys(alert_values(o), alert_values(n))
                    .into_iter()
                    .map(|(key, old, new)| Change::AlertChanged {
                        name: o.name.clone(),
                        key,
                        old,
                        new,
                    }),
            ),
        }
    }
    for n in &new.alerts {
        if old.alert(&n.name).is_none() {
            changes.push(Change::AlertAdded(n.name.clone()));
        }
    }
}

/// The `[budget NAME]` differences from `old` to `new`.
fn budget_changes(old: &Config, new: &Config, changes: &mut Vec<Change>) {
    use crate::budget::budget_values;
    for o in &old.budgets {
        match new.budget(&o.name) {
            None => changes.push(Change::BudgetRemoved(o.name.clone())),
            Some(n) => changes.extend(
                changed_keys(budget_values(o), budget_values(n))
                    .into_iter()
                    .map(|(key, old, new)| Change::BudgetChanged {
                        name: o.name.clone(),
                        key,
                        old,
                        new,
                    }),
            ),
        }
    }
    for n in &new.budgets {
        if old.budget(&n.name).is_none() {
            changes.push(Change::BudgetAdded(n.name.clone()));
        }
    }
}

/// The `[acl NAME]` differences from `old` to `new`.
fn acl_changes(old: &Config, new: &Config, changes: &mut Vec<Change>) {
    use crate::acl::acl_values;
    for o in &old.acls {
        match new.acl(&o.name) {
            None => changes.push(Change::AclRemoved(o.name.clone())),
            Some(n) => changes.extend(changed_keys(acl_values(o), acl_values(n)).into_iter().map(
                |(key, old, new)| Change::AclChanged {
                    name: o.name.clone(),
                    key,
                    old,
                    new,
                },
            )),
        }
    }
    for n in &new.acls {
        if old.acl(&n.name).is_none() {
            changes.push(Change::AclAdded(n.name.clone()));
        }
    }
}

/// The `[limit NAME]` differences from `old` to `new`.
fn limit_changes(old: &Config, new: &Config, changes: &mut Vec<Change>) {
    use crate::limit::limit_values;
    // Optional keys are omitted when unset: compare by key, an absent one as empty.
    let get = |v: &[(&'static str, String)], k: &str| {
        v.iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    for o in &old.limits {
        match new.limit(&o.name) {
            None => changes.push(Change::LimitRemoved(o.name.clone())),
            Some(n) => {
                let (ov, nv) = (limit_values(o), limit_values(n));
                for key in crate::limit::LIMIT_KEYS {
                    let (a, b) = (get(&ov, key), get(&nv, key));
                    if a != b {
                        changes.push(Change::LimitChanged {
                            name: o.name.clone(),
                            key: key.to_string(),
                            old: a,
                            new: b,
                        });
                    }
                }
            }
        }
    }
    for n in &new.limits {
        if old.limit(&n.name).is_none() {
            changes.push(Change::LimitAdded(n.name.clone()));
        }
    }
}

/// The `[listener NAME]` differences from `old` to `new`.
fn listener_changes(old: &Config, new: &Config, changes: &mut Vec<Change>) {
    use crate::listener::listener_values;
    for o in &old.listeners {
        match new.listener(&o.name) {
            None => changes.push(Change::ListenerRemoved(o.name.clone())),
            Some(n) => changes.extend(
                changed_keys(listener_values(o), listener_values(n))
                    .into_iter()
                    .map(|(key, old, new)| Change::ListenerChanged {
                        name: o.name.clone(),
                        key,
                        old,
                        new,
                    }),
            ),
        }
    }
    for n in &new.listeners {
        if old.listener(&n.name).is_none() {
            changes.push(Change::ListenerAdded(n.name.clone()));
        }
    }
}
