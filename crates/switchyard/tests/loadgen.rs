//! `switchyard loadgen` in-process: against mock engines (directly and through the proxy) it
//! counts every request, times first tokens within total latencies and reads the engines'
//! prefix-cache counters; a conversation's turns go one after another; against a dead address
//! or a silent server it counts errors, drops and abandoned turns and ends on time instead of
//! hanging.

mod support;

use std::time::Duration;

use support::{proxy, server};
use switchyard::loadgen::{run, ArrivalMode, LoadgenArgs, Report};
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};

/// A fast mock engine: the test is about the load generator, not about queueing.
async fn engine(name: &str) -> MockEngineHandle {
    engine_at(name, 2_000.0).await
}

async fn engine_at(name: &str, tokens_per_sec: f64) -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(
        listener,
        MockEngineArgs {
            name: Some(name.into()),
            ttft_ms: 5,
            tokens_per_sec,
            ..MockEngineArgs::default()
        },
    )
    .await
    .unwrap()
}

/// A low, fixed-rate load: 10 requests per second for 1.5 s, two conversations of three turns.
fn args(target: String) -> LoadgenArgs {
    LoadgenArgs {
        target,
        rate: 10.0,
        duration: 1.5,
        arrivals: ArrivalMode::Fixed,
        conversations: 2,
        turns: 3,
        system_prompt_tokens: 200,
        user_tokens: 20,
        max_tokens: 8,
        timeout: 10.0,
        ..LoadgenArgs::default()
    }
}

/// Runs the load, failing the test (not hanging it) if it takes far longer than it should.
async fn run_bounded(args: LoadgenArgs) -> Report {
    tokio::time::timeout(Duration::from_secs(30), run(args))
        .await
        .expect("loadgen finishes")
        .expect("valid arguments")
}

fn assert_clean(r: &Report) {
    // Fixed gaps of 100 ms: arrivals at 0.1 .. 1.4 s (1.5 s itself is past the window).
    assert!(
        (14..=15).contains(&r.requests.scheduled),
        "{:?}",
        r.requests
    );
    assert_eq!(r.requests.sent, r.requests.scheduled, "{:?}", r.requests);
    assert_eq!(r.requests.dropped, 0);
    assert_eq!(r.requests.ok, r.requests.sent, "errors: {:?}", r.errors);
    assert_eq!(r.requests.failed, 0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.statuses.get(&200), Some(&r.requests.ok));
    assert_eq!(r.ttft_ms.count, r.requests.ok);
    assert!(r.ttft_ms.p50 > 0.0);
    assert!(r.ttft_ms.p50 <= r.ttft_ms.p99);
    assert!(
        r.ttft_ms.p99 <= r.latency_ms.p99,
        "{:?} {:?}",
        r.ttft_ms,
        r.latency_ms
    );
    assert!(r.ttft_ms.max <= r.latency_ms.max);
    assert_eq!(r.output_tokens, 8 * r.requests.ok);
    assert!(r.achieved_rps > 0.0 && r.output_tokens_per_s > 0.0);
    assert!(r.elapsed_s >= 1.5);
    assert!(r.workload.conversations_started >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_a_mock_engine_directly() {
    let e = engine("e0").await;
    let report = run_bounded(LoadgenArgs {
        engine_metrics: vec![format!("http://{}/metrics", e.local_addr())],
        ..args(format!("http://{}", e.local_addr()))
    })
    .await;
    assert_clean(&report);
    assert_eq!(e.requests_served(), report.requests.ok);
    // Later turns resend the earlier ones: the engine finds their prefix.
    let hit = report.prefix_cache.hit_rate.expect("hit rate");
    assert!(hit > 0.0 && hit <= 1.0, "hit rate {hit}");
    let engine = &report.prefix_cache.engines[0];
    assert_eq!(engine.error, None);
    assert_eq!(engine.requests, Some(report.requests.ok as f64));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["requests"]["ok"], report.requests.ok);
    assert!(report.to_text().contains("prefix-cache hit rate"));
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_two_engines_through_the_proxy() {
    let (a, b) = (engine("e0").await, engine("e1").await);
    let proxy = proxy::new()
        .backend("e0", a.local_addr())
        .backend("e1", b.local_addr())
        .route("chat", "/", &["e0", "e1"], "round_robin")
        .explain()
        .start();
    let samples = std::env::temp_dir().join(format!("loadgen-test-{}.jsonl", std::process::id()));
    let report = run_bounded(LoadgenArgs {
        engine_metrics: vec![
            format!("http://{}/metrics", a.local_addr()),
            format!("http://{}/metrics", b.local_addr()),
        ],
        samples: Some(samples.clone()),
        ..args(format!("http://{}", proxy.addr()))
    })
    .await;
    // One sample per measured request, each naming the backend the proxy chose.
    let written = report.samples.as_ref().expect("samples written");
    assert_eq!(written.error, None);
    assert_eq!(written.written as u64, report.requests.sent);
    let text = std::fs::read_to_string(&samples).unwrap();
    std::fs::remove_file(&samples).unwrap();
    assert_eq!(text.lines().count() as u64, report.requests.sent);
    for line in text.lines() {
        let s: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(s["status"], 200);
        assert!(s["turn"].as_u64().unwrap() >= 1);
        let route = s["route"].as_str().unwrap();
        assert!(route.contains("balancer=round_robin"), "{route}");
    }
    assert_clean(&report);
    assert_eq!(
        a.requests_served() + b.requests_served(),
        report.requests.ok
    );
    assert!(a.requests_served() > 0 && b.requests_served() > 0);
    assert_eq!(report.prefix_cache.engines.len(), 2);
    assert!(report.prefix_cache.hit_rate.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_turns_wait_for_the_previous_reply() {
    // One conversation at a time, a turn every 100 ms, each taking about 165 ms (8 tokens at
    // 50/s): turns queue behind their predecessors instead of overlapping.
    let e = engine_at("slow", 50.0).await;
    let samples = std::env::temp_dir().join(format!("loadgen-turns-{}.jsonl", std::process::id()));
    let report = run_bounded(LoadgenArgs {
        conversations: 1,
        duration: 1.0,
        samples: Some(samples.clone()),
        ..args(format!("http://{}", e.local_addr()))
    })
    .await;
    assert_eq!(
        report.requests.ok, report.requests.sent,
        "{:?}",
        report.errors
    );
    assert!(report.requests.sent >= 9);
    assert!(report.turn_wait_ms.count > 0, "{:?}", report.turn_wait_ms);
    let text = std::fs::read_to_string(&samples).unwrap();
    std::fs::remove_file(&samples).unwrap();
    let mut spans: Vec<(f64, f64)> = text
        .lines()
        .map(|l| {
            let s: serde_json::Value = serde_json::from_str(l).unwrap();
            let sent = s["at_s"].as_f64().unwrap() * 1_000.0 + s["wait_ms"].as_f64().unwrap();
            (sent, sent + s["total_ms"].as_f64().unwrap())
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in spans.windows(2) {
        // Sent after the previous one ended. The times come from separate clock reads
        // (arrival, wait, duration), so allow 20 ms of slack: turns that did overlap would
        // overlap by about 65 ms (each takes ~165 ms, one arrives every 100 ms).
        assert!(w[1].0 + 20.0 >= w[0].1, "overlapping turns: {w:?}");
    }
    // Turns 1, 2, 3 of conversation after conversation.
    assert_eq!(report.workload.conversations_restarted, 0);
    assert!(report.workload.conversations_completed >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_stuck_behind_an_unanswered_one_is_abandoned() {
    let silent = server::silent().await;
    let report = run_bounded(LoadgenArgs {
        conversations: 1,
        rate: 10.0,
        duration: 0.5,
        timeout: 0.5,
        ..args(format!("http://{}", silent.addr()))
    })
    .await;
    // Arrivals at 0.1 .. 0.4 s on one lane: the first two are sent in turn and time out, the
    // later ones give up waiting for their turn.
    assert_eq!(report.requests.ok, 0);
    let timeouts = report.errors.get("timeout").copied().unwrap_or(0);
    let abandoned = report.errors.get("abandoned").copied().unwrap_or(0);
    assert_eq!(
        timeouts + abandoned,
        report.requests.sent,
        "{:?}",
        report.errors
    );
    assert!(timeouts >= 1 && abandoned >= 1, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_counted_not_waited_for() {
    let dead = server::dead_addr();
    let started = std::time::Instant::now();
    let report = run_bounded(LoadgenArgs {
        duration: 0.5,
        rate: 20.0,
        engine_metrics: vec![format!("http://{dead}/metrics")],
        ..args(format!("http://{dead}"))
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(report.requests.sent > 0);
    assert_eq!(report.requests.ok, 0);
    assert_eq!(report.errors.get("connect"), Some(&report.requests.sent));
    assert_eq!(report.ttft_ms.count, 0);
    // The metrics endpoint failing is reported, not fatal.
    assert_eq!(report.prefix_cache.hit_rate, None);
    let err = report.prefix_cache.engines[0].error.as_deref().unwrap();
    assert!(err.contains("connect"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_target_times_out_and_extra_arrivals_are_dropped() {
    let silent = server::silent().await;
    let started = std::time::Instant::now();
    let report = run_bounded(LoadgenArgs {
        duration: 0.5,
        rate: 20.0,
        max_in_flight: 2,
        timeout: 1.0,
        ..args(format!("http://{}", silent.addr()))
    })
    .await;
    // The window (0.5 s) plus one timeout, with a generous margin.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report.requests.sent, 2);
    assert_eq!(report.errors.get("timeout"), Some(&2));
    assert_eq!(
        report.requests.dropped,
        report.requests.scheduled - report.requests.sent
    );
    assert!(report.requests.dropped > 0);
}
