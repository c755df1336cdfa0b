//! Validated hot reload of the configuration.
//!
//! A new config (POSTed to the admin API, re-read from the file on SIGHUP or
//! `POST /admin/config/reload`, or a rollback) is parsed and checked as a whole; restart-only
//! settings keep their running values (see [`switchyard_config::reload::split_restart`]);
//! the static backends are resolved and their TLS settings loaded; new and changed
//! `[listener NAME]` and `[l4 NAME]` ports are bound (see [`crate::net::ports`]); then the next
//! [`Routing`] generation and the static backends are published in one directory snapshot,
//! the new ports start accepting, the replaced and removed ones stop (their connections run
//! on), and the alert rules are replaced (see `observe::sampler`'s `rules`). Any failure
//! before the publication changes nothing. Reloads are serialised (one at a time), each applied one is
//! audited as `config_changed` and each rejected one as `config_rejected`.

pub mod client;
mod resolve;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use switchyard_config::{Config, ConfigErrors};

use crate::routing::{route_capacity, Routing};
use crate::server::Shared;

/// Reload history and counters (in [`Shared`]).
#[derive(Debug, Default)]
pub struct Reloads {
    /// Held for a whole reload: reloads run one at a time.
    state: Mutex<State>,
    version: AtomicU64,
    ok: AtomicU64,
    failures: AtomicU64,
    last_unix: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The configs in force before, newest last.
    history: VecDeque<Arc<Config>>,
    /// The file SIGHUP and `POST /admin/config/reload` re-read.
    file: Option<PathBuf>,
}

/// What an applied (or dry-run) reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The config version in force after it (unchanged by a dry run).
    pub version: u64,
    /// The changes, one summary each (as `switchyard_config::diff` writes them).
    pub changes: Vec<String>,
    /// Restart-only settings that differ and were not applied.
    pub restart_required: Vec<String>,
    /// Whether nothing was applied.
    pub dry_run: bool,
}

impl Outcome {
    /// The admin API's answer.
    pub fn to_json(&self) -> Value {
        json!({
            "version": self.version,
            "changes": self.changes,
            "restart_required": self.restart_required,
            "dry_run": self.dry_run,
        })
    }
}

/// One reason a config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line (0: not tied to a line).
    pub line: usize,
    /// The section, as written between the brackets.
    pub section: Option<String>,
    /// The key.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Why a reload did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The config is invalid, or cannot be applied to this server (every problem).
    Invalid(Vec<Problem>),
    /// A rollback with no previous config.
    NoHistory,
    /// A re-read with no config file (the server was not started from one).
    NoFile,
    /// The config file cannot be read.
    Read(String),
}

impl ReloadError {
    /// The admin API's answer body.
    pub fn to_json(&self) -> Value {
        match self {
            ReloadError::Invalid(problems) => json!({
                "errors": problems.iter().map(|p| json!({
                    "line": p.line,
                    "section": p.section,
                    "key": p.key,
                    "message": p.message,
                })).collect::<Vec<_>>(),
            }),
            other => {
                json!({ "errors": [{ "line": 0, "section": null, "key": null, "message": other.to_string() }] })
            }
        }
    }
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    if p.line > 0 {
                        write!(f, "line {}: ", p.line)?;
                    }
                    if let Some(s) = &p.section {
                        write!(f, "[{s}] ")?;
                    }
                    if let Some(k) = &p.key {
                        write!(f, "{k}: ")?;
                    }
                    write!(f, "{}", p.message)?;
                }
                Ok(())
            }
            ReloadError::NoHistory => write!(f, "no previous config to roll back to"),
            ReloadError::NoFile => write!(
                f,
                "the server was not started from a config file; POST the config instead"
            ),
            ReloadError::Read(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReloadError {}

fn problems(errors: &ConfigErrors) -> Vec<Problem> {
    errors
        .iter()
        .map(|e| Problem {
            line: e.line,
            section: e.section.clone(),
            key: e.key.clone(),
            message: e.kind.to_string(),
        })
        .collect()
}

impl Reloads {
    /// Remembers the file a re-read (SIGHUP, `POST /admin/config/reload`) reads.
    pub fn set_file(&self, path: PathBuf) {
        self.lock().file = Some(path);
    }

    /// The file a re-read reads, if the server was started from one.
    pub fn file(&self) -> Option<PathBuf> {
        self.lock().file.clone()
    }

    /// The config version in force (0 at start, one more per applied reload).
    pub fn version(&self) -> u64 {
        self.version.load(Relaxed)
    }

    /// `/stats`' `config` part.
    pub fn stats_json(&self) -> Value {
        let last = self.last_unix.load(Relaxed);
        json!({
            "version": self.version(),
            "reloads": self.ok.load(Relaxed),
            "reload_failures": self.failures.load(Relaxed),
            "last_reload_unix": (last > 0).then_some(last),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Parses `text` (INI; `name` names it in errors) and applies it, or with `dry_run` says
/// what applying it would do. `client` is who asked (an IP address, or `sighup`), for the
/// audit log.
pub fn apply_text(
    shared: &Shared,
    text: &str,
    name: &str,
    client: &str,
    dry_run: bool,
) -> Result<Outcome, ReloadError> {
    match switchyard_config::parse(text, name) {
        Ok(config) => apply(shared, config, client, dry_run, true),
        Err(errors) => Err(rejected(
            shared,
            client,
            ReloadError::Invalid(problems(&errors)),
        )),
    }
}

/// Re-reads the config file the server was started from and applies it.
pub fn reread(shared: &Shared, client: &str) -> Result<Outcome, ReloadError> {
    let Some(path) = shared.reloads.lock().file.clone() else {
        return Err(ReloadError::NoFile);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ReloadError::Read(format!("{}: cannot read: {e}", path.display())))
        .map_err(|e| rejected(shared, client, e))?;
    apply_text(shared, &text, &path.display().to_string(), client, false)
}

/// Goes back to the config in force before the last applied reload (the one before that
/// becomes the next rollback's target).
pub fn rollback(shared: &Shared, client: &str) -> Result<Outcome, ReloadError> {
    let previous = shared.reloads.lock().history.back().cloned();
    let Some(previous) = previous else {
        return Err(ReloadError::NoHistory);
    };
    let outcome = apply(shared, (*previous).clone(), client, false, false)?;
    let mut state = shared.reloads.lock();
    if state
        .history
        .back()
        .is_some_and(|c| Arc::ptr_eq(c, &previous))
    {
        state.history.pop_back();
    }
    Ok(outcome)
}

/// Applies `new` (or, with `dry_run`, only checks it); with `remember`, the config it
/// replaces goes into the rollback history.
pub fn apply(
    shared: &Shared,
    new: Config,
    client: &str,
    dry_run: bool,
    remember: bool,
) -> Result<Outcome, ReloadError> {
    let reloads = &shared.reloads;
    let mut state = reloads.lock();
    let current = shared.routing();
    let running = &current.config;
    let (applied, restart_required) = switchyard_config::reload::split_restart(running, &new);
    let result = resolve::statics(shared, &applied)
        .and_then(|statics| {
            // New and changed ports are bound now: an address in use refuses the reload.
            let plan = shared
                .ports
                .prepare(running, &applied, &shared.listen_addrs)
                .map_err(|e| vec![port_problem(&e)])?;
            let capacity = route_capacity(shared.config.routes.len());
            let routing = Routing::next(Arc::new(applied), &current, capacity)
                .map_err(|e| vec![problem(None, e.to_string())])?;
            shared
                .directory
                .check_statics(&statics)
                .map_err(|e| vec![problem(None, e.to_string())])?;
            Ok((statics, routing, plan))
        })
        .map_err(ReloadError::Invalid);
    let (statics, routing, plan) = match result {
        Ok(r) => r,
        Err(e) => {
            drop(state);
            return Err(rejected(shared, client, e));
        }
    };
    let changes: Vec<String> = switchyard_config::diff(running, &routing.config)
        .iter()
        .map(ToString::to_string)
        .collect();
    if dry_run {
        return Ok(Outcome {
            version: reloads.version(),
            changes,
            restart_required,
            dry_run,
        });
    }
    let plan = match plan.listen() {
        Ok(p) => p,
        Err(e) => {
            drop(state);
            return Err(rejected(
                shared,
                client,
                ReloadError::Invalid(vec![port_problem(&e)]),
            ));
        }
    };
    let routing = Arc::new(routing);
    let applied = Arc::clone(&routing.config);
    shared
        .directory
        .reconfigure(routing, statics)
        .map_err(|e| ReloadError::Invalid(vec![problem(None, e.to_string())]))?;
    // Routing first: the new ports' connections find their ACLs and backends in force.
    let closed = shared.ports.commit(plan);
    if let Err(e) = shared.monitor.set_rules(&applied, shared.clock.now_ms()) {
        // The config check knows the same series: not expected.
        tracing::error!(error = %e, "alert rules not reloaded");
    }
    if remember {
        state.history.push_back(Arc::clone(running));
        while state.history.len() > applied.server.config_history.max(1) {
            state.history.pop_front();
        }
    }
    let version = reloads.version.fetch_add(1, Relaxed) + 1;
    reloads.ok.fetch_add(1, Relaxed);
    reloads
        .last_unix
        .store(crate::clock::unix_ms() / 1000, Relaxed);
    drop(state);
    shared
        .audit
        .config_changed(Some(client.to_string()), running, &applied);
    tracing::info!(
        version,
        changes = changes.len(),
        restart_required = ?restart_required,
        ports_closed = ?closed,
        client,
        "config reloaded"
    );
    Ok(Outcome {
        version,
        changes,
        restart_required,
        dry_run,
    })
}

/// A port that cannot be set up, as a problem naming its section and key.
fn port_problem(e: &crate::net::ports::PortError) -> Problem {
    use crate::net::ports::PortError;
    let key = match e {
        PortError::Bind { .. } | PortError::Taken { .. } => Some("listen".to_string()),
        PortError::Tls(c) => Some(c.key.clone()),
    };
    Problem {
        key,
        ..problem(Some(e.section()), e.to_string())
    }
}

fn problem(section: Option<String>, message: String) -> Problem {
    Problem {
        line: 0,
        section,
        key: None,
        message,
    }
}

/// Counts and audits a refused reload, and logs every problem; returns the error.
fn rejected(shared: &Shared, client: &str, e: ReloadError) -> ReloadError {
    shared.reloads.failures.fetch_add(1, Relaxed);
    let errors = match &e {
        ReloadError::Invalid(p) => p.len(),
        _ => 1,
    };
    shared.audit.control(
        "config_rejected",
        Some(client.to_string()),
        json!({ "errors": errors }),
    );
    tracing::warn!(
        client,
        "config reload refused, the running config stays:\n{e}"
    );
    e
}
