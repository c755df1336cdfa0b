//! `switchyard demo`: the proxy with three mock inference engines behind it, in one process,
//! from a built-in config (`demo.ini`, embedded in the binary).

use std::net::SocketAddr;
use std::process::ExitCode;

use switchyard_mock_engine::{MockEngineArgs, MockEngineHandle};

/// The demo's config template.
pub const DEMO_INI: &str = include_str!("demo.ini");

/// The three engines: name, time to first token (ms), tokens per second.
const ENGINES: [(&str, u64, f64); 3] = [
    ("fast", 20, 400.0),
    ("medium", 60, 150.0),
    ("slow", 150, 50.0),
];

/// The demo config for a proxy on `listen`, admin on `admin` and engines at `engines`.
pub fn config_text(listen: SocketAddr, admin: SocketAddr, engines: &[SocketAddr; 3]) -> String {
    DEMO_INI
        .replace("{listen}", &listen.to_string())
        .replace("{admin}", &admin.to_string())
        .replace("{fast}", &engines[0].to_string())
        .replace("{medium}", &engines[1].to_string())
        .replace("{slow}", &engines[2].to_string())
}

/// Starts the mock engines on ephemeral loopback ports, on the current runtime.
pub async fn start_engines() -> std::io::Result<Vec<MockEngineHandle>> {
    let mut out = Vec::new();
    for (name, ttft_ms, tps) in ENGINES {
        let args = MockEngineArgs {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            name: Some(name.to_string()),
            ttft_ms,
            tokens_per_sec: tps,
            ..MockEngineArgs::default()
        };
        out.push(switchyard_mock_engine::spawn(args).await?);
    }
    Ok(out)
}

/// Runs the demo until SIGTERM/SIGINT.
pub fn run(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("switchyard-demo-engines")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engines = match rt.block_on(start_engines()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("switchyard demo: cannot start mock engines: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addrs = [
        engines[0].local_addr(),
        engines[1].local_addr(),
        engines[2].local_addr(),
    ];
    let text = config_text(listen, admin, &addrs);
    let config = match switchyard_config::parse(&text, "<demo>") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard demo: built-in config invalid:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    let banner = move |proxy: std::net::SocketAddr| {
        println!(
            "\nswitchyard demo: proxy on http://{proxy}, admin on http://{admin}\n\
             three mock engines behind it: fast {} (weight 2), medium {}, slow {}; balancer least_conn\n\n\
             Try a streamed chat completion (tokens arrive one by one):\n  \
             curl -N http://{proxy}/v1/chat/completions -H 'content-type: application/json' \\\n    \
             -d '{{\"model\":\"mock-llama\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello there\"}}]}}'\n\n\
             The models served:       curl http://{proxy}/v1/models\n\
             Statistics (JSON):       curl http://{admin}/stats\n\
             The dashboard:           http://{admin}/dashboard (also /admin/diagnose, /admin/config/ui)\n\
             Stop with Ctrl-C.\n",
            addrs[0], addrs[1], addrs[2]
        );
    };
    let code = crate::cli::run_until_signal(move || {
        let handle = crate::server::start(config)?;
        banner(handle.listen_addrs()[0]);
        Ok(handle)
    });
    drop(engines);
    rt.shutdown_background();
    code
}
