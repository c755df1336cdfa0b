//! The audit log: one JSON line per request and one per control-plane action.
//!
//! A request's line is written as JSON text into its reactor thread's [`Batch`] when the
//! request ends ([`line::write_request`]); full batches are handed to a writer thread through
//! a bounded channel ([`writer`]), so the request path never waits on the disk: when the
//! channel is full a batch of request lines is dropped and counted. Control-plane lines (rare, from the admin thread) wait for room and are never
//! dropped. Request lines are sampled (`audit_sample`); control-plane lines are not.

pub mod batch;
pub mod json;
pub mod line;
pub mod request;
pub mod writer;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use switchyard_config::AuditSettings;

pub use batch::Batch;
pub use line::{ControlLine, Ending, RequestLine};

/// Request lines a reactor thread gathers before it hands them to the writer in one send: one
/// wake-up of the writer thread per batch, not per request. A thread sends a partial batch on
/// its 100 ms tick, so a line waits at most that long.
pub const BATCH: usize = 64;

/// Lines on their way to the writer.
#[derive(Debug)]
pub enum Entry {
    /// A reactor thread's request lines, their text written, sent together (see
    /// [`Audit::requests`]).
    Requests(Batch),
    /// A control-plane action's line.
    Control(ControlLine),
    /// Asks the writer to answer once everything queued before it is written and synced to
    /// the disk (see [`Audit::flush`]).
    Flush(SyncSender<()>),
}

/// The audit log's counters (in `/stats` under `audit`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Lines written to the file.
    pub written: AtomicU64,
    /// Request lines dropped because the writer's queue was full.
    pub dropped: AtomicU64,
    /// Rotations done.
    pub rotations: AtomicU64,
    /// Failed writes, flushes, fsyncs or renames.
    pub write_errors: AtomicU64,
}

/// The handle the request path and the admin plane send lines through.
#[derive(Debug)]
pub struct Audit {
    tx: Option<SyncSender<Entry>>,
    sample: u32,
    /// The counters.
    pub counters: Arc<Counters>,
}

/// Why the audit log could not start.
#[derive(Debug)]
pub struct AuditError {
    /// The `audit_log` path.
    pub path: std::path::PathBuf,
    /// The operating system's error.
    pub source: std::io::Error,
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[server] audit_log {}: cannot open: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for AuditError {}

impl Audit {
    /// No audit log: every line is discarded at once.
    pub fn disabled() -> Self {
        Audit {
            tx: None,
            sample: 0,
            counters: Arc::default(),
        }
    }

    /// Opens `audit_log` (an error names the path) and starts the writer thread; without
    /// `audit_log`, [`Audit::disabled`].
    pub fn start(settings: &AuditSettings) -> Result<Self, AuditError> {
        let Some(path) = &settings.log else {
            return Ok(Audit::disabled());
        };
        let file = writer::open(path).map_err(|source| AuditError {
            path: path.clone(),
            source,
        })?;
        let counters = Arc::<Counters>::default();
        // `audit_queue` counts lines; they travel in batches of up to `BATCH`.
        let (tx, rx) = sync_channel(settings.queue.div_ceil(BATCH).max(1));
        let w = writer::Writer::new(path.clone(), file, settings.clone(), Arc::clone(&counters));
        // The thread ends when the last sender (this handle) is dropped, after writing
        // everything queued.
        std::thread::Builder::new()
            .name("switchyard-audit".into())
            .spawn(move || w.run(rx))
            .map_err(|source| AuditError {
                path: path.clone(),
                source,
            })?;
        Ok(Audit {
            tx: Some(tx),
            sample: settings.sample,
            counters,
        })
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether this request gets a line: the audit log is on, and the request is among the
    /// `audit_sample` percent (spread evenly, counted per thread without shared state).
    pub fn sample_request(&self) -> bool {
        if self.tx.is_none() {
            return false;
        }
        thread_local! {
            static SEEN: Cell<u64> = const { Cell::new(0) };
        }
        let n = SEEN.with(|c| {
            let n = c.get();
            c.set(n.wrapping_add(1));
            n
        });
        sampled(n, self.sample)
    }

    /// Queues a batch of request lines (a reactor thread's, see [`BATCH`]); if the queue is
    /// full they are dropped and counted, never waited for.
    pub fn requests(&self, batch: Batch) {
        let Some(tx) = &self.tx else { return };
        let n = batch.lines();
        if n == 0 {
            return;
        }
        match tx.try_send(Entry::Requests(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.write_errors.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Queues a control-plane line, waiting for room: these are never dropped. (Called off
    /// the data plane: the admin thread.)
    pub fn control(&self, action: &'static str, client: Option<String>, detail: serde_json::Value) {
        let Some(tx) = &self.tx else { return };
        let l = ControlLine {
            time: SystemTime::now(),
            action,
            client,
            detail,
        };
        if tx.send(Entry::Control(l)).is_err() {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every line queued so far is written and the file synced to the disk, or
    /// `timeout` has passed; answers whether it was. For a clean shutdown: without it, lines
    /// still queued when the process exits would be lost.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (done_tx, done_rx) = sync_channel(1);
        let deadline = std::time::Instant::now() + timeout;
        // Waits for room like a control line; a writer that has stopped answers at once.
        if tx.send(Entry::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }

    /// Queues a `config_changed` line with the changes from `old` to `new`, one summary
    /// string each (the config holds paths to secrets, never secrets, so none can show). For
    /// whatever applies a new config at run time.
    pub fn config_changed(
        &self,
        client: Option<String>,
        old: &switchyard_config::Config,
        new: &switchyard_config::Config,
    ) {
        let changes: Vec<String> = switchyard_config::diff(old, new)
            .iter()
            .map(ToString::to_string)
            .collect();
        self.control(
            "config_changed",
            client,
            serde_json::json!({ "changes": changes }),
        );
    }

    /// The counters as JSON (for `/stats`).
    pub fn stats_json(&self) -> serde_json::Value {
        let c = &self.counters;
        serde_json::json!({
            "enabled": self.enabled(),
            "written": c.written.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "rotations": c.rotations.load(Ordering::Relaxed),
            "write_errors": c.write_errors.load(Ordering::Relaxed),
        })
    }
}

/// Whether the `n`-th request (counting from 0) is among `percent` percent: exactly
/// `percent` of every 100 consecutive requests, spread evenly.
pub fn sampled(n: u64, percent: u32) -> bool {
    let p = u64::from(percent.min(100));
    let n = n % 100;
    (n + 1) * p / 100 != n * p / 100
}

/// A short, stable, non-reversible id of a bearer token (the first 8 hex digits of its
/// SHA-256), so audit lines tell API keys apart without holding them.
pub fn key_id(token: &[u8]) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut id = [0u8; 8];
    for (pair, b) in id.chunks_exact_mut(2).zip(d.as_ref()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    id
}

/// The token of an `Authorization: Bearer <token>` field, if the request has one.
pub fn bearer(headers: &http::HeaderMap) -> Option<&[u8]> {
    let v = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = v[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_request_lines_and_counts_them() {
        let (tx, rx) = sync_channel(2);
        let a = Audit {
            tx: Some(tx),
            sample: 100,
            counters: Arc::default(),
        };
        let batch = |n| {
            let mut b = Batch::default();
            for _ in 0..n {
                b.add(&RequestLine::default(), Ending::default());
            }
            b
        };
        for n in [1, 2, 3, 4, 5] {
            a.requests(batch(n));
        }
        a.requests(batch(0));
        assert_eq!(a.counters.dropped.load(Ordering::Relaxed), 12);
        assert_eq!(rx.try_iter().count(), 2);
        // Control lines wait for room instead (here there is some again).
        a.control("test", None, serde_json::Value::Null);
        assert!(matches!(rx.try_recv(), Ok(Entry::Control(_))));
        assert_eq!(a.counters.dropped.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn flush_returns_once_every_queued_line_is_in_the_file() {
        let dir =
            std::env::temp_dir().join(format!("switchyard-audit-flush-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        let a = Audit::start(&AuditSettings {
            log: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        let batch = |n| {
            let mut b = Batch::default();
            for _ in 0..n {
                b.add(&RequestLine::default(), Ending::default());
            }
            b
        };
        // The writer takes the first batch, then naps; the rest arrive during its nap.
        for n in [3, 5, 7] {
            a.requests(batch(n));
        }
        a.control("last", None, serde_json::Value::Null);
        assert!(a.flush(std::time::Duration::from_secs(30)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 16, "{text}");
        assert!(text.lines().last().unwrap().contains("\"last\""));
        assert_eq!(a.counters.written.load(Ordering::Relaxed), 16);
        // A log that is off has nothing to wait for.
        assert!(Audit::disabled().flush(std::time::Duration::ZERO));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_changes_are_one_control_line_with_a_summary() {
        let (tx, rx) = sync_channel(4);
        let a = Audit {
            tx: Some(tx),
            sample: 100,
            counters: Arc::default(),
        };
        let text = "[backend a]\naddress = h:1\n[route r]\nbackends = a\n";
        let old = switchyard_config::parse(text, "old.ini").unwrap();
        let new = switchyard_config::parse(
            &format!("[server]\nadmin_token_file = /etc/sy/admin.token\n{text}"),
            "new.ini",
        )
        .unwrap();
        a.config_changed(Some("127.0.0.1".into()), &old, &new);
        let Ok(Entry::Control(l)) = rx.try_recv() else {
            panic!("no control line")
        };
        let v: serde_json::Value = serde_json::from_str(&line::format_control(&l)).unwrap();
        assert_eq!(v["action"], "config_changed");
        assert_eq!(
            v["detail"]["changes"],
            serde_json::json!(["server: admin_token_file (unset) -> /etc/sy/admin.token"])
        );
    }

    #[test]
    fn a_disabled_log_samples_nothing() {
        let a = Audit::disabled();
        assert!(!a.enabled());
        assert!((0..10).all(|_| !a.sample_request()));
        let mut b = Batch::default();
        b.add(&RequestLine::default(), Ending::default());
        a.requests(b);
        a.control("test", None, serde_json::Value::Null);
        assert_eq!(a.stats_json()["written"], 0);
    }

    #[test]
    fn sampling_is_exact_per_hundred() {
        for p in [0u32, 1, 10, 33, 50, 99, 100] {
            let kept = (0..1000).filter(|&n| sampled(n, p)).count();
            assert_eq!(kept, p as usize * 10, "{p}%");
        }
    }

    #[test]
    fn key_ids_are_short_stable_and_not_the_secret() {
        let id = key_id(b"sk-secret-123");
        assert!(id.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(id, key_id(b"sk-secret-123"));
        assert_ne!(id, key_id(b"sk-secret-124"));
        let digest = ring::digest::digest(&ring::digest::SHA256, b"sk-secret-123");
        let hex: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&id[..], hex.as_bytes());
    }

    #[test]
    fn bearer_tokens() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert("authorization", "bearer xyz".parse().unwrap());
        assert_eq!(bearer(&h), Some(&b"xyz"[..]));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
