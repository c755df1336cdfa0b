//! The `switchyard` binary: `check`, `--version`, `--help`, and `proxy` / `run` serving real
//! requests until SIGTERM, draining a response in progress before exiting 0.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::body::{channel, empty};
use support::client::{self, request, Client};
use support::server::{self, respond};
use support::{wait_for, DEADLINE};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Writes `text` to a new file in the test temp directory.
fn write_file(name: &str, text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A free port on 127.0.0.1 (bound, then released).
fn free_addr() -> SocketAddr {
    server::dead_addr()
}

/// A running `switchyard` process, killed if the test ends without stopping it.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let log = write_file("stderr.log", "");
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has installed its SIGTERM handler (Linux: `SigCgt` in /proc).
    fn catches_sigterm(&self) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, up to `limit`.
    async fn exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running after {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `addr` answers `GET /ready` with 200 and the process is ready for SIGTERM.
async fn wait_ready(p: &mut Proc, addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        // The listener may be up before the signal handler (see
        // `sigterm_right_after_listening_still_drains`): wait for both.
        if p.catches_sigterm() && TcpStream::connect(addr).await.is_ok() {
            let a = client::get(addr, "/ready").await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text());
            return;
        }
        assert!(p.is_running(), "exited early; log:\n{}", p.log());
        assert!(
            tokio::time::Instant::now() < deadline,
            "not listening; log:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn check_lists_every_error_with_its_line() {
    let path = write_file(
        "bad.ini",
        "[server]\n\
         listen = 127.0.0.1:0\n\
         bogus_key = 1\n\
         \n\
         [backend a]\n\
         address = 300.1.1.1:80\n\
         \n\
         [route r]\n\
         backends = a, missing\n",
    );
    let p = path.to_str().unwrap();
    let out = run(&["check", p]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    for (line, needle) in [(3, "bogus_key"), (6, "300.1.1.1:80"), (9, "missing")] {
        let prefix = format!("{p}:{line}:");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "no `{prefix} ... {needle}` line in:\n{err}"
        );
    }
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn check_accepts_a_good_file_and_prints_a_summary() {
    let path = write_file(
        "good.ini",
        "[server]\nlisten = 127.0.0.1:8080\nthreads = 2\n\n\
         [backend llama-a]\naddress = 10.0.0.1:8000\nweight = 2\n\n\
         [route chat]\npath_prefix = /v1/\nbackends = llama-a\n",
    );
    let out = run(&["check", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    assert!(stdout.contains(": ok"), "{stdout}");
    for needle in ["127.0.0.1:8080", "llama-a", "10.0.0.1:8000", "chat", "/v1/"] {
        assert!(stdout.contains(needle), "summary lacks {needle}:\n{stdout}");
    }
}

#[test]
fn check_reads_listener_certificates() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-cert.pem");
    let path = write_file(
        "tls.ini",
        &format!(
            "[backend a]\naddress = 10.0.0.1:8000\n[route r]\nbackends = a\n\
             [listener edge]\nlisten = 127.0.0.1:8443\nprotocols = http1, tls\n\
             tls_certificate = {0}\ntls_key = {0}\n",
            missing.display()
        ),
    );
    let out = run(&["check", path.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains("[listener edge] tls_certificate")
            && err.contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn check_reads_the_admin_token_and_never_prints_it() {
    let secret = "adm-never-printed-5e1f0a";
    let token = write_file("admin.token", &format!("{secret}\n"));
    let base = "[backend a]\naddress = 10.0.0.1:8000\n[route r]\nbackends = a\n";
    let good = write_file(
        "admin.ini",
        &format!(
            "[server]\nadmin_listen = 0.0.0.0:9901\nadmin_token_file = {}\n{base}",
            token.display()
        ),
    );
    let out = run(&["check", good.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stderr:\n{stderr}");
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "{stdout}{stderr}"
    );

    let open = write_file(
        "open.ini",
        &format!("[server]\nadmin_listen = 0.0.0.0:9901\n{base}"),
    );
    let out = run(&["check", open.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains("loopback") && err.contains("admin_token_file"),
        "{err}"
    );

    let missing = write_file(
        "missing.ini",
        &format!("[server]\nadmin_token_file = /nonexistent/admin.token\n{base}"),
    );
    let out = run(&["check", missing.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(err.contains("/nonexistent/admin.token"), "{err}");
}

#[test]
fn check_of_a_missing_file_exits_2() {
    let out = run(&["check", "/nonexistent/switchyard.ini"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("switchyard {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["run", "proxy", "check", "demo", "mock-engine"] {
        assert!(help.contains(cmd), "--help lacks {cmd}:\n{help}");
    }
    let out = run(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_command_serves_until_sigterm() {
    let backend = server::echo().await;
    let listen = free_addr();
    let mut p = Proc::spawn(&[
        "proxy",
        "--listen",
        &listen.to_string(),
        "--to",
        &backend.addr().to_string(),
        "--threads",
        "1",
        "--log-level",
        "warn",
    ]);
    wait_ready(&mut p, listen).await;
    let a = Client::connect(listen).await.post("/v1/x", "payload").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["body"], "payload");
    assert!(a.header("via").unwrap().contains("switchyard"));

    p.sigterm();
    let status = p.exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", p.log());
    assert_eq!(backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_command_drains_a_stream_on_sigterm() {
    let release = Arc::new(Notify::new());
    let backend = {
        let release = Arc::clone(&release);
        server::serve(move |req| {
            let release = Arc::clone(&release);
            async move {
                if req.uri().path() != "/stream" {
                    return respond(StatusCode::OK, "ok");
                }
                let (tx, body) = channel();
                tokio::spawn(async move {
                    tx.send(Bytes::from("part-1\n")).await.unwrap();
                    release.notified().await;
                    let _ = tx.send(Bytes::from("part-2\n")).await;
                });
                http::Response::new(body)
            }
        })
        .await
    };
    let listen = free_addr();
    let config = write_file(
        "run.ini",
        &format!(
            "[server]\nlisten = {listen}\nthreads = 1\nadmin_listen = off\ndrain_timeout = 20s\n\n\
             [backend b]\naddress = {}\n\n[route all]\nbackends = b\n",
            backend.addr()
        ),
    );
    let mut p = Proc::spawn(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--log-level",
        "warn",
    ]);
    wait_ready(&mut p, listen).await;

    let mut c = Client::connect(listen).await;
    let resp = c
        .send(request(Method::GET, "/stream").body(empty()).unwrap())
        .await;
    let mut body = resp.into_body();
    let mut got = Vec::new();
    client::read_until(&mut body, &mut got, b"part-1\n").await;

    p.sigterm();
    // The signal was taken: the listener closes, the process stays for the stream.
    wait_for(DEADLINE, "listener closed after SIGTERM", || async {
        TcpStream::connect(listen).await.is_err()
    })
    .await;
    assert!(p.is_running(), "exited before the stream ended");

    release.notify_one();
    tokio::time::timeout(DEADLINE, client::read_rest(&mut body, &mut got))
        .await
        .expect("rest of the stream");
    assert_eq!(got, b"part-1\npart-2\n");
    let status = p.exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_listening_still_drains() {
    let backend = server::fixed("ok").await;
    for i in 0..50 {
        let listen = free_addr();
        let mut p = Proc::spawn(&[
            "proxy",
            "--listen",
            &listen.to_string(),
            "--to",
            &backend.addr().to_string(),
            "--threads",
            "1",
            "--log-level",
            "warn",
        ]);
        // SIGTERM as soon as the port accepts connections.
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(listen).is_err() {
            assert!(std::time::Instant::now() < deadline, "never listened");
        }
        p.sigterm();
        let status = p.exit(DEADLINE).await;
        assert_eq!(status.code(), Some(0), "run {i}: {status}");
    }
}
