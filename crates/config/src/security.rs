//! The `[server]` keys of the admin plane's authentication and of the audit log:
//! `admin_token_file` and `audit_*`.

use std::path::PathBuf;
use std::time::Duration;

use crate::reader::SectionReader;
use crate::value::{format_duration, format_size, parse_duration, parse_size};

/// The keys read here, in the order they are rendered (after the other `[server]` keys).
#[cfg(test)]
pub(crate) const SECURITY_KEYS: &[&str] = &[
    "admin_token_file",
    "admin_max_failures",
    "admin_block_time",
    "admin_session_ttl",
    "admin_max_sessions",
    "audit_log",
    "audit_max_bytes",
    "audit_max_age",
    "audit_keep",
    "audit_sample",
    "audit_queue",
];

/// The default `admin_max_failures`.
pub const DEFAULT_ADMIN_MAX_FAILURES: u32 = 5;
/// The default `admin_block_time`.
pub const DEFAULT_ADMIN_BLOCK_TIME: Duration = Duration::from_secs(60);

/// The default `admin_session_ttl`.
pub const DEFAULT_ADMIN_SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// The longest `admin_session_ttl`.
pub const MAX_ADMIN_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The default `admin_max_sessions`.
pub const DEFAULT_ADMIN_MAX_SESSIONS: usize = 64;
/// The most `admin_max_sessions` may be.
pub const MAX_ADMIN_SESSIONS: usize = 10_000;

/// The range of `audit_max_bytes`.
pub const AUDIT_MAX_BYTES_RANGE: (usize, usize) = (1024, 1 << 40);
/// The longest `audit_max_age`.
pub const AUDIT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most rotated files `audit_keep` keeps.
pub const AUDIT_MAX_KEEP: u32 = 1000;
/// The range of `audit_queue`.
pub const AUDIT_QUEUE_RANGE: (usize, usize) = (1, 1 << 20);

/// The audit log (`[server]` `audit_*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// `audit_log`: the file audit lines are appended to; `None` (unset) writes none.
    pub log: Option<PathBuf>,
    /// `audit_max_bytes`: the file is rotated before it would grow past this.
    pub max_bytes: usize,
    /// `audit_max_age`: the file is rotated once it is this old; `0` never by age.
    pub max_age: Duration,
    /// `audit_keep`: rotated files kept (`PATH.1` the newest); older ones are deleted.
    pub keep: u32,
    /// `audit_sample`: the percentage of request lines written (0..=100); control-plane
    /// lines are always written.
    pub sample: u32,
    /// `audit_queue`: lines waiting for the writer; past it request lines are dropped (and
    /// counted) rather than delay requests.
    pub queue: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            log: None,
            max_bytes: 100 << 20,
            max_age: Duration::from_secs(24 * 60 * 60),
            keep: 5,
            sample: 100,
            queue: 32768,
        }
    }
}

fn path(s: &str) -> Result<PathBuf, String> {
    if s.contains(char::is_whitespace) || s.contains(',') {
        return Err("a path here may not contain whitespace or commas".to_string());
    }
    Ok(PathBuf::from(s))
}

fn ranged(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let n = crate::value::parse_u64(s)?;
    if n < lo || n > hi {
        return Err(format!("must be between {lo} and {hi}"));
    }
    Ok(n)
}

/// The admin plane's browser sessions (`[server]` `admin_session_ttl`, `admin_max_sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminSessions {
    /// `admin_session_ttl`: how long a sign-in to the admin pages lasts (1m..=7d).
    pub ttl: Duration,
    /// `admin_max_sessions`: sessions kept at once; past it the oldest is dropped
    /// (1..=10000).
    pub max: usize,
}

impl Default for AdminSessions {
    fn default() -> Self {
        AdminSessions {
            ttl: DEFAULT_ADMIN_SESSION_TTL,
            max: DEFAULT_ADMIN_MAX_SESSIONS,
        }
    }
}

/// What [`read_security`] reads: `admin_token_file`, `admin_max_failures`,
/// `admin_block_time`, the session keys and the `audit_*` keys.
pub(crate) type Security = (Option<PathBuf>, u32, Duration, AdminSessions, AuditSettings);

/// Reads `admin_token_file`, `admin_max_failures`, `admin_block_time`, `admin_session_ttl`,
/// `admin_max_sessions` and the `audit_*` keys.
pub(crate) fn read_security(r: &mut SectionReader<'_>) -> Security {
    let d = AuditSettings::default();
    let token = r.optional("admin_token_file", path);
    let max_failures = r.value("admin_max_failures", DEFAULT_ADMIN_MAX_FAILURES, |s| {
        ranged(s, 1, 1000).map(|n| n as u32)
    });
    let block = r.value("admin_block_time", DEFAULT_ADMIN_BLOCK_TIME, |s| {
        let v = parse_duration(s)?;
        if v < Duration::from_secs(1) || v > crate::sections::MAX_DURATION {
            return Err("must be between 1s and 24h".to_string());
        }
        Ok(v)
    });
    let sd = AdminSessions::default();
    let sessions = AdminSessions {
        ttl: r.value("admin_session_ttl", sd.ttl, |s| {
            let v = parse_duration(s)?;
            if v < Duration::from_secs(60) || v > MAX_ADMIN_SESSION_TTL {
                return Err("must be between 1m and 7d".to_string());
            }
            Ok(v)
        }),
        max: r.value("admin_max_sessions", sd.max, |s| {
            ranged(s, 1, MAX_ADMIN_SESSIONS as u64).map(|n| n as usize)
        }),
    };
    let audit = AuditSettings {
        log: r.optional("audit_log", path),
        max_bytes: r.value("audit_max_bytes", d.max_bytes, |s| {
            let n = parse_size(s)?;
            let (lo, hi) = AUDIT_MAX_BYTES_RANGE;
            if n < lo || n > hi {
                return Err(format!("must be between 1k and 1t bytes, not {n}"));
            }
            Ok(n)
        }),
        max_age: r.value("audit_max_age", d.max_age, |s| {
            let v = parse_duration(s)?;
            if v > AUDIT_MAX_AGE {
                return Err(format!(
                    "must be at most {}",
                    format_duration(AUDIT_MAX_AGE)
                ));
            }
            Ok(v)
        }),
        keep: r.value("audit_keep", d.keep, |s| {
            ranged(s, 0, u64::from(AUDIT_MAX_KEEP)).map(|n| n as u32)
        }),
        sample: r.value("audit_sample", d.sample, |s| {
            ranged(s.strip_suffix('%').unwrap_or(s), 0, 100).map(|n| n as u32)
        }),
        queue: r.value("audit_queue", d.queue, |s| {
            let (lo, hi) = AUDIT_QUEUE_RANGE;
            ranged(s, lo as u64, hi as u64).map(|n| n as usize)
        }),
    };
    (token, max_failures, block, sessions, audit)
}

/// The keys read here with their values as INI text (empty: unset).
pub(crate) fn security_values(s: &crate::ServerConfig) -> Vec<(&'static str, String)> {
    let (token, a) = (s.admin_token_file.as_ref(), &s.audit);
    let show = |p: Option<&PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
    vec![
        // Only the path: the token itself is never read by this crate, nor rendered.
        ("admin_token_file", show(token)),
        ("admin_max_failures", s.admin_max_failures.to_string()),
        ("admin_block_time", format_duration(s.admin_block_time)),
        ("admin_session_ttl", format_duration(s.admin_sessions.ttl)),
        ("admin_max_sessions", s.admin_sessions.max.to_string()),
        ("audit_log", show(a.log.as_ref())),
        ("audit_max_bytes", format_size(a.max_bytes)),
        ("audit_max_age", format_duration(a.max_age)),
        ("audit_keep", a.keep.to_string()),
        ("audit_sample", format!("{}%", a.sample)),
        ("audit_queue", a.queue.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_keys_hold_these_in_order() {
        let (keys, these) = (crate::sections::SERVER_KEYS, super::SECURITY_KEYS);
        let at = keys.iter().position(|k| *k == these[0]).unwrap();
        assert_eq!(&keys[at..at + these.len()], these);
    }
}
