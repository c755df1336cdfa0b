//! Browser sessions for the admin pages. A browser cannot put the admin token in an
//! `Authorization` header when it follows a link, so `POST /admin/login` trades the token for a
//! session: a random 256-bit id in a cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`) that the
//! admin plane accepts in place of the bearer token until it expires or the user signs out.
//!
//! The table is bounded (`admin_max_sessions`; past it the session closest to expiry is
//! dropped) and every session lives `admin_session_ttl` from sign-in. Requests that change
//! state and are authenticated by the cookie must also carry `x-switchyard-ui: 1` (the pages'
//! scripts send it; a cross-site form cannot), on top of `SameSite=Strict`. Time is an argument,
//! so the table is tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// The cookie's name.
pub const COOKIE: &str = "switchyard_admin";
/// The header a cookie-authenticated request that changes state must carry (value `1`).
pub const UI_HEADER: &str = "x-switchyard-ui";

/// The live sessions: id (hex) → expiry (on the server's monotonic clock).
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    max: usize,
    table: Mutex<HashMap<String, Duration>>,
    rng: SystemRandom,
}

impl Sessions {
    /// A table of at most `max` sessions, each living `ttl`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Sessions {
            ttl,
            max: max.max(1),
            table: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        }
    }

    /// The most sessions kept at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// How long a session lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session at `now`: its id, or `None` if the system has no randomness to give.
    pub fn create(&self, now: Duration) -> Option<String> {
        let mut raw = [0u8; 32];
        self.rng.fill(&mut raw).ok()?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut table = self.lock();
        table.retain(|_, expiry| *expiry > now);
        if table.len() >= self.max {
            if let Some(oldest) = table
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
        table.insert(id.clone(), now + self.ttl);
        Some(id)
    }

    /// Whether `id` is a live session at `now` (an expired one is forgotten).
    pub fn valid(&self, id: &str, now: Duration) -> bool {
        let mut table = self.lock();
        match table.get(id) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                table.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends session `id` (signing out).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Live sessions at `now` (for `/stats`).
    pub fn len(&self, now: Duration) -> usize {
        self.lock().values().filter(|e| **e > now).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Duration>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for Sessions {
    fn default() -> Self {
        let d = switchyard_config::AdminSessions::default();
        Sessions::new(d.ttl, d.max)
    }
}

/// The session id in a request's `Cookie` headers, if any.
pub fn cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that stores session `id` for `ttl`.
pub fn set_cookie(id: &str, ttl: Duration) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        ttl.as_secs()
    )
}

/// The `Set-Cookie` value that deletes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether `next` (from the sign-in form) is a path on this server to return to: it must
/// start with one `/` (not `//`, another host) and hold no backslash or control character.
pub fn local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_session_lives_its_ttl() {
        let s = Sessions::new(secs(60), 8);
        let id = s.create(secs(100)).unwrap();
        assert_eq!(id.len(), 64);
        assert!(s.valid(&id, secs(159)));
        assert!(!s.valid(&id, secs(160)));
        assert!(!s.valid(&id, secs(100)), "an expired session is forgotten");
        assert!(!s.valid("nope", secs(100)));
    }

    #[test]
    fn ids_differ_and_sign_out_ends_one() {
        let s = Sessions::new(secs(60), 8);
        let (a, b) = (s.create(secs(0)).unwrap(), s.create(secs(0)).unwrap());
        assert_ne!(a, b);
        s.remove(&a);
        assert!(!s.valid(&a, secs(1)));
        assert!(s.valid(&b, secs(1)));
        assert_eq!(s.len(secs(1)), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Sessions::new(secs(60), 3);
        let ids: Vec<String> = (0..5).map(|i| s.create(secs(i)).unwrap()).collect();
        assert_eq!(s.len(secs(5)), 3);
        assert!(
            !s.valid(&ids[0], secs(5)),
            "the one closest to expiry went first"
        );
        assert!(!s.valid(&ids[1], secs(5)));
        assert!(ids[2..].iter().all(|id| s.valid(id, secs(5))));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; switchyard_admin=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("abc"));
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, "x=1".parse().unwrap());
        h.append(
            http::header::COOKIE,
            "switchyard_admin=def".parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("def"));
        assert_eq!(cookie(&http::HeaderMap::new()), None);
        assert!(set_cookie("abc", secs(3600)).contains("HttpOnly; SameSite=Strict; Max-Age=3600"));
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert!(local_path("/dashboard"));
        assert!(local_path("/admin/config/ui?x=1"));
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "",
            "x",
            "/a\nb",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
    }
}
