//! Errors: one [`ConfigError`] per problem, collected into [`ConfigErrors`].

use std::fmt;
use std::net::SocketAddr;

/// One problem in a config file.
///
/// Displays as `{file}:{line}: [{section}] {key}: {message}`; the line is left out when it is
/// 0 (the problem is not tied to a line), and the section and key when they are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name the caller passed to [`parse`](crate::parse).
    pub file: String,
    /// The 1-based line the problem is on; 0 if it is not tied to a line.
    pub line: usize,
    /// The section the problem is in, as written between the brackets (e.g. `backend llama-a`).
    pub section: Option<String>,
    /// The key the problem is about.
    pub key: Option<String>,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong; its `Display` is the human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A line that is neither a `[section]` header, a `key = value` line, a comment nor blank
    /// (or a malformed header, such as a missing `]`).
    Syntax {
        /// What is malformed about the line.
        message: String,
    },
    /// A `key = value` line before the first section header.
    KeyOutsideSection,
    /// A section header of a type other than `server`, `backend`, `route` or `l4`.
    UnknownSection {
        /// The section type as written.
        kind: String,
        /// A valid section type within edit distance 2 of `kind`, if any.
        suggestion: Option<String>,
    },
    /// A `[server]`, `[backend NAME]`, `[route NAME]` or `[l4 NAME]` header whose name is missing, not
    /// allowed, or contains characters other than `A-Z a-z 0-9 _ . -`.
    InvalidSectionName {
        /// The header's contents, as written between the brackets.
        header: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A second `[server]`, or a second `[backend X]` / `[route X]` / `[l4 X]` with the same
    /// name.
    DuplicateSection {
        /// The line of the first header.
        first_line: usize,
    },
    /// A key given twice in one section.
    DuplicateKey {
        /// The line where the key was first given.
        first_line: usize,
    },
    /// A key the section does not know.
    UnknownKey {
        /// A valid key within edit distance 2, if any.
        suggestion: Option<String>,
        /// Every key the section accepts.
        valid: Vec<String>,
    },
    /// A required key is absent from its section (reported on the section header's line).
    MissingKey {
        /// The key that is missing.
        key: String,
    },
    /// A key that works only together with another key of the same section, which is absent
    /// (reported on the first key's line).
    NeedsKey {
        /// The key the section also needs.
        needed: String,
        /// Why it is needed.
        reason: String,
    },
    /// A key that works only together with a `[server]` key, which is absent or empty
    /// (reported on the first key's line).
    NeedsServerKey {
        /// The `[server]` key needed.
        needed: String,
        /// Why it is needed.
        reason: String,
    },
    /// A key that the section's `protocol` has no use for (reported on the key's line).
    NotForProtocol {
        /// The section's protocol, as written in the config (`tcp`, `udp`).
        protocol: String,
        /// Why the key does not apply.
        reason: String,
    },
    /// A value that does not parse or is out of range.
    InvalidValue {
        /// The value as written.
        value: String,
        /// Why it is rejected, including what is expected.
        reason: String,
    },
    /// A route's (or L4 listener's) `backends` names a backend that has no `[backend NAME]`
    /// section.
    UnknownBackend {
        /// The missing backend's name.
        name: String,
        /// The backends the file defines.
        known: Vec<String>,
        /// A defined backend within edit distance 2 of `name`, if any.
        suggestion: Option<String>,
    },
    /// A route's `balancer` is not a known balancing algorithm.
    UnknownBalancer {
        /// The balancer as written.
        name: String,
        /// Every known balancer.
        known: Vec<String>,
        /// A known balancer within edit distance 2 of `name`, if any.
        suggestion: Option<String>,
    },
    /// The file has no `[route NAME]` section, so no request could ever be routed.
    NoRoutes,
    /// `admin_listen` would bind the same address as one of the `listen` addresses.
    AdminListenConflict {
        /// The admin address that collides.
        admin: SocketAddr,
        /// The `listen` address it collides with.
        listen: SocketAddr,
    },
    /// An `[l4 NAME]` listener's `listen` would bind the same address as another listener.
    ListenConflict {
        /// The L4 listener's address.
        listen: SocketAddr,
        /// What it collides with, e.g. `[server] listen 127.0.0.1:8080`.
        other: String,
    },
    /// A listener's `fallback = tcp:GROUP` names no `[l4 GROUP]` section with `protocol = tcp`.
    UnknownGroup {
        /// The group as written.
        name: String,
        /// The TCP `[l4 NAME]` sections the file defines.
        known: Vec<String>,
        /// A defined group within edit distance 2 of `name`, if any.
        suggestion: Option<String>,
    },
    /// An ACL's `listeners` names no `[listener NAME]` section.
    UnknownListener {
        /// The missing listener's name.
        name: String,
        /// The listeners the file defines.
        known: Vec<String>,
        /// A defined listener within edit distance 2 of `name`, if any.
        suggestion: Option<String>,
    },
    /// A limit's or budget's `routes` names a route that has no `[route NAME]` section.
    UnknownPlugin {
        /// The missing plugin's name.
        name: String,
        /// The plugins the file defines.
        known: Vec<String>,
        /// A defined plugin within edit distance 2 of `name`, if any.
        suggestion: Option<String>,
    },
    /// A route's `mirror` names its own route (every copy would be mirrored again).
    MirrorToSelf,
    /// A name in `routes`, or a route's `mirror`, names no `[route NAME]` section.
    UnknownRoute {
        /// The missing route's name.
        name: String,
        /// The routes the file defines.
        known: Vec<String>,
        /// A defined route within edit distance 2 of `name`, if any.
        suggestion: Option<String>,
    },
    /// Two routes match exactly the same hosts and the same `path_prefix`, so the second could
    /// never be chosen.
    DuplicateRoute {
        /// The name of the earlier route.
        first: String,
        /// The line of the earlier route's header.
        first_line: usize,
    },
}

fn did_you_mean(f: &mut fmt::Formatter<'_>, suggestion: &Option<String>) -> fmt::Result {
    match suggestion {
        Some(s) => write!(f, " (did you mean `{s}`?)"),
        None => Ok(()),
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Syntax { message } => write!(f, "syntax error: {message}"),
            ErrorKind::KeyOutsideSection => write!(
                f,
                "key outside any section; put it under [server], [backend NAME] or [route NAME]"
            ),
            ErrorKind::UnknownSection { kind, suggestion } => {
                write!(f, "unknown section type `{kind}`")?;
                did_you_mean(f, suggestion)?;
                write!(
                    f,
                    "; valid sections: [server], [backend NAME], [route NAME]"
                )
            }
            ErrorKind::InvalidSectionName { header, reason } => {
                write!(f, "invalid section header `[{header}]`: {reason}")
            }
            ErrorKind::DuplicateSection { first_line } => {
                write!(f, "duplicate section; first defined on line {first_line}")
            }
            ErrorKind::DuplicateKey { first_line } => {
                write!(f, "duplicate key; first given on line {first_line}")
            }
            ErrorKind::UnknownKey { suggestion, valid } => {
                write!(f, "unknown key")?;
                did_you_mean(f, suggestion)?;
                write!(f, "; valid keys here: {}", valid.join(", "))
            }
            ErrorKind::MissingKey { key } => write!(f, "missing required key `{key}`"),
            ErrorKind::NeedsKey { needed, reason } => {
                write!(f, "needs `{needed}` in the same section: {reason}")
            }
            ErrorKind::NeedsServerKey { needed, reason } => {
                write!(f, "needs `{needed}` in [server]: {reason}")
            }
            ErrorKind::NotForProtocol { protocol, reason } => {
                write!(f, "not valid with `protocol = {protocol}`: {reason}")
            }
            ErrorKind::InvalidValue { value, reason } => {
                write!(f, "invalid value `{value}`: {reason}")
            }
            ErrorKind::UnknownBackend {
                name,
                known,
                suggestion,
            } => {
                write!(f, "no [backend {name}] section")?;
                did_you_mean(f, suggestion)?;
                if known.is_empty() {
                    write!(f, "; the file defines no backends")
                } else {
                    write!(f, "; defined backends: {}", known.join(", "))
                }
            }
            ErrorKind::UnknownBalancer {
                name,
                known,
                suggestion,
            } => {
                write!(f, "unknown balancer `{name}`")?;
                did_you_mean(f, suggestion)?;
                write!(f, "; known balancers: {}", known.join(", "))
            }
            ErrorKind::NoRoutes => write!(
                f,
                "no [route NAME] section; at least one route is needed to accept requests"
            ),
            ErrorKind::AdminListenConflict { admin, listen } => write!(
                f,
                "admin_listen {admin} collides with listen address {listen}; \
                 use another port or `off`"
            ),
            ErrorKind::ListenConflict { listen, other } => write!(
                f,
                "listen {listen} collides with {other}; use another address or port"
            ),
            ErrorKind::UnknownGroup {
                name,
                known,
                suggestion,
            } => {
                write!(f, "no [l4 {name}] section with protocol = tcp")?;
                did_you_mean(f, suggestion)?;
                if known.is_empty() {
                    write!(
                        f,
                        "; the file defines no TCP [l4 NAME] sections to fall back to"
                    )
                } else {
                    write!(f, "; TCP groups defined: {}", known.join(", "))
                }
            }
            ErrorKind::UnknownListener {
                name,
                known,
                suggestion,
            } => {
                write!(f, "no [listener {name}] section")?;
                did_you_mean(f, suggestion)?;
                if known.is_empty() {
                    write!(f, "; the file defines no [listener NAME] sections")
                } else {
                    write!(f, "; listeners defined: {}", known.join(", "))
                }
            }
            ErrorKind::UnknownPlugin {
                name,
                known,
                suggestion,
            } => {
                write!(f, "no [plugin {name}] section")?;
                did_you_mean(f, suggestion)?;
                if known.is_empty() {
                    write!(f, "; the file defines no plugins")
                } else {
                    write!(f, "; plugins defined: {}", known.join(", "))
                }
            }
            ErrorKind::MirrorToSelf => write!(
                f,
                "a route cannot mirror to itself; name another route whose backends get the copies"
            ),
            ErrorKind::UnknownRoute {
                name,
                known,
                suggestion,
            } => {
                write!(f, "no [route {name}] section")?;
                did_you_mean(f, suggestion)?;
                write!(f, "; routes defined: {}", known.join(", "))
            }
            ErrorKind::DuplicateRoute { first, first_line } => write!(
                f,
                "same host list and path_prefix as [route {first}] on line {first_line}, \
                 so this route could never be chosen"
            ),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.line) {
            (false, 0) => write!(f, "{}: ", self.file)?,
            (false, line) => write!(f, "{}:{}: ", self.file, line)?,
            (true, 0) => {}
            (true, line) => write!(f, "line {line}: ")?,
        }
        if let Some(section) = &self.section {
            write!(f, "[{section}] ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file, in line order (problems not tied to a line last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Iterates over the errors in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// The number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no errors (never the case for a value returned by
    /// [`parse`](crate::parse)).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(file: &str, line: usize, section: Option<&str>, key: Option<&str>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line,
            section: section.map(str::to_string),
            key: key.map(str::to_string),
            kind: ErrorKind::MissingKey {
                key: "address".into(),
            },
        }
    }

    #[test]
    fn display_includes_every_present_part() {
        let e = err("a.ini", 3, Some("backend x"), Some("address"));
        assert_eq!(
            e.to_string(),
            "a.ini:3: [backend x] address: missing required key `address`"
        );
    }

    #[test]
    fn display_omits_missing_parts() {
        assert_eq!(
            err("a.ini", 0, None, None).to_string(),
            "a.ini: missing required key `address`"
        );
        assert_eq!(
            err("", 4, Some("server"), None).to_string(),
            "line 4: [server] missing required key `address`"
        );
        assert_eq!(
            err("", 0, None, None).to_string(),
            "missing required key `address`"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let errs = ConfigErrors(vec![err("a", 1, None, None), err("a", 2, None, None)]);
        assert_eq!(errs.len(), 2);
        assert!(!errs.is_empty());
        assert_eq!(errs.iter().count(), 2);
        assert_eq!(errs.to_string().lines().count(), 2);
        assert!(!errs.to_string().ends_with('\n'));
    }

    #[test]
    fn suggestions_are_shown() {
        let k = ErrorKind::UnknownKey {
            suggestion: Some("weight".into()),
            valid: vec!["address".into(), "weight".into()],
        };
        assert_eq!(
            k.to_string(),
            "unknown key (did you mean `weight`?); valid keys here: address, weight"
        );
    }
}
