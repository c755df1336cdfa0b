//! Admin plane authentication: the bearer token from `admin_token_file`, compared in constant
//! time, and a per-client limit on failed attempts. The comparison and the limiter are pure
//! (the limiter takes the time as an argument), tested without sleeps. The limits are
//! `admin_max_failures` per [`FAILURE_WINDOW`] and `admin_block_time`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The window failed attempts are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The most client IPs the limiter remembers (the stalest is forgotten past it).
pub const MAX_TRACKED: usize = 4096;

/// The admin token. Its `Debug` output is redacted; it is never logged nor rendered.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Vec<u8>);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Why `admin_token_file` cannot be used.
#[derive(Debug)]
pub struct TokenFileError {
    /// The path configured.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[server] admin_token_file {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for TokenFileError {}

impl AdminToken {
    /// The token in `text` (a file's content): trailing whitespace and newlines are trimmed.
    pub fn from_file_text(path: &Path, text: &[u8]) -> Result<Self, TokenFileError> {
        let token = text.trim_ascii_end();
        let err = |reason: &str| TokenFileError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if token.is_empty() {
            return Err(err(
                "the file is empty; it must hold the admin bearer token",
            ));
        }
        if token.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
            return Err(err(
                "the token must be printable ASCII without spaces (it is sent in an HTTP header)",
            ));
        }
        Ok(AdminToken(token.to_vec()))
    }

    /// The token's bytes, for a client presenting it (`switchyard reload`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads the token from `path` (an error names the path, never the content).
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read(path).map_err(|e| TokenFileError {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        AdminToken::from_file_text(path, &text)
    }

    /// Whether `presented` is the token, in time independent of where they differ and of
    /// the presented length (both are hashed, then every digest byte compared).
    pub fn matches(&self, presented: Option<&[u8]>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let a = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let b = ring::digest::digest(&ring::digest::SHA256, presented);
        constant_time_eq(a.as_ref(), b.as_ref())
    }
}

/// Compares two slices of equal length without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    window_start: Duration,
    blocked_until: Option<Duration>,
}

/// Failed admin attempts per client IP: `max_failures` within [`FAILURE_WINDOW`] block the
/// client for `block`. Times are durations since any fixed origin.
#[derive(Debug)]
pub struct Failures {
    clients: HashMap<IpAddr, Record>,
    max_failures: u32,
    block: Duration,
}

impl Default for Failures {
    fn default() -> Self {
        Failures::new(
            switchyard_config::DEFAULT_ADMIN_MAX_FAILURES,
            switchyard_config::DEFAULT_ADMIN_BLOCK_TIME,
        )
    }
}

impl Failures {
    /// A limiter blocking a client for `block` after `max_failures` within the window.
    pub fn new(max_failures: u32, block: Duration) -> Self {
        Failures {
            clients: HashMap::new(),
            max_failures: max_failures.max(1),
            block,
        }
    }

    /// If `ip` is blocked at `now`, how long it still is.
    pub fn blocked(&self, ip: IpAddr, now: Duration) -> Option<Duration> {
        let until = self.clients.get(&ip)?.blocked_until?;
        (now < until).then(|| until - now)
    }

    /// Counts a failure from `ip` at `now`; returns whether `ip` is now blocked.
    pub fn fail(&mut self, ip: IpAddr, now: Duration) -> bool {
        if self.clients.len() >= MAX_TRACKED && !self.clients.contains_key(&ip) {
            self.forget_stale(now);
        }
        let r = self.clients.entry(ip).or_insert(Record {
            failures: 0,
            window_start: now,
            blocked_until: None,
        });
        if now.saturating_sub(r.window_start) >= FAILURE_WINDOW {
            r.failures = 0;
            r.window_start = now;
        }
        r.failures += 1;
        if r.failures >= self.max_failures {
            r.blocked_until = Some(now + self.block);
            r.failures = 0;
            r.window_start = now;
        }
        r.blocked_until.is_some_and(|u| now < u)
    }

    /// Forgets clients whose window and block are over; if none are, the one whose window
    /// started first.
    fn forget_stale(&mut self, now: Duration) {
        self.clients.retain(|_, r| {
            now.saturating_sub(r.window_start) < FAILURE_WINDOW
                || r.blocked_until.is_some_and(|u| now < u)
        });
        if self.clients.len() >= MAX_TRACKED {
            if let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, r)| r.window_start)
                .map(|(ip, _)| *ip)
            {
                self.clients.remove(&oldest);
            }
        }
    }

    /// Client IPs remembered.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn token_file_text() {
        let p = Path::new("/etc/t");
        let t = AdminToken::from_file_text(p, b"s3cret\n").unwrap();
        assert!(t.matches(Some(b"s3cret")));
        assert!(!t.matches(Some(b"s3cret\n")));
        assert!(!t.matches(Some(b"s3cre")));
        assert!(!t.matches(Some(b"")));
        assert!(!t.matches(None));
        let e = AdminToken::from_file_text(p, b"\n").unwrap_err();
        assert!(e.to_string().contains("/etc/t") && e.to_string().contains("empty"));
        assert!(AdminToken::from_file_text(p, b"a b").is_err());
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn five_failures_in_a_minute_block_for_a_minute() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut f = Failures::default();
        for i in 0..4 {
            assert!(!f.fail(ip, secs(i)));
            assert_eq!(f.blocked(ip, secs(i)), None);
        }
        assert!(f.fail(ip, secs(10)));
        assert_eq!(f.blocked(ip, secs(10)), Some(secs(60)));
        assert_eq!(f.blocked(ip, secs(69)), Some(secs(1)));
        assert_eq!(f.blocked(other, secs(10)), None);
        assert_eq!(f.blocked(ip, secs(70)), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_window_do_not_block() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut f = Failures::default();
        for i in 0..20 {
            assert!(!f.fail(ip, secs(i * 20)), "failure {i}");
        }
    }

    #[test]
    fn the_limits_are_configurable() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut f = Failures::new(2, secs(300));
        assert!(!f.fail(ip, secs(0)));
        assert!(f.fail(ip, secs(1)));
        assert_eq!(f.blocked(ip, secs(1)), Some(secs(300)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut f = Failures::default();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            f.fail(IpAddr::from(i.to_be_bytes()), secs(0));
        }
        assert!(f.len() <= MAX_TRACKED);
    }
}

/// The admin plane's guard: the token (if configured) and the failed attempts.
#[derive(Debug, Default)]
pub struct AdminAuth {
    /// `None`: the admin endpoint is open (only allowed on loopback).
    pub token: Option<AdminToken>,
    /// Failed attempts per client.
    pub failures: std::sync::Mutex<Failures>,
    /// Requests refused with 401 (`/stats` `admin.auth_failures`).
    pub refused: std::sync::atomic::AtomicU64,
    /// Requests refused with 429 (`/stats` `admin.auth_blocked`).
    pub blocked: std::sync::atomic::AtomicU64,
    /// The admin pages' sign-in sessions (a cookie in place of the token).
    pub sessions: super::session::Sessions,
}

/// What the guard decided about one admin request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// 401: no token, or the wrong one (`blocked`: this failure blocked the client).
    Unauthorized {
        /// Whether the client is now blocked.
        blocked: bool,
    },
    /// 429: too many failures lately; retry after this many seconds.
    Blocked(u64),
}

impl AdminAuth {
    /// The guard for `token`, blocking a client for `block` after `max_failures` failures
    /// within a minute, with `sessions` for the admin pages.
    pub fn new(
        token: Option<AdminToken>,
        max_failures: u32,
        block: Duration,
        sessions: super::session::Sessions,
    ) -> Self {
        AdminAuth {
            token,
            failures: std::sync::Mutex::new(Failures::new(max_failures, block)),
            sessions,
            ..Default::default()
        }
    }

    /// The counters as JSON (for `/stats`): whether a token is required, refusals.
    pub fn stats_json(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "token_required": self.token.is_some(),
            "auth_failures": self.refused.load(Relaxed),
            "auth_blocked": self.blocked.load(Relaxed),
            "sessions_max": self.sessions.max(),
        })
    }

    /// Checks one request from `ip` presenting `bearer` at `now`.
    pub fn check(&self, ip: IpAddr, bearer: Option<&[u8]>, now: Duration) -> Verdict {
        let Some(token) = &self.token else {
            return Verdict::Allow;
        };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(left) = failures.blocked(ip, now) {
            self.blocked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Verdict::Blocked(left.as_secs().max(1));
        }
        if token.matches(bearer) {
            return Verdict::Allow;
        }
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Verdict::Unauthorized {
            blocked: failures.fail(ip, now),
        }
    }
}
