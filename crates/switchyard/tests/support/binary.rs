//! The real `switchyard` binary: `switchyard run --config FILE` with its standard error kept in
//! a file, killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::proxy::temp_path;
use super::DEADLINE;

/// A running (or exited) `switchyard run`.
pub struct Binary {
    child: Child,
    stderr: PathBuf,
}

impl Binary {
    /// Writes `ini` to a file of its own and runs `switchyard run` on it.
    pub fn run(ini: &str) -> Binary {
        let config = temp_path("switchyard.ini");
        std::fs::write(&config, ini).unwrap();
        Binary::run_file(&config)
    }

    /// Runs `switchyard run --config config` (warnings and errors logged).
    pub fn run_file(config: &Path) -> Binary {
        let stderr = temp_path("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config", config.to_str().unwrap()])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Binary { child, stderr }
    }

    /// Waits until `addr` accepts connections; panics if the process exits or takes longer
    /// than [`DEADLINE`].
    pub async fn listening(&mut self, addr: SocketAddr) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            let exited = self.child.try_wait().unwrap();
            assert!(exited.is_none(), "switchyard exited: {}", self.stderr());
            assert!(
                tokio::time::Instant::now() < deadline,
                "not listening on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit (at most [`DEADLINE`]); its status.
    pub async fn exited(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "switchyard still running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// What it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
