//! `health = script COMMAND [ARG...]`: runs the command directly (no shell), with the
//! backend in its environment:
//!
//! | variable | value |
//! |---|---|
//! | `SWITCHYARD_BACKEND_ADDRESS` | the configured `address`, `HOST:PORT` (`[::1]:8000` for IPv6) |
//! | `SWITCHYARD_BACKEND_HOST` | its host (an IPv6 address without brackets) |
//! | `SWITCHYARD_BACKEND_PORT` | its port |
//! | `SWITCHYARD_BACKEND_NAME` | the backend's name |
//! | `SWITCHYARD_HEALTH_TIMEOUT_MS` | `health_timeout` in milliseconds |
//!
//! Exit status 0 passes. Standard input is empty, standard output is discarded, and the first
//! [`MAX_STDERR`] bytes of standard error are kept for the log (the rest is read and dropped,
//! so a chatty script neither blocks on a full pipe nor fills memory). When the check's
//! future is dropped at `health_timeout`, the child is killed (`kill_on_drop`) and reaped
//! by tokio; processes it started itself are not (a script should `exec` its last command).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, Command};

use super::probe::ProbeError;
use super::Target;

/// How much of a script's standard error is kept for the log.
pub const MAX_STDERR: usize = 512;

/// Runs the script once.
pub async fn run(
    target: &Target,
    command: &str,
    args: &[String],
    timeout: Duration,
) -> Result<(), ProbeError> {
    let spawn_err = |source| ProbeError::Spawn {
        command: command.to_string(),
        source,
    };
    let mut child = Command::new(command)
        .args(args)
        .env("SWITCHYARD_BACKEND_ADDRESS", target.address.to_string())
        .env("SWITCHYARD_BACKEND_HOST", &target.address.host)
        .env("SWITCHYARD_BACKEND_PORT", target.address.port.to_string())
        .env("SWITCHYARD_BACKEND_NAME", &target.name)
        .env(
            "SWITCHYARD_HEALTH_TIMEOUT_MS",
            timeout.as_millis().to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let mut stderr = child.stderr.take();
    let mut kept = Vec::new();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(spawn_err)?,
            chunk = read_chunk(&mut stderr), if stderr.is_some() => match chunk {
                Some(bytes) => keep(&mut kept, &bytes),
                None => stderr = None,
            },
        }
    };
    if status.success() {
        return Ok(());
    }
    // What it wrote just before exiting may still be in the pipe.
    let _ = tokio::time::timeout(Duration::from_millis(20), async {
        while let Some(bytes) = read_chunk(&mut stderr).await {
            keep(&mut kept, &bytes);
        }
    })
    .await;
    Err(ProbeError::Exit {
        status,
        stderr: summary(&kept),
    })
}

/// The next chunk of `stderr`; `None` at its end (or on an error, or when there is none).
async fn read_chunk(stderr: &mut Option<ChildStderr>) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = stderr.as_mut()?.read(&mut buf).await.ok()?;
    (n > 0).then(|| {
        buf.truncate(n);
        buf
    })
}

/// Keeps the first [`MAX_STDERR`] bytes.
fn keep(kept: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_STDERR.saturating_sub(kept.len());
    kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Standard error as one log-friendly line.
fn summary(kept: &[u8]) -> String {
    let text = String::from_utf8_lossy(kept);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = lines.join(" | ");
    if kept.len() >= MAX_STDERR {
        out.push_str(" ...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_capped_and_flattened() {
        let mut kept = Vec::new();
        keep(&mut kept, b"first line\n\n  second  \n");
        assert_eq!(summary(&kept), "first line | second");
        keep(&mut kept, &[b'x'; 2 * MAX_STDERR]);
        assert_eq!(kept.len(), MAX_STDERR);
        assert!(summary(&kept).ends_with("xx ..."));
    }
}
