//! `switchyard flood`: a new-connection flood from many source addresses, to see what the
//! accept limiter (`[server]` `max_connection*`, `ban_*`, `max_tracked_ips`) does with it
//! (`bench/flood.sh`).
//!
//! `--concurrency` tasks each open a TCP connection from the next of `--sources` source
//! addresses (consecutive IPv4 addresses from `--first-source`; Linux routes all of 127/8 to
//! the loopback, so every one is a distinct client to the proxy), do what `--mode` says, close
//! it and start again, for `--duration` seconds, at most `--rate` attempts per second in all
//! (0: as fast as they go). Modes: `connect-close` closes at once; `hold` keeps the connection
//! open for `--hold` seconds or until the server closes it; `junk` sends bytes that are no
//! HTTP request and waits (up to `--hold`) for the server to close. At most `--concurrency`
//! sockets are open at once. The report counts attempts, connections made, connect failures
//! and connections the server closed first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// What each flood connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Connect, then close at once.
    ConnectClose,
    /// Connect and hold the connection open (`--hold`), sending nothing.
    Hold,
    /// Connect, send bytes that are no HTTP request, wait for the server to close.
    Junk,
}

/// The command line of `switchyard flood`.
#[derive(Debug, Clone, clap::Args)]
pub struct FloodArgs {
    /// The address to flood: IP:PORT.
    #[arg(long)]
    pub target: SocketAddr,
    /// How many source addresses to connect from, in turn.
    #[arg(long, default_value_t = 1000)]
    pub sources: u32,
    /// The first source address (the others follow it: 127.1.0.1, 127.1.0.2, ...).
    #[arg(long, default_value = "127.1.0.1")]
    pub first_source: Ipv4Addr,
    /// Connections attempted side by side (and the most sockets open at once).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Most connection attempts per second in all (0: no limit but the concurrency).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds to flood for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// What each connection does.
    #[arg(long, value_enum, default_value_t = Mode::ConnectClose)]
    pub mode: Mode,
    /// Seconds a `hold` or `junk` connection stays open at most.
    #[arg(long, default_value_t = 1.0)]
    pub hold: f64,
    /// Seconds a connect may take.
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the flood did.
#[derive(Debug, Default)]
struct Counts {
    attempts: AtomicU64,
    connected: AtomicU64,
    connect_failed: AtomicU64,
    connect_timeouts: AtomicU64,
    closed_by_server: AtomicU64,
}

/// Runs the flood on one thread and prints its report.
pub fn main(args: FloodArgs) -> ExitCode {
    if let Err(msg) = check(&args) {
        eprintln!("switchyard flood: {msg}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard flood: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let counts = rt.block_on(run(&args));
    let secs = started.elapsed().as_secs_f64();
    let n = |c: &AtomicU64| c.load(Relaxed);
    let attempts = n(&counts.attempts);
    let report = serde_json::json!({
        "mode": format!("{:?}", args.mode),
        "sources": args.sources,
        "concurrency": args.concurrency,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "attempts": attempts,
        "attempts_per_sec": (attempts as f64 / secs).round(),
        "connected": n(&counts.connected),
        "connect_failed": n(&counts.connect_failed),
        "connect_timeouts": n(&counts.connect_timeouts),
        "closed_by_server": n(&counts.closed_by_server),
    });
    if args.json {
        println!("{report}");
    } else if let Some(fields) = report.as_object() {
        for (k, v) in fields {
            println!("{k}: {v}");
        }
    }
    ExitCode::SUCCESS
}

/// The arguments' limits, and room for the sockets under the open-files limit.
fn check(a: &FloodArgs) -> Result<(), String> {
    if a.sources == 0
        || u32::from(a.first_source)
            .checked_add(a.sources - 1)
            .is_none()
    {
        return Err("--sources must be at least 1 and fit after --first-source".into());
    }
    if a.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    for (name, v) in [
        ("duration", a.duration),
        ("hold", a.hold),
        ("timeout", a.timeout),
    ] {
        if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
            return Err(format!("--{name} must be in (0, 86400] seconds"));
        }
    }
    if !(a.rate.is_finite() && a.rate >= 0.0) {
        return Err("--rate must be 0 or more".into());
    }
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    if u64::from(a.concurrency) + 32 > limit {
        return Err(format!(
            "--concurrency {} does not fit under the open-files limit ({limit})",
            a.concurrency
        ));
    }
    Ok(())
}

async fn run(a: &FloodArgs) -> Arc<Counts> {
    let counts = Arc::<Counts>::default();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.duration);
    let next = Arc::new(AtomicU64::new(0));
    let source = Arc::new(AtomicU32::new(0));
    let local = tokio::task::LocalSet::new();
    for _ in 0..a.concurrency {
        let (a, counts, next, source) = (a.clone(), counts.clone(), next.clone(), source.clone());
        local.spawn_local(async move {
            loop {
                let n = next.fetch_add(1, Relaxed);
                if a.rate > 0.0 {
                    let at = start + Duration::from_secs_f64(n as f64 / a.rate);
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                } else if Instant::now() >= end {
                    break;
                }
                let i = source.fetch_add(1, Relaxed) % a.sources;
                let from = Ipv4Addr::from(u32::from(a.first_source) + i);
                counts.attempts.fetch_add(1, Relaxed);
                one(&a, from, &counts).await;
            }
        });
    }
    local.await;
    counts
}

/// One connection from `from`: connect, do what the mode says, close.
async fn one(a: &FloodArgs, from: Ipv4Addr, counts: &Counts) {
    let connect = async {
        let s = TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
        s.connect(a.target).await
    };
    let mut stream: TcpStream =
        match tokio::time::timeout(Duration::from_secs_f64(a.timeout), connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                counts.connect_failed.fetch_add(1, Relaxed);
                return;
            }
            Err(_) => {
                counts.connect_timeouts.fetch_add(1, Relaxed);
                return;
            }
        };
    counts.connected.fetch_add(1, Relaxed);
    if a.mode == Mode::ConnectClose {
        return;
    }
    if a.mode == Mode::Junk {
        let junk = [
            0x16u8, 0x03, 0x01, 0xff, 0xff, 0x00, b'\r', b'\n', b'\r', b'\n',
        ];
        if stream.write_all(&junk).await.is_err() {
            counts.closed_by_server.fetch_add(1, Relaxed);
            return;
        }
    }
    // Hold until the server closes (a read ends: EOF, error, or an answer) or time is up.
    let mut buf = [0u8; 512];
    let held = tokio::time::timeout(Duration::from_secs_f64(a.hold), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    if held.await.is_ok() {
        counts.closed_by_server.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> FloodArgs {
        FloodArgs {
            target: "127.0.0.1:1".parse().unwrap(),
            sources: 1000,
            first_source: Ipv4Addr::new(127, 1, 0, 1),
            concurrency: 8,
            rate: 0.0,
            duration: 0.3,
            mode: Mode::Hold,
            hold: 0.2,
            timeout: 1.0,
            json: false,
        }
    }

    #[test]
    fn arguments_are_checked() {
        assert!(check(&args()).is_ok());
        let bad = [
            FloodArgs {
                sources: 0,
                ..args()
            },
            FloodArgs {
                concurrency: 0,
                ..args()
            },
            FloodArgs {
                duration: 0.0,
                ..args()
            },
            FloodArgs {
                rate: f64::NAN,
                ..args()
            },
            FloodArgs {
                first_source: Ipv4Addr::new(255, 255, 255, 255),
                sources: 2,
                ..args()
            },
        ];
        for a in bad {
            assert!(check(&a).is_err(), "{a:?}");
        }
    }

    #[test]
    fn connections_come_from_many_sources_and_are_counted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let seen = std::thread::spawn(move || {
            let mut sources = std::collections::HashSet::new();
            for conn in listener.incoming().take(20) {
                // Closed at once: the flood counts it as closed by the server.
                sources.insert(conn.unwrap().peer_addr().unwrap().ip());
            }
            sources.len()
        });
        let a = FloodArgs {
            target,
            sources: 5,
            rate: 100.0,
            ..args()
        };
        let counts = rt.block_on(run(&a));
        let attempts = counts.attempts.load(Relaxed);
        assert!((20..=40).contains(&attempts), "{attempts} attempts");
        let connected = counts.connected.load(Relaxed);
        let failed = counts.connect_failed.load(Relaxed) + counts.connect_timeouts.load(Relaxed);
        assert_eq!(connected + failed, attempts);
        assert!(connected >= 20 && counts.closed_by_server.load(Relaxed) >= 20);
        assert_eq!(seen.join().unwrap(), 5);
    }
}
