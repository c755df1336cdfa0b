//! Reloading a running `switchyard run` process: SIGHUP re-reads its config file (a bad file
//! is logged and changes nothing), and `switchyard reload` applies a file through the admin
//! API (or makes the server re-read its own), printing the changes or every error.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use support::client;
use support::server;
use support::{wait_for, DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const TOKEN: &str = "adm-reload-5b1c-secret";

fn write_file(name: &str, text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-reload-{}-{}",
        std::process::id(),
        N.fetch_add(1, SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `switchyard run`, killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn run(config: &std::path::Path) -> Proc {
        let log = write_file("stderr.log", "");
        let child = Command::new(BIN)
            .args([
                "run",
                "--config",
                config.to_str().unwrap(),
                "--log-level",
                "info",
            ])
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

    /// Whether the process catches SIGHUP yet (Linux: `SigCgt` in /proc).
    fn catches_sighup(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & 1 != 0)
    }

    fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    token: Option<&PathBuf>,
    backend: &str,
    addrs: [SocketAddr; 2],
) -> String {
    let token = token.map_or(String::new(), |p| {
        format!("admin_token_file = {}\n", p.display())
    });
    format!(
        "[server]\nlisten = {listen}\nthreads = 1\nadmin_listen = {admin}\n{token}\n\
         [backend one]\naddress = {}\n\n[backend two]\naddress = {}\n\n\
         [route all]\nbackends = {backend}\n",
        addrs[0], addrs[1]
    )
}

async fn answer(listen: SocketAddr) -> String {
    client::get(listen, "/").await.text()
}

async fn started(p: &Proc, listen: SocketAddr) {
    wait_for(
        DEADLINE,
        "the server to listen and catch SIGHUP",
        || async { p.catches_sighup() && tokio::net::TcpStream::connect(listen).await.is_ok() },
    )
    .await;
}

#[tokio::test]
async fn sighup_rereads_the_file_and_a_bad_file_changes_nothing() {
    let one = server::fixed("one").await;
    let two = server::fixed("two").await;
    let (listen, admin) = (server::dead_addr(), server::dead_addr());
    let addrs = [one.addr(), two.addr()];
    let file = write_file("run.ini", &config(listen, admin, None, "one", addrs));
    let p = Proc::run(&file);
    started(&p, listen).await;
    assert_eq!(answer(listen).await, "one");

    std::fs::write(&file, config(listen, admin, None, "two", addrs)).unwrap();
    p.sighup();
    wait_for(DEADLINE, "the route to follow the file", || async {
        answer(listen).await == "two"
    })
    .await;

    std::fs::write(
        &file,
        "[server]\nthreads = many\n[route all]\nbackends = nowhere\n",
    )
    .unwrap();
    p.sighup();
    wait_for(DEADLINE, "the refusal in the log", || async {
        p.log().contains("config not reloaded")
    })
    .await;
    let log = p.log();
    assert!(log.contains("line 2") && log.contains("threads"), "{log}");
    assert_eq!(answer(listen).await, "two");
    let stats = client::get(admin, "/stats").await.json();
    assert_eq!(stats["config"]["version"], 1);
    assert_eq!(stats["config"]["reload_failures"], 1);
}

#[tokio::test]
async fn reload_command_applies_a_file_or_lists_its_errors() {
    let one = server::fixed("one").await;
    let two = server::fixed("two").await;
    let (listen, admin) = (server::dead_addr(), server::dead_addr());
    let addrs = [one.addr(), two.addr()];
    let token = write_file("admin.token", &format!("{TOKEN}\n"));
    let file = write_file(
        "run.ini",
        &config(listen, admin, Some(&token), "one", addrs),
    );
    let p = Proc::run(&file);
    started(&p, listen).await;
    assert_eq!(answer(listen).await, "one");
    let admin_arg = admin.to_string();
    let reload = |args: &[&str]| {
        let mut all = vec!["reload", "--admin", &admin_arg];
        all.extend_from_slice(args);
        Command::new(BIN).args(&all).output().unwrap()
    };

    // An unreadable token file: refused before anything is sent.
    let next = write_file(
        "next.ini",
        &config(listen, admin, Some(&token), "two", addrs),
    );
    let out = reload(&[
        "--config",
        next.to_str().unwrap(),
        "--token-file",
        "/nonexistent",
    ]);
    assert!(!out.status.success());

    // Dry run: the change is listed, nothing applied.
    let out = reload(&["--config", next.to_str().unwrap(), "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("dry run") && stdout.contains("all"),
        "{stdout}"
    );
    assert_eq!(answer(listen).await, "one");

    // Applied (the token file comes from the config's admin_token_file).
    let out = reload(&["--config", next.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config version 1"), "{stdout}");
    assert_eq!(answer(listen).await, "two");

    // An invalid file: every error with its line and key, exit 2, nothing changes.
    let bad = write_file(
        "bad.ini",
        "[server]\nthreads = many\n\n[route all]\nbalancer = nope\nbackends = two\n",
    );
    let out = reload(&[
        "--config",
        bad.to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":2: [server] threads:"), "{stderr}");
    assert!(stderr.contains(":5: [route all] balancer:"), "{stderr}");
    assert_eq!(answer(listen).await, "two");

    // No --config: the server re-reads its own file (still routing to `one`).
    let out = reload(&["--token-file", token.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config version 2"), "{stdout}");
    assert_eq!(answer(listen).await, "one");
    assert!(!p.log().contains(TOKEN));
}
