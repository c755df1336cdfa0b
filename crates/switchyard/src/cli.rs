//! The command line: `run`, `proxy`, `check`, `reload`, `demo`, `mock-engine`, `loadgen`,
//! `flood`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard_config::{Address, BackendConfig, Config, RouteConfig, ServerConfig};
use switchyard_mock_engine::MockEngineArgs;

use crate::loadgen::LoadgenArgs;
use crate::logging::{self, LogFormat};
use crate::server::{self, ServerHandle};

/// switchyard: an L4/L7 proxy and load balancer for AI inference services.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy with a configuration file.
    Run {
        /// The INI configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a reverse proxy from the command line alone, no file needed.
    Proxy {
        /// Address to accept clients on.
        #[arg(long)]
        listen: SocketAddr,
        /// Backend addresses (host:port), comma-separated or repeated.
        #[arg(long, required = true, value_delimiter = ',')]
        to: Vec<String>,
        /// Reactor threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Balancing algorithm.
        #[arg(long, default_value = "round_robin")]
        balancer: String,
        /// Admin listener address for /stats (off when not given).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Validate a configuration file and print a summary (exit 2 listing every error).
    Check {
        /// The INI configuration file.
        file: PathBuf,
    },
    /// Apply a config file to a running server through its admin API (or, without --config,
    /// make it re-read its own file); prints the changes, or every error (exit 2).
    Reload(crate::reload::client::ReloadArgs),
    /// Start the proxy with three mock inference engines behind it (a built-in config).
    Demo {
        /// Address for the proxy.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address for the admin listener.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
    /// Run an OpenAI-compatible mock inference engine (for tests and benchmarks).
    MockEngine(MockEngineArgs),
    /// Send an open-loop load of streamed chat completions and report TTFT, latency,
    /// throughput and the engines' prefix-cache hit rate (the scheduling benchmark's client).
    Loadgen(LoadgenArgs),
    /// Flood a listener with new TCP connections from many source addresses (127/8), to
    /// test the accept limiter (`bench/flood.sh`).
    Flood(crate::flood::FloodArgs),
}

/// Runs the parsed command line; the process exit code is returned.
pub fn run(cli: Cli) -> ExitCode {
    logging::init(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Run { config } => match load(&config) {
            Ok(cfg) => run_until_signal(move || {
                let handle = server::start(cfg)?;
                handle.shared().reloads.set_file(config);
                Ok(handle)
            }),
            Err(code) => code,
        },
        Command::Reload(args) => crate::reload::client::main(args),
        Command::Proxy {
            listen,
            to,
            threads,
            balancer,
            admin,
        } => match quick_config(listen, &to, threads, &balancer, admin) {
            Ok(cfg) => serve(cfg),
            Err(msg) => {
                eprintln!("switchyard proxy: {msg}");
                ExitCode::from(2)
            }
        },
        Command::Check { file } => match load(&file) {
            Ok(cfg) => check_certificates(&file, &cfg).unwrap_or_else(|| {
                println!("{}: ok", file.display());
                println!("{}", cfg.summary());
                ExitCode::SUCCESS
            }),
            Err(code) => code,
        },
        Command::Demo { listen, admin } => crate::demo::run(listen, admin),
        Command::MockEngine(args) => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("switchyard mock-engine: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(switchyard_mock_engine::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchyard mock-engine: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Loadgen(args) => loadgen(args),
        Command::Flood(args) => crate::flood::main(args),
    }
}

/// `switchyard loadgen`: runs the load on a multi-thread runtime and prints the report
/// (request failures are in the report; only bad arguments exit non-zero, with 2).
fn loadgen(args: LoadgenArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = args.json;
    match rt.block_on(crate::loadgen::run(args)) {
        Ok(report) if json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.to_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Reads the listeners' certificates and the admin token, and loads the plugins, as the
/// server would at start (the token is never printed); on failure prints why and gives exit
/// code 2.
fn check_certificates(file: &Path, config: &Config) -> Option<ExitCode> {
    let built = config
        .listeners
        .iter()
        .try_for_each(|l| crate::net::listeners::build_one(config, l, None, None, 1).map(drop));
    let e = match built {
        Err(e) => e.to_string(),
        Ok(_) => match crate::plugin::Plugins::load(config, None) {
            Err(e) => e.to_string(),
            Ok(_) => crate::server::admin_guard(&config.server)
                .err()?
                .to_string(),
        },
    };
    eprintln!("{}: {e}", file.display());
    Some(ExitCode::from(2))
}

/// Reads and validates a config file; on failure prints every error and gives exit code 2.
pub fn load(path: &Path) -> Result<Config, ExitCode> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return Err(ExitCode::from(2));
        }
    };
    switchyard_config::parse(&text, &path.display().to_string()).map_err(|errors| {
        for e in errors.iter() {
            eprintln!("{e}");
        }
        eprintln!(
            "{}: {} error{}",
            path.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        ExitCode::from(2)
    })
}

/// The config `switchyard proxy` runs: one route over the given backends. It is rendered to
/// INI and parsed again, so it gets exactly the validation a file would.
pub fn quick_config(
    listen: SocketAddr,
    to: &[String],
    threads: usize,
    balancer: &str,
    admin: Option<SocketAddr>,
) -> Result<Config, String> {
    let mut backends = Vec::new();
    for (i, t) in to.iter().enumerate() {
        let address: Address = t.trim().parse().map_err(|e| format!("--to {t:?}: {e}"))?;
        backends.push(BackendConfig {
            name: format!("backend-{}", i + 1),
            address,
            weight: 1,
            metrics: None,
            models: Vec::new(),
            health: None,
            protocol: Default::default(),
            tls: None,
        });
    }
    let config = Config {
        server: ServerConfig {
            listen: vec![listen],
            threads,
            admin_listen: admin,
            ..ServerConfig::default()
        },
        routes: vec![RouteConfig {
            name: "default".into(),
            hosts: vec![],
            path_prefix: "/".into(),
            backends: backends.iter().map(|b| b.name.clone()).collect(),
            balancer: balancer.into(),
            hash_key: Default::default(),
            explain: false,
            max_websockets: 10_000,
            websocket_max_frame: None,
            rewrite: Default::default(),
            traffic: Default::default(),
            discovery: false,
            versions: Vec::new(),
        }],
        backends,
        l4: Vec::new(),
        listeners: Vec::new(),
        limits: Vec::new(),
        acls: Vec::new(),
        budgets: Vec::new(),
        alerts: Vec::new(),
        plugins: Vec::new(),
    };
    switchyard_config::parse(&config.to_ini(), "<command line>").map_err(|e| e.to_string())
}

/// Starts a server and runs it until SIGTERM or SIGINT, then drains and exits 0. A second
/// signal during the drain exits at once.
pub fn serve(config: Config) -> ExitCode {
    run_until_signal(move || server::start(config))
}

/// Installs the SIGTERM/SIGINT/SIGHUP handlers, then calls `start` (so a signal arriving as
/// soon as the listeners accept is already handled), then waits for a signal: SIGHUP re-reads
/// the config file and applies it (see [`crate::reload`]; errors are logged, the running
/// config stays), SIGTERM or SIGINT shut the server down gracefully.
pub fn run_until_signal(
    start: impl FnOnce() -> Result<ServerHandle, server::StartError>,
) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            eprintln!("switchyard: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        let handle = match start() {
            Ok(h) => h,
            Err(e) => {
                eprintln!("switchyard: {e}");
                return ExitCode::FAILURE;
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    let shared = std::sync::Arc::clone(handle.shared());
                    let done = tokio::task::spawn_blocking(move || {
                        crate::reload::reread(&shared, "sighup")
                    })
                    .await;
                    if let Ok(Err(e)) = done {
                        tracing::error!("SIGHUP: config not reloaded: {e}");
                    }
                }
            }
        }
        tracing::info!(
            drain_timeout = ?handle.shared().config.server.drain_timeout,
            "shutting down: no new connections, draining requests in progress"
        );
        handle.shutdown();
        let joined = tokio::task::spawn_blocking(move || handle.join());
        tokio::select! {
            _ = joined => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            _ = term.recv() => { tracing::warn!("second signal: exiting now"); ExitCode::FAILURE }
            _ = int.recv() => { tracing::warn!("second signal: exiting now"); ExitCode::FAILURE }
        }
    })
}
