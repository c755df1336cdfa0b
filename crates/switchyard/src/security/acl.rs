//! The `[acl NAME]` sections at run time: which ACLs guard each route and each TCP `[l4 NAME]`
//! listener, and their refusal counters. The matching itself is the config crate's pure
//! [`AclConfig::decide`] (a first-match table of CIDR rules).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard_config::{AclAction, AclConfig, Config};

struct Acl {
    name: Arc<str>,
    config: AclConfig,
    denied: AtomicU64,
}

/// Every configured ACL, indexed by what it guards.
pub struct Acls {
    acls: Vec<Acl>,
    /// Per route, the ACLs that check its requests.
    by_route: Vec<Vec<usize>>,
    /// The `[l4 NAME]` listeners some ACL guards, by name, with those ACLs (keyed by name: a
    /// listener a reload removed, still taking its queued connections, is in none).
    by_l4: Vec<(Box<str>, Vec<usize>)>,
    /// The same for `[listener NAME]`.
    by_listener: Vec<(Box<str>, Vec<usize>)>,
}

impl std::fmt::Debug for Acls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.acls.iter().map(|a| &*a.name).collect();
        f.debug_struct("Acls").field("acls", &names).finish()
    }
}

impl Acls {
    /// The ACLs of `config`.
    pub fn new(config: &Config) -> Self {
        let acls: Vec<Acl> = config
            .acls
            .iter()
            .map(|a| Acl {
                name: a.name.as_str().into(),
                config: a.clone(),
                denied: AtomicU64::new(0),
            })
            .collect();
        let guarding = |pick: &dyn Fn(&AclConfig) -> bool| -> Vec<usize> {
            (0..acls.len()).filter(|i| pick(&acls[*i].config)).collect()
        };
        let by_route = config
            .routes
            .iter()
            .map(|r| guarding(&|a| a.routes.contains(&r.name)))
            .collect();
        let named = |names: Vec<&String>, pick: &dyn Fn(&AclConfig, &String) -> bool| {
            names
                .into_iter()
                .map(|n| (n.as_str().into(), guarding(&|a| pick(a, n))))
                .filter(|(_, guards): &(Box<str>, Vec<usize>)| !guards.is_empty())
                .collect()
        };
        let by_l4 = named(config.l4.iter().map(|l| &l.name).collect(), &|a, n| {
            a.l4.contains(n)
        });
        let by_listener = named(
            config.listeners.iter().map(|l| &l.name).collect(),
            &|a, n| a.listeners.contains(n),
        );
        Acls {
            acls,
            by_route,
            by_l4,
            by_listener,
        }
    }

    /// Whether any ACL guards `route`.
    pub fn guards_route(&self, route: usize) -> bool {
        self.by_route.get(route).is_some_and(|a| !a.is_empty())
    }

    /// Checks a request to `route` from `ip`; the name of the ACL that denies it, if one does.
    pub fn check_request(
        &self,
        route: usize,
        method: &str,
        path: &str,
        headers: &http::HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<(), Arc<str>> {
        for &i in self.by_route.get(route).into_iter().flatten() {
            let acl = &self.acls[i];
            let c = &acl.config;
            if !c.methods.is_empty() && !c.methods.iter().any(|m| m == method) {
                continue;
            }
            if c.path_prefix
                .as_ref()
                .is_some_and(|p| !path.starts_with(p.as_str()))
            {
                continue;
            }
            if c.header
                .as_ref()
                .is_some_and(|h| !headers.contains_key(h.as_str()))
            {
                continue;
            }
            // An address that cannot be read is denied (never expected: it is the peer's).
            if ip.is_none_or(|ip| c.decide(ip) == AclAction::Deny) {
                acl.denied.fetch_add(1, Relaxed);
                return Err(Arc::clone(&acl.name));
            }
        }
        Ok(())
    }

    /// Whether a connection from `ip` to the `[l4 NAME]` listener `name` may proceed (no
    /// lookup at all when no ACL guards an L4 listener).
    pub fn allow_l4(&self, name: &str, ip: IpAddr) -> bool {
        self.allow(Self::guards(&self.by_l4, name), ip)
    }

    /// Whether a connection from `ip` to the `[listener NAME]` `name` may proceed.
    pub fn allow_listener(&self, name: &str, ip: IpAddr) -> bool {
        self.allow(Self::guards(&self.by_listener, name), ip)
    }

    fn guards<'a>(table: &'a [(Box<str>, Vec<usize>)], name: &str) -> Option<&'a Vec<usize>> {
        table.iter().find(|(n, _)| &**n == name).map(|(_, g)| g)
    }

    fn allow(&self, guards: Option<&Vec<usize>>, ip: IpAddr) -> bool {
        for &i in guards.into_iter().flatten() {
            let acl = &self.acls[i];
            if acl.config.decide(ip) == AclAction::Deny {
                acl.denied.fetch_add(1, Relaxed);
                return false;
            }
        }
        true
    }

    /// The `/stats` entries: per ACL, its name and refusals.
    pub fn report(&self) -> Value {
        Value::Array(
            self.acls
                .iter()
                .map(|a| json!({"name": &*a.name, "denied": a.denied.load(Relaxed)}))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acls(text: &str) -> Acls {
        let text = format!(
            "[backend b]\naddress = h:1\n[route a]\npath_prefix = /a\nbackends = b\n\
             [route z]\nbackends = b\n[l4 t]\nlisten = 127.0.0.1:7000\nbackends = b\n{text}"
        );
        Acls::new(&switchyard_config::parse(&text, "t.ini").unwrap())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn routes_methods_and_prefixes() {
        let a = acls(
            "[acl office]\nrules = allow 10.0.0.0/8, allow ::1\nroutes = a\nmethods = POST\n\
             [acl none]\nrules = deny ::/0\ndefault = allow\nroutes = z\npath_prefix = /z/v6\n",
        );
        let none = http::HeaderMap::new();
        assert!(a
            .check_request(0, "POST", "/a", &none, ip("10.1.1.1"))
            .is_ok());
        assert!(a.check_request(0, "POST", "/a", &none, ip("::1")).is_ok());
        assert_eq!(
            &*a.check_request(0, "POST", "/a", &none, ip("192.0.2.1"))
                .unwrap_err(),
            "office"
        );
        assert!(a
            .check_request(0, "GET", "/a", &none, ip("192.0.2.1"))
            .is_ok());
        assert!(a
            .check_request(1, "GET", "/z/v6", &none, ip("192.0.2.1"))
            .is_ok());
        assert!(a
            .check_request(1, "GET", "/z/v6", &none, ip("::2"))
            .is_err());
        assert!(a.check_request(1, "GET", "/z/v4", &none, ip("::2")).is_ok());
        assert!(a.check_request(0, "POST", "/a", &none, None).is_err());
        assert_eq!(a.report()[0]["denied"], 2);
    }

    #[test]
    fn header_presence() {
        let a = acls("[acl debug]\nrules = allow 10.0.0.0/8\nroutes = z\nheader = X-Debug\n");
        let mut h = http::HeaderMap::new();
        assert!(a.check_request(1, "GET", "/", &h, ip("192.0.2.1")).is_ok());
        h.insert("x-debug", http::HeaderValue::from_static("1"));
        assert!(a.check_request(1, "GET", "/", &h, ip("192.0.2.1")).is_err());
        assert!(a.check_request(1, "GET", "/", &h, ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn l4_listeners() {
        let a = acls("[acl t]\nrules = allow 127.0.0.0/8\nl4 = t\n");
        assert!(a.allow_l4("t", "127.0.0.1".parse().unwrap()));
        assert!(!a.allow_l4("t", "::1".parse().unwrap()));
        // A listener no ACL names (one a reload removed, say) is open.
        assert!(a.allow_l4("gone", "::1".parse().unwrap()));
        assert!(!a.guards_route(0));
    }
}
