//! `switchyard reload`: asks a running server's admin API to apply a config file (POSTed
//! whole), or without `--config` to re-read its own file; prints what changed, or every error
//! (exit 2 when the config is refused, 1 when the server cannot be reached).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// `switchyard reload`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// The server's admin address (default: `admin_listen` of `--config`).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// The config file to apply; without it the server re-reads the file it was started with.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The file holding the admin bearer token (default: `admin_token_file` of `--config`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Only say what would change; apply nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `switchyard reload`.
pub fn main(args: ReloadArgs) -> ExitCode {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchyard reload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ReloadArgs) -> Result<ExitCode, String> {
    let text = match &args.config {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?,
        ),
        None => None,
    };
    // The admin address and token file default to those the config names (when it parses).
    let parsed = text
        .as_deref()
        .and_then(|t| switchyard_config::parse(t, "config").ok());
    let admin = args
        .admin
        .or_else(|| parsed.as_ref().and_then(|c| c.server.admin_listen))
        .ok_or("--admin ADDR is required (or --config naming admin_listen)")?;
    let token_file = args.token_file.clone().or_else(|| {
        parsed
            .as_ref()
            .and_then(|c| c.server.admin_token_file.clone())
    });
    let token = match &token_file {
        Some(p) => Some(crate::admin::auth::AdminToken::load(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let (path, body) = match &text {
        Some(t) if args.dry_run => ("/admin/config?dry_run=1", t.as_str()),
        Some(t) => ("/admin/config", t.as_str()),
        None if args.dry_run => return Err("--dry-run needs --config FILE".into()),
        None => ("/admin/config/reload", ""),
    };
    let (status, reply) = post(admin, path, body, token.as_ref().map(|t| t.as_bytes()))?;
    let json: Value = serde_json::from_str(&reply)
        .map_err(|_| format!("{admin}: HTTP {status}: {}", reply.trim()))?;
    if status == 200 {
        print_outcome(&json);
        return Ok(ExitCode::SUCCESS);
    }
    let name = args
        .config
        .as_ref()
        .map_or_else(|| "config".to_string(), |p| p.display().to_string());
    for e in json["errors"].as_array().into_iter().flatten() {
        let mut line = name.clone();
        if let Some(n) = e["line"].as_u64().filter(|n| *n > 0) {
            line.push_str(&format!(":{n}"));
        }
        line.push_str(": ");
        if let Some(s) = e["section"].as_str() {
            line.push_str(&format!("[{s}] "));
        }
        if let Some(k) = e["key"].as_str() {
            line.push_str(&format!("{k}: "));
        }
        line.push_str(e["message"].as_str().unwrap_or_default());
        eprintln!("{line}");
    }
    eprintln!("switchyard reload: refused (HTTP {status}); the running config stays");
    Ok(ExitCode::from(if status == 400 || status == 409 {
        2
    } else {
        1
    }))
}

fn print_outcome(json: &Value) {
    let dry = json["dry_run"].as_bool().unwrap_or(false);
    let changes = json["changes"].as_array().cloned().unwrap_or_default();
    if dry {
        println!("dry run: nothing applied");
    } else {
        println!("config version {}", json["version"]);
    }
    if changes.is_empty() {
        println!("no changes");
    }
    for c in changes {
        println!("  {}", c.as_str().unwrap_or_default());
    }
    for r in json["restart_required"].as_array().into_iter().flatten() {
        println!(
            "  not applied, needs a restart: {}",
            r.as_str().unwrap_or_default()
        );
    }
}

/// A blocking HTTP/1.1 POST; the status and the body.
fn post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    token: Option<&[u8]>,
) -> Result<(u16, String), String> {
    let err = |e: std::io::Error| format!("{addr}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(err)?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(t) = token {
        req.extend_from_slice(b"Authorization: Bearer ");
        req.extend_from_slice(t);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body.as_bytes());
    s.write_all(&req).map_err(err)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(err)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: malformed response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}: malformed status line"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)));
    }
    Ok((status, body.to_string()))
}

/// A chunked body's data.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
