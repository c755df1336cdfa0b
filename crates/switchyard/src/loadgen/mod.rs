//! `switchyard loadgen`: an open-loop load generator of streamed chat completions, for the
//! scheduling benchmark (`bench/scheduling.sh`) and for measuring any OpenAI-compatible
//! endpoint.
//!
//! Arrivals follow a seeded timetable at `--rate` per second that never waits for responses
//! ([`workload::Timetable`]); each is a `POST /v1/chat/completions` with `"stream": true`, the
//! next turn of one of `--conversations` multi-turn conversations whose turns share prefixes
//! ([`workload::Workload`]), with the conversation's number in an `x-conversation-id` header.
//! Which turn each arrival is depends on the seed alone; a turn whose conversation is still
//! waiting for its previous reply is sent when that reply has arrived (at most `--timeout`
//! later, else it is abandoned), and the report shows how many turns waited and how long.
//! Time to first token is measured from sending the request to the first SSE chunk carrying
//! generated text, total latency to `data: [DONE]` ([`client::StreamClient`]). At most
//! `--max-in-flight` requests are outstanding (sent or waiting for their turn): an arrival
//! beyond that is counted as dropped, not queued. The engines' prefix-cache counters are
//! scraped before and after the measured window ([`engines`]). The result is a [`Report`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard::loadgen::LoadgenError> {
//! use switchyard::loadgen::{run, LoadgenArgs};
//! let report = run(LoadgenArgs {
//!     target: "http://127.0.0.1:8080".into(),
//!     rate: 5.0,
//!     duration: 10.0,
//!     ..LoadgenArgs::default()
//! })
//! .await?;
//! println!("{}", report.to_text());
//! # Ok(()) }
//! ```

pub mod client;
pub mod engines;
pub mod report;
pub mod samples;
pub mod sse;
pub mod stats;
pub mod workload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

pub use report::Report;
pub use workload::ArrivalMode;

use client::{HttpUrl, StreamClient};
use stats::Tally;
use workload::{Timetable, Workload, WorkloadConfig};

/// Most arrivals one run may schedule (warm-up included), so the samples kept stay bounded.
pub const MAX_ARRIVALS: f64 = 10_000_000.0;
/// Most words the conversations in progress may hold together (their messages are resent).
pub const MAX_WORKLOAD_WORDS: u64 = 200_000_000;
/// How long one metrics scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The command line of `switchyard loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Base URL of the endpoint under test (the proxy, or an engine): http://HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Request path, appended to the target's.
    #[arg(long, default_value = "/v1/chat/completions")]
    pub path: String,
    /// Arrivals per second (open loop: independent of the responses).
    #[arg(long)]
    pub rate: f64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds of load before the measured window (sent, not counted).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// How arrivals are spaced: exponential gaps (poisson, seeded) or equal gaps (fixed).
    #[arg(long, value_enum, default_value_t = ArrivalMode::Poisson)]
    pub arrivals: ArrivalMode,
    /// The `model` of every request.
    #[arg(long, default_value = switchyard_mock_engine::DEFAULT_MODEL)]
    pub model: String,
    /// Conversations in progress side by side; each arrival is the next turn of one of them,
    /// drawn at random (seeded), sent once that conversation's previous reply has arrived.
    #[arg(long, default_value_t = 32)]
    pub conversations: u32,
    /// Turns per conversation; each resends the earlier ones and the replies.
    #[arg(long, default_value_t = 4)]
    pub turns: u32,
    /// Conversations share one system prompt per group of this many groups (0: every
    /// conversation has its own).
    #[arg(long, default_value_t = 0)]
    pub groups: u32,
    /// Words (tokens, for the mock engine) in a system prompt.
    #[arg(long, default_value_t = 500)]
    pub system_prompt_tokens: u32,
    /// Words in each user message.
    #[arg(long, default_value_t = 50)]
    pub user_tokens: u32,
    /// `max_tokens` of each request.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Seed of the arrival gaps and every prompt.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// An engine's Prometheus metrics URL (repeatable), scraped before and after the measured
    /// window for the prefix-cache hit rate.
    #[arg(long = "engine-metrics")]
    pub engine_metrics: Vec<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write one JSON line per measured request to this file (arrival, conversation, turn,
    /// status, TTFT, latency, tokens, error, and the proxy's `x-switchyard-route` header).
    #[arg(long)]
    pub samples: Option<std::path::PathBuf>,
    /// Seconds one request may take from sending to `[DONE]` (and may wait for its
    /// conversation's previous reply before being sent).
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Most requests outstanding; arrivals beyond it are dropped and counted.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
}

impl Default for LoadgenArgs {
    fn default() -> Self {
        Self {
            target: "http://127.0.0.1:8080".into(),
            path: "/v1/chat/completions".into(),
            rate: 10.0,
            duration: 30.0,
            warmup: 0.0,
            arrivals: ArrivalMode::Poisson,
            model: switchyard_mock_engine::DEFAULT_MODEL.into(),
            conversations: 32,
            turns: 4,
            groups: 0,
            system_prompt_tokens: 500,
            user_tokens: 50,
            max_tokens: 64,
            seed: 1,
            engine_metrics: Vec::new(),
            json: false,
            samples: None,
            timeout: 60.0,
            max_in_flight: 256,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadgenError {
    /// An argument is out of range or malformed.
    InvalidArgument {
        /// The flag, e.g. `--rate`.
        flag: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },
}

impl std::fmt::Display for LoadgenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadgenError::InvalidArgument { flag, message } => write!(f, "{flag}: {message}"),
        }
    }
}

impl std::error::Error for LoadgenError {}

fn invalid(flag: &'static str, message: impl Into<String>) -> LoadgenError {
    LoadgenError::InvalidArgument {
        flag,
        message: message.into(),
    }
}

/// Checks that `v` is finite and within `lo..=hi` (`lo` excluded when `open`).
fn seconds(flag: &'static str, v: f64, lo: f64, hi: f64, open: bool) -> Result<f64, LoadgenError> {
    let ok = v.is_finite() && v <= hi && if open { v > lo } else { v >= lo };
    if ok {
        Ok(v)
    } else {
        let bound = if open { ">" } else { ">=" };
        Err(invalid(
            flag,
            format!("{v} is out of range: it must be {bound} {lo} and <= {hi}"),
        ))
    }
}

fn count<T: Copy + PartialOrd + std::fmt::Display>(
    flag: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, LoadgenError> {
    if v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(invalid(flag, format!("{v} is out of range {lo}..={hi}")))
    }
}

/// The arguments, checked.
struct Plan {
    url: HttpUrl,
    metrics: Vec<HttpUrl>,
    timeout: Duration,
    warmup: f64,
    horizon: f64,
}

fn check(args: &LoadgenArgs) -> Result<Plan, LoadgenError> {
    let url = HttpUrl::parse(&args.target).map_err(|m| invalid("--target", m))?;
    if !args.path.starts_with('/') {
        return Err(invalid(
            "--path",
            format!("`{}` must start with /", args.path),
        ));
    }
    let url = url.join(&args.path);
    let metrics = args
        .engine_metrics
        .iter()
        .map(|m| HttpUrl::parse(m).map_err(|e| invalid("--engine-metrics", e)))
        .collect::<Result<Vec<_>, _>>()?;
    seconds("--rate", args.rate, 0.0, 100_000.0, true)?;
    seconds("--duration", args.duration, 0.0, 86_400.0, true)?;
    seconds("--warmup", args.warmup, 0.0, 86_400.0, false)?;
    let timeout = seconds("--timeout", args.timeout, 0.0, 86_400.0, true)?;
    let arrivals = args.rate * (args.warmup + args.duration);
    if arrivals > MAX_ARRIVALS {
        return Err(invalid(
            "--rate",
            format!(
                "{} req/s for {} s is {arrivals:.0} requests; at most {MAX_ARRIVALS} per run",
                args.rate,
                args.warmup + args.duration
            ),
        ));
    }
    count("--conversations", args.conversations, 1, 100_000)?;
    count("--turns", args.turns, 1, 10_000)?;
    count("--groups", args.groups, 0, 1_000_000)?;
    count(
        "--system-prompt-tokens",
        args.system_prompt_tokens,
        0,
        1_000_000,
    )?;
    count("--user-tokens", args.user_tokens, 0, 1_000_000)?;
    count("--max-tokens", args.max_tokens, 1, 1_000_000)?;
    count("--max-in-flight", args.max_in_flight, 1, 100_000)?;
    let words = u64::from(args.conversations)
        * (u64::from(args.system_prompt_tokens)
            + u64::from(args.turns) * (u64::from(args.user_tokens) + u64::from(args.max_tokens)));
    if words > MAX_WORKLOAD_WORDS {
        return Err(invalid(
            "--conversations",
            format!(
                "{} conversations of {} turns would hold about {words} words of history; at most \
                 {MAX_WORKLOAD_WORDS}: use fewer conversations, turns or tokens",
                args.conversations, args.turns
            ),
        ));
    }
    Ok(Plan {
        url,
        metrics,
        timeout: Duration::from_secs_f64(timeout),
        warmup: args.warmup,
        horizon: args.warmup + args.duration,
    })
}

/// The tally, the time the last measured request finished, and the samples (when kept).
#[derive(Debug, Default)]
struct Shared {
    tally: Tally,
    last_finish: Option<Instant>,
    samples: Option<Vec<samples::Sample>>,
}

/// Runs the load described by `args` on the current tokio runtime and reports what it
/// measured. Request failures are counted in the report, never returned as errors; only
/// invalid arguments are.
pub async fn run(args: LoadgenArgs) -> Result<Report, LoadgenError> {
    let plan = check(&args)?;
    let sample_file = match &args.samples {
        Some(path) => Some(samples::SampleFile::create(path).map_err(|m| invalid("--samples", m))?),
        None => None,
    };
    let client = Arc::new(StreamClient::new(
        plan.url.clone(),
        plan.timeout,
        args.max_in_flight,
    ));
    let workload = Arc::new(Mutex::new(Workload::new(WorkloadConfig {
        seed: args.seed,
        model: args.model.clone(),
        conversations: args.conversations,
        turns: args.turns,
        groups: args.groups,
        system_prompt_tokens: args.system_prompt_tokens,
        user_tokens: args.user_tokens,
        max_tokens: args.max_tokens,
    })));
    let shared = Arc::new(Mutex::new(Shared {
        samples: sample_file.as_ref().map(|_| Vec::new()),
        ..Shared::default()
    }));
    let permits = Arc::new(Semaphore::new(args.max_in_flight));

    // The engines' counters at the start of the measured window: scraped before the first
    // arrival without a warm-up, else when the warm-up ends (alongside the load).
    let metrics = Arc::new(plan.metrics.clone());
    let early = if plan.warmup == 0.0 {
        Some(engines::scrape_all(&metrics, SCRAPE_TIMEOUT).await)
    } else {
        None
    };
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(plan.warmup);
    let before = {
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            match early {
                Some(snapshot) => snapshot,
                None => {
                    tokio::time::sleep_until(window_start).await;
                    engines::scrape_all(&metrics, SCRAPE_TIMEOUT).await
                }
            }
        })
    };

    // Per lane, how many of its requests have finished: a turn is sent once every earlier
    // request of its lane has (the user has read the previous reply).
    let lanes: Arc<Vec<watch::Sender<u64>>> = Arc::new(
        (0..lock(&workload).lanes())
            .map(|_| watch::Sender::new(0))
            .collect(),
    );
    let timetable = Timetable::new(args.arrivals, args.rate, args.seed);
    for t in timetable {
        if t >= plan.horizon {
            break;
        }
        let arrival = start + Duration::from_secs_f64(t);
        tokio::time::sleep_until(arrival).await;
        let measured = t >= plan.warmup;
        let permit = Arc::clone(&permits).try_acquire_owned();
        {
            let mut s = lock(&shared);
            if measured {
                s.tally.scheduled += 1;
                match permit {
                    Ok(_) => s.tally.sent += 1,
                    Err(_) => s.tally.dropped += 1,
                }
            }
        }
        let Ok(permit) = permit else { continue };
        let assignment = lock(&workload).assign();
        let (client, workload, shared, lanes) = (
            Arc::clone(&client),
            Arc::clone(&workload),
            Arc::clone(&shared),
            Arc::clone(&lanes),
        );
        let at_s = t - plan.warmup;
        let timeout = plan.timeout;
        tokio::spawn(async move {
            let done = &lanes[assignment.lane];
            let waited = wait_for_turn(done, assignment.seq, arrival + timeout).await;
            let (outcome, route, conversation, turn) = match waited {
                Ok(wait) => {
                    let planned = lock(&workload).request(&assignment);
                    let body = Bytes::from(planned.body.clone());
                    let streamed = client.stream(body, planned.conversation, measured).await;
                    lock(&workload).complete(&planned, streamed.reply);
                    if measured && !wait.is_zero() {
                        lock(&shared).tally.record_wait(wait);
                    }
                    (
                        streamed.outcome,
                        streamed.route,
                        planned.conversation,
                        planned.turn,
                    )
                }
                Err(()) => {
                    let outcome = stats::Outcome {
                        measured,
                        status: None,
                        ttft: None,
                        total: Duration::ZERO,
                        tokens: 0,
                        error: Some(stats::ErrorKind::Abandoned),
                    };
                    (outcome, None, assignment.conversation, assignment.turn)
                }
            };
            done.send_modify(|n| *n += 1);
            let mut s = lock(&shared);
            s.tally.record(&outcome);
            if measured {
                s.last_finish = Some(Instant::now());
                if let Some(samples) = s.samples.as_mut() {
                    let wait = waited.unwrap_or(timeout);
                    samples.push(samples::Sample::new(
                        at_s,
                        conversation,
                        turn,
                        wait,
                        &outcome,
                        route,
                    ));
                }
            }
            drop(permit);
        });
    }

    // A request waits at most `timeout` for its turn, then at most `timeout` for its answer;
    // wait for them all (with a margin).
    let all = u32::try_from(args.max_in_flight).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        2 * plan.timeout + Duration::from_secs(5),
        permits.acquire_many(all),
    )
    .await;
    let after = engines::scrape_all(&metrics, SCRAPE_TIMEOUT).await;
    let before = before.await.unwrap_or_default();
    let missing = Err("not scraped".to_string());
    let deltas = metrics
        .iter()
        .enumerate()
        .map(|(i, url)| {
            engines::engine_delta(
                url,
                before.get(i).unwrap_or(&missing),
                after.get(i).unwrap_or(&missing),
            )
        })
        .collect();

    let mut s = lock(&shared);
    let samples = match (sample_file, s.samples.take()) {
        (Some(file), Some(kept)) => Some(match file.write(kept) {
            Ok(n) => report::SamplesWritten {
                path: args.samples.unwrap_or_default().display().to_string(),
                written: n,
                error: None,
            },
            Err(e) => report::SamplesWritten {
                path: args.samples.unwrap_or_default().display().to_string(),
                written: 0,
                error: Some(e),
            },
        }),
        _ => None,
    };
    let window = args.duration;
    let elapsed = s
        .last_finish
        .map_or(window, |t| t.duration_since(window_start).as_secs_f64())
        .max(window);
    let settings = report::Settings {
        target: plan.url.to_string(),
        rate: args.rate,
        arrivals: args.arrivals,
        duration_s: args.duration,
        warmup_s: args.warmup,
        seed: args.seed,
        model: args.model,
        conversations: args.conversations,
        turns: args.turns,
        groups: args.groups,
        system_prompt_tokens: args.system_prompt_tokens,
        user_tokens: args.user_tokens,
        max_tokens: args.max_tokens,
        max_in_flight: args.max_in_flight,
        timeout_s: args.timeout,
    };
    let counts = lock(&workload).counts();
    let mut report = Report::new(settings, &s.tally, elapsed, deltas, counts);
    report.samples = samples;
    Ok(report)
}

/// Waits until `done` (the lane's finished requests) reaches `seq`, at most until `deadline`;
/// returns how long it waited, or `Err` past the deadline (the request is then abandoned).
async fn wait_for_turn(
    done: &watch::Sender<u64>,
    seq: u64,
    deadline: Instant,
) -> Result<Duration, ()> {
    let mut rx = done.subscribe();
    if *rx.borrow_and_update() >= seq {
        return Ok(Duration::ZERO);
    }
    let from = Instant::now();
    let reached = tokio::time::timeout_at(deadline, rx.wait_for(|n| *n >= seq))
        .await
        .is_ok_and(|r| r.is_ok());
    if reached {
        Ok(from.elapsed())
    } else {
        Err(())
    }
}

/// Locks `m`, recovering the data if a holder panicked (every update is a plain count).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(args: LoadgenArgs) -> String {
        match check(&args) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {args:?}"),
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(err(LoadgenArgs {
            rate: 0.0,
            ..LoadgenArgs::default()
        })
        .starts_with("--rate: 0 is out of range"));
        assert!(err(LoadgenArgs {
            rate: f64::NAN,
            ..LoadgenArgs::default()
        })
        .starts_with("--rate"));
        assert!(err(LoadgenArgs {
            rate: 100_000.0,
            duration: 1_000.0,
            ..LoadgenArgs::default()
        })
        .contains("at most"));
        assert!(err(LoadgenArgs {
            target: "https://x:1".into(),
            ..LoadgenArgs::default()
        })
        .starts_with("--target"));
        assert!(err(LoadgenArgs {
            engine_metrics: vec!["nope".into()],
            ..LoadgenArgs::default()
        })
        .starts_with("--engine-metrics"));
        assert!(err(LoadgenArgs {
            max_in_flight: 0,
            ..LoadgenArgs::default()
        })
        .starts_with("--max-in-flight"));
        assert!(err(LoadgenArgs {
            turns: 0,
            ..LoadgenArgs::default()
        })
        .starts_with("--turns"));
        assert!(err(LoadgenArgs {
            conversations: 100_000,
            turns: 10_000,
            ..LoadgenArgs::default()
        })
        .contains("fewer conversations"));
        assert!(err(LoadgenArgs {
            warmup: -1.0,
            ..LoadgenArgs::default()
        })
        .starts_with("--warmup"));
        let plan = check(&LoadgenArgs::default()).unwrap();
        assert_eq!(
            plan.url.to_string(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
    }

    #[test]
    fn clap_defaults_match_default_impl() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: LoadgenArgs,
        }
        let parsed =
            Cli::try_parse_from(["x", "--target", "http://127.0.0.1:8080", "--rate", "10"])
                .unwrap()
                .args;
        let d = LoadgenArgs::default();
        assert_eq!(
            format!("{parsed:?}"),
            format!("{d:?}"),
            "clap defaults and Default differ"
        );
    }
}
