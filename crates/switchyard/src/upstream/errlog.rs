//! The last upstream errors per backend slot, for `/admin/diagnose`: a small ring filled where
//! a failed exchange is counted against its backend (refused or timed-out connections, resets,
//! invalid responses, failure statuses). Its lock is taken only on that error path and by the
//! admin plane reading it, never by a request that succeeds.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Mutex;

/// How many errors each slot keeps.
pub const KEEP: usize = 8;
/// The longest message kept (longer ones are cut at a character boundary).
const MAX_MESSAGE: usize = 300;

/// What kind of failure it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The backend refused the connection.
    ConnectRefused,
    /// Connecting took longer than `upstream_connect_timeout`.
    ConnectTimeout,
    /// Connecting failed otherwise (unreachable, TLS, HTTP/2 handshake...).
    ConnectFailed,
    /// No response head within `upstream_response_timeout`.
    ResponseTimeout,
    /// The backend reset the connection.
    Reset,
    /// The backend closed the connection before the response was complete.
    Closed,
    /// The backend's bytes were not a valid response.
    BadResponse,
    /// The HTTP/2 exchange failed.
    Http2,
    /// Another I/O error during the exchange.
    Io,
    /// The backend answered with a failure status (500, 502, 504).
    Status(u16),
}

impl Cause {
    /// A failed connect, by what the operating system said.
    pub fn of_connect(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Cause::ConnectRefused,
            io::ErrorKind::TimedOut => Cause::ConnectTimeout,
            _ => Cause::ConnectFailed,
        }
    }

    /// A failed exchange, by what broke during it.
    pub fn of_exchange(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Cause::Reset,
            io::ErrorKind::UnexpectedEof => Cause::Closed,
            io::ErrorKind::TimedOut => Cause::ResponseTimeout,
            io::ErrorKind::InvalidData => Cause::BadResponse,
            _ => Cause::Io,
        }
    }

    /// The name shown in `/admin/diagnose`.
    pub fn name(self) -> &'static str {
        match self {
            Cause::ConnectRefused => "connect_refused",
            Cause::ConnectTimeout => "connect_timeout",
            Cause::ConnectFailed => "connect_failed",
            Cause::ResponseTimeout => "response_timeout",
            Cause::Reset => "reset",
            Cause::Closed => "closed",
            Cause::BadResponse => "bad_response",
            Cause::Http2 => "http2",
            Cause::Io => "io",
            Cause::Status(_) => "status",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One recorded error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The generation of the slot's occupant it happened to.
    pub generation: u64,
    /// Its kind.
    pub cause: Cause,
    /// What was said about it.
    pub message: String,
    /// When, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// One slot's ring of errors, newest last.
#[derive(Debug, Default)]
pub struct ErrorLog {
    ring: Mutex<VecDeque<Entry>>,
}

impl ErrorLog {
    /// Records an error of the slot's occupant `generation` (error path only).
    pub fn record(&self, generation: u64, cause: Cause, why: &dyn fmt::Display) {
        let mut message = why.to_string();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let entry = Entry {
            generation,
            cause,
            message,
            unix_ms: unix_ms(),
        };
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() >= KEEP {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// The errors of occupant `generation`, newest first.
    pub fn recent(&self, generation: u64) -> Vec<Entry> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter()
            .rev()
            .filter(|e| e.generation == generation)
            .cloned()
            .collect()
    }
}

pub use crate::clock::unix_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_errors_of_the_current_occupant() {
        let log = ErrorLog::default();
        log.record(1, Cause::Reset, &"old occupant");
        for i in 0..KEEP + 2 {
            log.record(2, Cause::Status(502), &format!("e{i}"));
        }
        let recent = log.recent(2);
        assert_eq!(recent.len(), KEEP);
        assert_eq!(recent[0].message, format!("e{}", KEEP + 1));
        assert_eq!(recent[0].cause.name(), "status");
        assert!(
            log.recent(1).is_empty(),
            "pushed out, and not the new occupant's"
        );
    }

    #[test]
    fn long_messages_are_cut_and_causes_typed() {
        let log = ErrorLog::default();
        log.record(0, Cause::Io, &"é".repeat(400));
        let m = &log.recent(0)[0].message;
        assert!(m.len() <= MAX_MESSAGE + 3 && m.ends_with('…'));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Cause::of_connect(&refused), Cause::ConnectRefused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(Cause::of_exchange(&reset), Cause::Reset);
    }
}
