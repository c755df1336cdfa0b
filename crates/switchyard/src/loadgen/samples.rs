//! `--samples FILE`: one JSON line per measured request, for looking behind the percentiles
//! (which requests were slow, on which turn, and — with `explain = true` on the proxy's route —
//! which backend served them and why).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::stats::Outcome;

/// Longest `x-switchyard-route` value kept.
pub const MAX_ROUTE_BYTES: usize = 512;

/// One measured request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Scheduled arrival, seconds from the start of the measured window.
    pub at_s: f64,
    /// The conversation's number.
    pub conversation: u64,
    /// The turn within it (1-based).
    pub turn: u32,
    /// How long it waited for its conversation's previous reply before being sent, ms.
    pub wait_ms: f64,
    /// HTTP status, when headers arrived.
    pub status: Option<u16>,
    /// Time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Total latency, ms.
    pub total_ms: f64,
    /// Tokens generated.
    pub tokens: u64,
    /// The error kind, if it failed.
    pub error: Option<String>,
    /// The proxy's `x-switchyard-route` header (its route explanation), when present.
    pub route: Option<String>,
}

impl Sample {
    /// The sample of request `conversation`/`turn` that arrived at `at_s` and was sent `wait`
    /// later.
    pub fn new(
        at_s: f64,
        conversation: u64,
        turn: u32,
        wait: std::time::Duration,
        outcome: &Outcome,
        route: Option<String>,
    ) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1_000.0;
        Self {
            at_s,
            conversation,
            turn,
            wait_ms: ms(wait),
            status: outcome.status,
            ttft_ms: outcome.ttft.map(ms),
            total_ms: ms(outcome.total),
            tokens: outcome.tokens,
            error: outcome.error.map(|e| e.key()),
            route,
        }
    }
}

/// Where samples go: the file is created before the run (so a bad path fails early) and
/// written after it.
#[derive(Debug)]
pub struct SampleFile {
    path: PathBuf,
    file: std::fs::File,
}

impl SampleFile {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, String> {
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes `samples` as JSON lines, sorted by arrival.
    pub fn write(self, mut samples: Vec<Sample>) -> Result<usize, String> {
        samples.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let mut w = std::io::BufWriter::new(self.file);
        for s in &samples {
            serde_json::to_writer(&mut w, s)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        }
        w.flush()
            .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        Ok(samples.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::stats::ErrorKind;
    use std::time::Duration;

    #[test]
    fn writes_sorted_json_lines() {
        let path =
            std::env::temp_dir().join(format!("loadgen-samples-{}.jsonl", std::process::id()));
        let ok = Outcome {
            measured: true,
            status: Some(200),
            ttft: Some(Duration::from_millis(5)),
            total: Duration::from_millis(20),
            tokens: 3,
            error: None,
        };
        let failed = Outcome {
            status: None,
            ttft: None,
            error: Some(ErrorKind::Connect),
            ..ok.clone()
        };
        let f = SampleFile::create(&path).unwrap();
        let n = f
            .write(vec![
                Sample::new(2.0, 1, 2, Duration::ZERO, &ok, Some("backend=a".into())),
                Sample::new(1.0, 0, 1, Duration::from_millis(3), &failed, None),
            ])
            .unwrap();
        assert_eq!(n, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["error"], "connect");
        assert_eq!(lines[0]["wait_ms"], 3.0);
        assert_eq!(lines[1]["ttft_ms"], 5.0);
        assert_eq!(lines[1]["route"], "backend=a");
        std::fs::remove_file(&path).unwrap();
        assert!(SampleFile::create(Path::new("/nonexistent-dir/x.jsonl"))
            .unwrap_err()
            .contains("cannot create"));
    }
}
