//! INI text to a validated [`Config`]: runs the lexer, reads every section, then the checks
//! that need the whole file.

use std::collections::HashMap;

use crate::acl::{read_acl, AclRead, ACL_KEYS};
use crate::alert::{read_alert, ALERT_KEYS};
use crate::budget::{read_budget, BudgetRead, BUDGET_KEYS};
use crate::error::{ConfigError, ConfigErrors, ErrorKind};
use crate::ini::{lex, Header, Section};
use crate::limit::{read_limit, LimitRead, LIMIT_KEYS};
use crate::listener::{read_listener, ListenerRead, LISTENER_KEYS};
use crate::model::{BackendConfig, Config, L4Config, L4Protocol, ServerConfig};
use crate::reader::SectionReader;
use crate::sections::{
    collide, read_backend, read_l4, read_route, read_server, L4Read, RouteRead, BACKEND_KEYS,
    L4_KEYS, ROUTE_KEYS, SERVER_KEYS,
};
use crate::suggest::suggest;
use crate::Fallback;
use std::net::SocketAddr;

/// Parses and validates a config file.
///
/// `text` is the file's contents and `file` its name (used only in error messages). Every
/// problem in the file is reported, in line order (problems not tied to a line last); the
/// function never panics.
///
/// ```
/// let text = "[backend a]\naddress = 10.0.0.1:8000\n[route all]\nbackends = a\n";
/// let config = switchyard_config::parse(text, "switchyard.ini").unwrap();
/// assert_eq!(config.routes[0].backends, ["a"]);
///
/// let errors = switchyard_config::parse("[route all]\nbackend = a\n", "x.ini").unwrap_err();
/// // Unknown key `backend` (did you mean `backends`?), and `backends` is missing.
/// assert_eq!(errors.len(), 2);
/// ```
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let lexed = lex(text, file);
    let mut parser = Parser {
        file,
        errors: lexed.errors,
        server: None,
        backends: Vec::new(),
        backend_lines: HashMap::new(),
        routes: Vec::new(),
        route_lines: HashMap::new(),
        any_route: false,
        l4: Vec::new(),
        l4_lines: HashMap::new(),
        listeners: Vec::new(),
        listener_lines: HashMap::new(),
        limits: Vec::new(),
        limit_lines: HashMap::new(),
        acls: Vec::new(),
        acl_lines: HashMap::new(),
        budgets: Vec::new(),
        budget_lines: HashMap::new(),
        alerts: Vec::new(),
        alert_lines: HashMap::new(),
        plugins: Vec::new(),
        plugin_lines: HashMap::new(),
    };
    for section in &lexed.sections {
        parser.section(section);
    }
    parser.cross_check();
    parser.finish()
}

/// A route read from the file, with what the cross-checks need.
struct PendingRoute<'a> {
    read: RouteRead,
    section: &'a Section,
    /// A second section with an already used name: checked, then discarded.
    duplicate: bool,
}

struct Parser<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
    /// The first `[server]` and its line.
    server: Option<(ServerConfig, usize)>,
    backends: Vec<BackendConfig>,
    /// Every declared backend name (even one with errors) and its header line.
    backend_lines: HashMap<&'a str, usize>,
    routes: Vec<PendingRoute<'a>>,
    /// Every declared route name and its header line.
    route_lines: HashMap<&'a str, usize>,
    /// Whether any `[route ...]` header was written (even an invalid one).
    any_route: bool,
    /// The `[l4 NAME]` sections read (duplicates already dropped), with their sections.
    l4: Vec<(L4Read, &'a Section)>,
    /// Every declared L4 listener name and its header line.
    l4_lines: HashMap<&'a str, usize>,
    /// The `[listener NAME]` sections read (duplicates already dropped), with their sections.
    listeners: Vec<(ListenerRead, &'a Section)>,
    /// Every declared listener name and its header line.
    listener_lines: HashMap<&'a str, usize>,
    /// The `[limit NAME]` sections read (duplicates already dropped), with their sections.
    limits: Vec<(LimitRead, &'a Section)>,
    /// Every declared limit name and its header line.
    limit_lines: HashMap<&'a str, usize>,
    /// The `[acl NAME]` sections read (duplicates already dropped), with their sections.
    acls: Vec<(AclRead, &'a Section)>,
    /// Every declared ACL name and its header line.
    acl_lines: HashMap<&'a str, usize>,
    /// The `[budget NAME]` sections read (duplicates already dropped), with their sections.
    budgets: Vec<(BudgetRead, &'a Section)>,
    /// Every declared budget name and its header line.
    budget_lines: HashMap<&'a str, usize>,
    /// The valid `[alert NAME]` sections read (duplicates already dropped).
    alerts: Vec<crate::AlertConfig>,
    /// Every declared alert name and its header line.
    alert_lines: HashMap<&'a str, usize>,
    /// The valid `[plugin NAME]` sections read (duplicates already dropped).
    plugins: Vec<crate::PluginConfig>,
    /// Every declared plugin name and its header line.
    plugin_lines: HashMap<&'a str, usize>,
}

impl<'a> Parser<'a> {
    /// Reports `section` as a duplicate if a section of the same name was already seen on
    /// line `first`.
    fn check_duplicate(&mut self, section: &Section, first: Option<usize>) {
        let Some(first_line) = first else {
            return;
        };
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: section.line,
            section: Some(section.label.clone()),
            key: None,
            kind: ErrorKind::DuplicateSection { first_line },
        });
    }

    /// Reads one section; a duplicate is reported, its keys still checked, then discarded.
    fn section(&mut self, section: &'a Section) {
        match &section.header {
            Header::Ignored { route } => self.any_route |= *route,
            Header::Server => {
                let first = self.server.as_ref().map(|(_, line)| *line);
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, SERVER_KEYS, &mut self.errors);
                let server = read_server(&mut r);
                if first.is_none() {
                    self.server = Some((server, section.line));
                }
            }
            Header::Backend(name) => {
                let first = self.backend_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, BACKEND_KEYS, &mut self.errors);
                let backend = read_backend(&mut r, name);
                if first.is_none() {
                    self.backend_lines.insert(name, section.line);
                    self.backends.extend(backend);
                }
            }
            Header::Route(name) => {
                self.any_route = true;
                let first = self.route_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, ROUTE_KEYS, &mut self.errors);
                let read = read_route(&mut r, name);
                if first.is_none() {
                    self.route_lines.insert(name, section.line);
                }
                self.routes.push(PendingRoute {
                    read,
                    section,
                    duplicate: first.is_some(),
                });
            }
            Header::L4(name) => {
                let first = self.l4_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, L4_KEYS, &mut self.errors);
                let read = read_l4(&mut r, name);
                if first.is_none() {
                    self.l4_lines.insert(name, section.line);
                    self.l4.push((read, section));
                }
            }
            Header::Listener(name) => {
                let first = self.listener_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, LISTENER_KEYS, &mut self.errors);
                let read = read_listener(&mut r, name);
                if first.is_none() {
                    self.listener_lines.insert(name, section.line);
                    self.listeners.push((read, section));
                }
            }
            Header::Limit(name) => {
                let first = self.limit_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, LIMIT_KEYS, &mut self.errors);
                let read = read_limit(&mut r, name);
                if first.is_none() {
                    self.limit_lines.insert(name, section.line);
                    self.limits.push((read, section));
                }
            }
            Header::Acl(name) => {
                let first = self.acl_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, ACL_KEYS, &mut self.errors);
                let read = read_acl(&mut r, name);
                if first.is_none() {
                    self.acl_lines.insert(name, section.line);
                    self.acls.push((read, section));
                }
            }
            Header::Budget(name) => {
                let first = self.budget_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, BUDGET_KEYS, &mut self.errors);
                let read = read_budget(&mut r, name);
                if first.is_none() {
                    self.budget_lines.insert(name, section.line);
                    self.budgets.push((read, section));
                }
            }
            Header::Alert(name) => {
                let first = self.alert_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let mut r = SectionReader::new(self.file, section, ALERT_KEYS, &mut self.errors);
                let read = read_alert(&mut r, name);
                if first.is_none() {
                    self.alert_lines.insert(name, section.line);
                    self.alerts.extend(read);
                }
            }
            Header::Plugin(name) => {
                let first = self.plugin_lines.get(name.as_str()).copied();
                self.check_duplicate(section, first);
                let read = crate::traffic::read_plugin(self.file, section, name, &mut self.errors);
                if first.is_none() {
                    self.plugin_lines.insert(name, section.line);
                    self.plugins.extend(read);
                }
            }
        }
    }

    /// The ACL checks that need the whole file: `routes` name routes, `l4` TCP listeners.
    fn cross_check_acls(&mut self) {
        let acls = std::mem::take(&mut self.acls);
        let mut declared: Vec<(&str, usize)> =
            self.route_lines.iter().map(|(n, l)| (*n, *l)).collect();
        declared.sort_by_key(|(_, line)| *line);
        let routes: Vec<String> = declared.iter().map(|(n, _)| n.to_string()).collect();
        let tcp: Vec<String> = self
            .l4
            .iter()
            .filter_map(|(r, _)| r.config.as_ref())
            .filter(|c| c.protocol == L4Protocol::Tcp)
            .map(|c| c.name.clone())
            .collect();
        for (read, section) in &acls {
            let Some(config) = &read.config else {
                continue;
            };
            for name in &config.routes {
                if !self.route_lines.contains_key(name.as_str()) {
                    let kind = ErrorKind::UnknownRoute {
                        name: name.clone(),
                        known: routes.clone(),
                        suggestion: suggest(name, routes.iter().map(String::as_str)),
                    };
                    self.section_error(section, read.routes_line, "routes", kind);
                }
            }
            for name in &config.listeners {
                if !self.listener_lines.contains_key(name.as_str()) {
                    let mut known: Vec<String> =
                        self.listener_lines.keys().map(|n| n.to_string()).collect();
                    known.sort();
                    let kind = ErrorKind::UnknownListener {
                        name: name.clone(),
                        suggestion: suggest(name, known.iter().map(String::as_str)),
                        known,
                    };
                    self.section_error(section, read.listeners_line, "listeners", kind);
                }
            }
            for name in &config.l4 {
                if !tcp.contains(name) {
                    let kind = ErrorKind::UnknownGroup {
                        name: name.clone(),
                        known: tcp.clone(),
                        suggestion: suggest(name, tcp.iter().map(String::as_str)),
                    };
                    self.section_error(section, read.l4_line, "l4", kind);
                }
            }
        }
        self.acls = acls;
    }

    /// A route's `plugins` name `[plugin NAME]` sections, and its `mirror` another route.
    fn cross_check_traffic(&mut self, routes: &[PendingRoute<'a>]) {
        let mut plugins: Vec<String> = self.plugins.iter().map(|p| p.name.clone()).collect();
        plugins.sort();
        let mut declared: Vec<(&str, usize)> =
            self.route_lines.iter().map(|(n, l)| (*n, *l)).collect();
        declared.sort_by_key(|(_, line)| *line);
        let route_names: Vec<String> = declared.iter().map(|(n, _)| n.to_string()).collect();
        for route in routes {
            let t = &route.read.config.traffic;
            for name in &t.plugins {
                // A section that failed to read was declared: its own errors say why.
                if !self.plugin_lines.contains_key(name.as_str()) {
                    let kind = ErrorKind::UnknownPlugin {
                        name: name.clone(),
                        known: plugins.clone(),
                        suggestion: suggest(name, plugins.iter().map(String::as_str)),
                    };
                    let line = route.section.entries.iter().find(|e| e.key == "plugins");
                    let line = line.map_or(route.section.line, |e| e.line);
                    self.route_error(route, line, Some("plugins"), kind);
                }
            }
            let Some(m) = &t.mirror else { continue };
            let line = route.section.entries.iter().find(|e| e.key == "mirror");
            let line = line.map_or(route.section.line, |e| e.line);
            if m.route == route.read.config.name {
                self.route_error(route, line, Some("mirror"), ErrorKind::MirrorToSelf);
            } else if !self.route_lines.contains_key(m.route.as_str()) {
                let kind = ErrorKind::UnknownRoute {
                    name: m.route.clone(),
                    known: route_names.clone(),
                    suggestion: suggest(&m.route, route_names.iter().map(String::as_str)),
                };
                self.route_error(route, line, Some("mirror"), kind);
            }
        }
    }

    /// The limit and budget checks that need the whole file: `routes` name existing routes.
    fn cross_check_limits(&mut self) {
        let mut declared: Vec<(&str, usize)> =
            self.route_lines.iter().map(|(n, l)| (*n, *l)).collect();
        declared.sort_by_key(|(_, line)| *line);
        let known: Vec<String> = declared.iter().map(|(n, _)| n.to_string()).collect();
        let limits = self.limits.iter().filter_map(|(read, section)| {
            let routes = &read.config.as_ref()?.routes;
            Some((routes, read.routes_line, *section))
        });
        let budgets = self.budgets.iter().filter_map(|(read, section)| {
            let routes = &read.config.as_ref()?.routes;
            Some((routes, read.routes_line, *section))
        });
        let mut errors = Vec::new();
        for (routes, line, section) in limits.chain(budgets) {
            for name in routes {
                if !self.route_lines.contains_key(name.as_str()) {
                    let kind = ErrorKind::UnknownRoute {
                        name: name.clone(),
                        known: known.clone(),
                        suggestion: suggest(name, known.iter().map(String::as_str)),
                    };
                    errors.push((section, line, kind));
                }
            }
        }
        for (section, line, kind) in errors {
            self.section_error(section, line, "routes", kind);
        }
    }

    fn section_error(&mut self, section: &Section, line: usize, key: &str, kind: ErrorKind) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            section: Some(section.label.clone()),
            key: Some(key.to_string()),
            kind,
        });
    }

    /// The L4 checks that need the whole file: backends exist, and `listen` collides with
    /// neither `[server]`'s listeners (TCP) nor an earlier L4 listener of the same protocol
    /// (a TCP and a UDP socket may share an address).
    fn cross_check_l4(&mut self, known: &[String]) {
        let l4 = std::mem::take(&mut self.l4);
        let server = self
            .server
            .as_ref()
            .map(|(s, _)| s.clone())
            .unwrap_or_default();
        let tcp = L4Protocol::Tcp;
        let mut taken: Vec<(std::net::SocketAddr, L4Protocol, String)> = server
            .listen
            .iter()
            .map(|a| (*a, tcp, format!("[server] listen {a}")))
            .chain(
                server
                    .admin_listen
                    .map(|a| (a, tcp, format!("[server] admin_listen {a}"))),
            )
            .collect();
        for (read, section) in &l4 {
            let Some(config) = &read.config else {
                continue;
            };
            for name in &config.backends {
                if !self.backend_lines.contains_key(name.as_str()) {
                    let kind = ErrorKind::UnknownBackend {
                        name: name.clone(),
                        known: known.to_vec(),
                        suggestion: suggest(name, known.iter().map(String::as_str)),
                    };
                    self.section_error(section, read.backends_line, "backends", kind);
                }
            }
            if config.proxy_protocol.is_on() && server.trusted_proxies.is_empty() {
                let kind = crate::proxy_protocol::needs_trusted_proxies();
                self.section_error(section, read.proxy_protocol_line, "proxy_protocol", kind);
            }
            let clash = taken
                .iter()
                .find(|(a, p, _)| *p == config.protocol && collide(*a, config.listen));
            if let Some((_, _, other)) = clash {
                let kind = ErrorKind::ListenConflict {
                    listen: config.listen,
                    other: other.clone(),
                };
                self.section_error(section, read.listen_line, "listen", kind);
            } else {
                taken.push((
                    config.listen,
                    config.protocol,
                    format!("[{}] listen {}", section.label, config.listen),
                ));
            }
        }
        self.l4 = l4;
    }

    /// The listener checks that need the whole file: `fallback` names a TCP `[l4 GROUP]`, and
    /// no `listen` address collides with `[server]`'s, a TCP L4 listener's or an earlier
    /// listener's.
    fn cross_check_listeners(&mut self) {
        let listeners = std::mem::take(&mut self.listeners);
        let server = self
            .server
            .as_ref()
            .map(|(s, _)| s.clone())
            .unwrap_or_default();
        let tcp_groups: Vec<&L4Config> = self
            .l4
            .iter()
            .filter_map(|(r, _)| r.config.as_ref())
            .filter(|c| c.protocol == L4Protocol::Tcp)
            .collect();
        let known: Vec<String> = tcp_groups.iter().map(|c| c.name.clone()).collect();
        let mut taken: Vec<(SocketAddr, String)> = server
            .listen
            .iter()
            .map(|a| (*a, format!("[server] listen {a}")))
            .chain(
                server
                    .admin_listen
                    .map(|a| (a, format!("[server] admin_listen {a}"))),
            )
            .chain(
                tcp_groups
                    .iter()
                    .map(|c| (c.listen, format!("[l4 {}] listen {}", c.name, c.listen))),
            )
            .collect();
        let mut errors = Vec::new();
        for (read, section) in &listeners {
            let Some(config) = &read.config else {
                continue;
            };
            if let Some(Fallback::Tcp(group)) = &config.fallback {
                if !known.contains(group) {
                    let kind = ErrorKind::UnknownGroup {
                        name: group.clone(),
                        known: known.clone(),
                        suggestion: suggest(group, known.iter().map(String::as_str)),
                    };
                    errors.push((*section, read.fallback_line, "fallback", kind));
                }
            }
            if config.proxy_protocol.is_on() && server.trusted_proxies.is_empty() {
                let kind = crate::proxy_protocol::needs_trusted_proxies();
                errors.push((*section, read.proxy_protocol_line, "proxy_protocol", kind));
            }
            // A listener's own addresses are checked for duplicates only, like `[server]`'s
            // (sockets bind IPv6 only, so `0.0.0.0:P` and `[::]:P` may go together).
            let mut own = Vec::new();
            for &listen in &config.listen {
                if let Some((_, other)) = taken.iter().find(|(a, _)| collide(*a, listen)) {
                    let kind = ErrorKind::ListenConflict {
                        listen,
                        other: other.clone(),
                    };
                    errors.push((*section, read.listen_line, "listen", kind));
                } else {
                    own.push((listen, format!("[{}] listen {listen}", section.label)));
                }
            }
            taken.extend(own);
        }
        for (section, line, key, kind) in errors {
            self.section_error(section, line, key, kind);
        }
        self.listeners = listeners;
    }

    fn route_error(
        &mut self,
        route: &PendingRoute<'_>,
        line: usize,
        key: Option<&str>,
        kind: ErrorKind,
    ) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            section: Some(route.section.label.clone()),
            key: key.map(str::to_string),
            kind,
        });
    }

    /// The checks that need the whole file: backends exist, routes are distinct, some route
    /// exists.
    fn cross_check(&mut self) {
        let routes = std::mem::take(&mut self.routes);
        let mut declared: Vec<(&str, usize)> =
            self.backend_lines.iter().map(|(n, l)| (*n, *l)).collect();
        declared.sort_by_key(|(_, line)| *line);
        let known: Vec<String> = declared.iter().map(|(n, _)| n.to_string()).collect();
        // (sorted hosts, path_prefix) -> first route with them.
        let mut seen: HashMap<(Vec<String>, String), (String, usize)> = HashMap::new();
        for route in &routes {
            for name in &route.read.config.backends {
                if !self.backend_lines.contains_key(name.as_str()) {
                    let kind = ErrorKind::UnknownBackend {
                        name: name.clone(),
                        known: known.clone(),
                        suggestion: suggest(name, known.iter().map(String::as_str)),
                    };
                    self.route_error(route, route.read.backends_line, Some("backends"), kind);
                }
            }
            if route.duplicate || !route.read.clean {
                continue;
            }
            let mut hosts = route.read.config.hosts.clone();
            hosts.sort();
            let key = (hosts, route.read.config.path_prefix.clone());
            match seen.get(&key) {
                Some((first, first_line)) => {
                    let kind = ErrorKind::DuplicateRoute {
                        first: first.clone(),
                        first_line: *first_line,
                    };
                    self.route_error(route, route.section.line, None, kind);
                }
                None => {
                    seen.insert(key, (route.read.config.name.clone(), route.section.line));
                }
            }
        }
        self.cross_check_traffic(&routes);
        self.routes = routes;
        self.cross_check_l4(&known);
        self.cross_check_listeners();
        self.cross_check_limits();
        self.cross_check_acls();
        if !self.any_route {
            self.errors.push(ConfigError {
                file: self.file.to_string(),
                line: 0,
                section: None,
                key: None,
                kind: ErrorKind::NoRoutes,
            });
        }
    }

    fn finish(mut self) -> Result<Config, ConfigErrors> {
        if !self.errors.is_empty() {
            // Stable: errors on one line keep the order they were found in.
            self.errors.sort_by_key(|e| (e.line == 0, e.line));
            return Err(ConfigErrors(self.errors));
        }
        Ok(Config {
            server: self.server.map(|(s, _)| s).unwrap_or_default(),
            backends: self.backends,
            routes: self
                .routes
                .into_iter()
                .filter(|r| !r.duplicate)
                .map(|r| r.read.config)
                .collect(),
            l4: self.l4.into_iter().filter_map(|(r, _)| r.config).collect(),
            listeners: self
                .listeners
                .into_iter()
                .filter_map(|(r, _)| r.config)
                .collect(),
            limits: self
                .limits
                .into_iter()
                .filter_map(|(r, _)| r.config)
                .collect(),
            acls: self
                .acls
                .into_iter()
                .filter_map(|(r, _)| r.config)
                .collect(),
            budgets: self
                .budgets
                .into_iter()
                .filter_map(|(r, _)| r.config)
                .collect(),
            alerts: self.alerts,
            plugins: self.plugins,
        })
    }
}
