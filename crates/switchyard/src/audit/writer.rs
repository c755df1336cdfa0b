//! The audit writer thread: appends lines to the file, rotates it by size and age (with an
//! fsync of the finished file), counts what it wrote and what failed. Request lines come as
//! text, a batch at a time, written with one `write` each (no buffering here, no flush or
//! fsync per line); the writer empties the queue, then naps (see [`NAP`]). The rotation
//! decision and the rotated files' names are pure functions.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_config::AuditSettings;

use super::{line, Counters, Entry};

/// How often an idle writer checks the file's age.
const AGE_CHECK: Duration = Duration::from_secs(1);

/// How long the writer sleeps after emptying the queue before it waits on it again. Senders
/// only wake a writer that waits, so under load the reactors wake it at most once per nap
/// (not once per batch: each wake-up is a context switch on a CPU the reactors may share),
/// and lines queue for at most this long. A nap takes 300 lines of the default `audit_queue`
/// (4096) at 60,000 lines a second; the rest absorbs the disk's stalls.
const NAP: Duration = Duration::from_millis(5);

/// Whether the file must be rotated before a line of `incoming` bytes is written: it would
/// grow past `max_bytes`, or it is `max_age` old (`0`: never by age). An empty file is never
/// rotated (a line longer than `max_bytes` is written whole to a fresh file).
pub fn rotation_due(
    size: u64,
    incoming: u64,
    age: Duration,
    max_bytes: u64,
    max_age: Duration,
) -> bool {
    size > 0 && (size + incoming > max_bytes || (!max_age.is_zero() && age >= max_age))
}

/// The `n`-th rotated file of `path` (`PATH.1` is the newest).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Opens (creating, appending to) the audit file.
pub fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The open file and what rotation needs to know about it.
pub(super) struct Writer {
    path: PathBuf,
    settings: AuditSettings,
    out: Option<File>,
    size: u64,
    opened: Instant,
    counters: Arc<Counters>,
}

impl Writer {
    pub(super) fn new(
        path: PathBuf,
        file: File,
        settings: AuditSettings,
        counters: Arc<Counters>,
    ) -> Self {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Writer {
            path,
            settings,
            out: Some(file),
            size,
            opened: Instant::now(),
            counters,
        }
    }

    /// Writes entries until every sender is gone.
    pub(super) fn run(mut self, rx: Receiver<Entry>) {
        loop {
            match rx.recv_timeout(AGE_CHECK) {
                Ok(e) => {
                    self.write(&e);
                    while let Ok(e) = rx.try_recv() {
                        self.write(&e);
                    }
                    std::thread::sleep(NAP);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.rotate_if_due(0);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn write(&mut self, e: &Entry) {
        match e {
            Entry::Requests(batch) => {
                let text = batch.text();
                let len = text.len() as u64;
                // Whether a rotation may fall within the batch (even into an empty file).
                let split = self.size + len > self.settings.max_bytes as u64
                    || rotation_due(
                        self.size,
                        len,
                        self.opened.elapsed(),
                        self.settings.max_bytes as u64,
                        self.settings.max_age,
                    );
                if split && batch.lines() > 1 {
                    // Line by line, so that the rotation falls between two lines.
                    for l in text.split_inclusive(|&c| c == b'\n') {
                        self.write_text(l, 1);
                    }
                } else {
                    self.write_text(text, batch.lines());
                }
            }
            Entry::Control(l) => {
                let mut text = line::format_control(l);
                text.push('\n');
                self.write_text(text.as_bytes(), 1);
            }
        }
    }

    /// Writes `lines` whole lines of text (rotating first when it is due).
    fn write_text(&mut self, text: &[u8], lines: u64) {
        self.rotate_if_due(text.len() as u64);
        if self.out.is_none() {
            self.reopen();
        }
        let ok = match &mut self.out {
            Some(out) => out.write_all(text).is_ok(),
            None => false,
        };
        if ok {
            self.size += text.len() as u64;
            self.counters.written.fetch_add(lines, Ordering::Relaxed);
        } else {
            self.counters
                .write_errors
                .fetch_add(lines, Ordering::Relaxed);
        }
    }

    fn rotate_if_due(&mut self, incoming: u64) {
        let due = rotation_due(
            self.size,
            incoming,
            self.opened.elapsed(),
            self.settings.max_bytes as u64,
            self.settings.max_age,
        );
        if due {
            self.rotate();
        }
    }

    /// Finishes the file (fsync), shifts `PATH.n` to `PATH.n+1` (the oldest beyond
    /// `audit_keep` is overwritten), moves the file to `PATH.1` and opens a fresh one.
    fn rotate(&mut self) {
        if let Some(out) = self.out.take() {
            if out.sync_all().is_err() {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let keep = self.settings.keep;
        let moved = if keep == 0 {
            std::fs::remove_file(&self.path)
        } else {
            for n in (1..keep).rev() {
                let _ =
                    std::fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1));
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))
        };
        if moved.is_err() {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.counters.rotations.fetch_add(1, Ordering::Relaxed);
        self.reopen();
    }

    fn reopen(&mut self) {
        match open(&self.path) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.out = Some(f);
                self.opened = Instant::now();
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "audit: cannot open the log");
                self.out = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn rotation_by_size_and_age() {
        assert!(!rotation_due(0, 5000, DAY, 1024, DAY), "empty file");
        assert!(!rotation_due(1000, 24, Duration::ZERO, 1024, DAY));
        assert!(rotation_due(1000, 25, Duration::ZERO, 1024, DAY));
        assert!(rotation_due(10, 0, DAY, 1024, DAY));
        assert!(
            !rotation_due(10, 0, DAY * 7, 1024, Duration::ZERO),
            "never by age"
        );
    }

    #[test]
    fn an_old_file_is_rotated_before_the_next_line_and_synced_away() {
        let dir = std::env::temp_dir().join(format!("switchyard-audit-age-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(rotated_path(&path, 1));
        let settings = AuditSettings {
            log: Some(path.clone()),
            max_age: Duration::from_secs(3600),
            keep: 1,
            ..Default::default()
        };
        let counters = Arc::<Counters>::default();
        let mut w = Writer::new(
            path.clone(),
            open(&path).unwrap(),
            settings,
            Arc::clone(&counters),
        );
        let line = |action| {
            Entry::Control(line::ControlLine {
                time: std::time::UNIX_EPOCH,
                action,
                client: None,
                detail: serde_json::Value::Null,
            })
        };
        w.write(&line("first"));
        // An hour later (the writer's clock moved back rather than sleeping).
        if let Some(earlier) = Instant::now().checked_sub(Duration::from_secs(3600)) {
            w.opened = earlier;
            w.write(&line("second"));
            let old = std::fs::read_to_string(rotated_path(&path, 1)).unwrap();
            let new = std::fs::read_to_string(&path).unwrap();
            assert!(
                old.contains("\"first\"") && !old.contains("second"),
                "{old}"
            );
            assert!(
                new.contains("\"second\"") && !new.contains("first"),
                "{new}"
            );
            assert_eq!(counters.rotations.load(Ordering::Relaxed), 1);
            assert_eq!(counters.written.load(Ordering::Relaxed), 2);
            assert_eq!(counters.write_errors.load(Ordering::Relaxed), 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_batch_is_split_between_lines_where_the_file_rotates() {
        let dir =
            std::env::temp_dir().join(format!("switchyard-audit-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        let settings = AuditSettings {
            log: Some(path.clone()),
            max_bytes: 1024,
            keep: 3,
            ..Default::default()
        };
        let counters = Arc::<Counters>::default();
        let mut w = Writer::new(
            path.clone(),
            open(&path).unwrap(),
            settings,
            Arc::clone(&counters),
        );
        let mut batch = super::super::Batch::default();
        for _ in 0..8 {
            batch.add(&line::RequestLine::default(), line::Ending::default());
        }
        let size = batch.text().len() as u64;
        assert!(size > 1024 && size < 2048, "{size}");
        w.write(&Entry::Requests(batch));
        assert_eq!(counters.written.load(Ordering::Relaxed), 8);
        assert_eq!(counters.rotations.load(Ordering::Relaxed), 1);
        let mut lines = 0;
        for p in [path.clone(), rotated_path(&path, 1)] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() <= 1024 && text.ends_with('\n'), "{}", text.len());
            lines += text.lines().count();
        }
        assert_eq!(lines, 8);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotated_names() {
        let p = Path::new("/var/log/audit.log");
        assert_eq!(rotated_path(p, 1), Path::new("/var/log/audit.log.1"));
        assert_eq!(rotated_path(p, 12), Path::new("/var/log/audit.log.12"));
    }
}
