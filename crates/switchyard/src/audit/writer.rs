//! The audit writer thread: appends lines to the file, rotates it by size and age (with an
//! fsync of the finished file), counts what it wrote and what failed. Request lines come as
//! text, a batch at a time; the writer takes every batch queued (up to [`GATHER`]) and writes
//! them with one vectored `write` (no copy, no flush or fsync per line), then naps (see
//! [`NAP`]). The rotation decision and the rotated files' names are pure functions.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
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
/// and lines queue for at most this long. A nap takes 1,200 lines of the default
/// `audit_queue` (32,768) at 60,000 lines a second; the rest absorbs the disk's stalls.
const NAP: Duration = Duration::from_millis(20);

/// The most batches written with one call (each is one `iovec`; Linux takes 1,024). Large
/// writes cost the kernel less per byte than small ones: fewer calls, fewer time stamps on
/// the inode, and room for the page cache to use large folios.
const GATHER: usize = 256;

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
        let mut queued = Vec::with_capacity(GATHER);
        loop {
            match rx.recv_timeout(AGE_CHECK) {
                Ok(e) => {
                    queued.push(e);
                    loop {
                        while queued.len() < GATHER {
                            match rx.try_recv() {
                                Ok(e) => queued.push(e),
                                Err(_) => break,
                            }
                        }
                        let full = queued.len() == GATHER;
                        self.write_all(&mut queued);
                        if !full {
                            break;
                        }
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

    /// Writes (and empties) `queued`: request batches with one vectored write for as many
    /// as fit before the file is due to rotate, everything else one entry at a time.
    fn write_all(&mut self, queued: &mut Vec<Entry>) {
        let mut rest = &queued[..];
        while let Some(first) = rest.first() {
            let done = self.write_run(rest);
            if done > 0 {
                rest = &rest[done..];
            } else {
                self.write(first);
                rest = &rest[1..];
            }
        }
        queued.clear();
    }

    /// Writes the request batches at the start of `queued` with one vectored write, as many
    /// as fit before a rotation is due; answers how many it took (0: none fit whole, or the
    /// file is not open, and [`Self::write`] is to split the next one).
    fn write_run(&mut self, queued: &[Entry]) -> usize {
        let old =
            !self.settings.max_age.is_zero() && self.opened.elapsed() >= self.settings.max_age;
        if self.out.is_none() || old {
            return 0;
        }
        let room = (self.settings.max_bytes as u64).saturating_sub(self.size);
        let mut slices = Vec::new();
        let (mut len, mut lines) = (0u64, 0u64);
        for e in queued {
            let Entry::Requests(b) = e else { break };
            let text = b.text();
            if len + text.len() as u64 > room {
                break;
            }
            slices.push(IoSlice::new(text));
            len += text.len() as u64;
            lines += b.lines();
        }
        let taken = slices.len();
        let Some(out) = self.out.as_mut().filter(|_| taken > 0) else {
            return 0;
        };
        if write_all_vectored(out, &mut slices).is_ok() {
            self.size += len;
            self.counters.written.fetch_add(lines, Ordering::Relaxed);
        } else {
            self.counters
                .write_errors
                .fetch_add(lines, Ordering::Relaxed);
        }
        taken
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
            Entry::Flush(done) => {
                if let Some(out) = &self.out {
                    if out.sync_data().is_err() {
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let _ = done.try_send(());
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

/// Writes every byte of `slices` (which it consumes), however many calls that takes.
fn write_all_vectored(out: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A writer on `audit.log` in a fresh directory named after `test`, with `settings`
    /// (their `log` set to that file), and its counters.
    fn writer(test: &str, settings: AuditSettings) -> (PathBuf, PathBuf, Writer, Arc<Counters>) {
        let dir =
            std::env::temp_dir().join(format!("switchyard-audit-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        let settings = AuditSettings {
            log: Some(path.clone()),
            ..settings
        };
        let counters = Arc::<Counters>::default();
        let w = Writer::new(
            path.clone(),
            open(&path).unwrap(),
            settings,
            Arc::clone(&counters),
        );
        (dir, path, w, counters)
    }

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
        let (dir, path, mut w, counters) = writer(
            "age",
            AuditSettings {
                max_age: Duration::from_secs(3600),
                keep: 1,
                ..Default::default()
            },
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
        let (dir, path, mut w, counters) = writer(
            "batch",
            AuditSettings {
                max_bytes: 1024,
                keep: 3,
                ..Default::default()
            },
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
    fn queued_batches_are_written_together_in_order_and_rotate_between_lines() {
        let (dir, path, mut w, counters) = writer(
            "gather",
            AuditSettings {
                max_bytes: 4096,
                keep: 5,
                ..Default::default()
            },
        );
        // Batches of 3 lines, each line naming its number in `bytes`, with a control line in
        // the middle of the queue.
        let mut n = 0u64;
        let mut batch = || {
            let mut b = super::super::Batch::default();
            for _ in 0..3 {
                let l = line::RequestLine {
                    bytes: n,
                    ..Default::default()
                };
                b.add(&l, line::Ending::default());
                n += 1;
            }
            Entry::Requests(b)
        };
        let mut queued = vec![batch(), batch()];
        queued.push(Entry::Control(line::ControlLine {
            time: std::time::UNIX_EPOCH,
            action: "between",
            client: None,
            detail: serde_json::Value::Null,
        }));
        for _ in 0..20 {
            queued.push(batch());
        }
        w.write_all(&mut queued);
        assert!(queued.is_empty());
        assert_eq!(counters.written.load(Ordering::Relaxed), 67);
        assert_eq!(counters.write_errors.load(Ordering::Relaxed), 0);
        let rotations = counters.rotations.load(Ordering::Relaxed);
        assert!(rotations >= 2, "{rotations}");
        // Oldest file first: every line whole, the numbers in order, the control line after
        // the sixth request line.
        let mut seen = Vec::new();
        for k in (0..=rotations as u32).rev() {
            let p = if k == 0 {
                path.clone()
            } else {
                rotated_path(&path, k)
            };
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() <= 4096 && text.ends_with('\n'), "{}", text.len());
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                seen.push(match v["type"].as_str() {
                    Some("control") => -1,
                    _ => v["bytes"].as_i64().unwrap(),
                });
            }
        }
        let mut expected: Vec<i64> = (0..66).collect();
        expected.insert(6, -1);
        assert_eq!(seen, expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotated_names() {
        let p = Path::new("/var/log/audit.log");
        assert_eq!(rotated_path(p, 1), Path::new("/var/log/audit.log.1"));
        assert_eq!(rotated_path(p, 12), Path::new("/var/log/audit.log.12"));
    }
}
