//! The `/metrics` exposition: every family typed once, GPU figures following the load.

mod common;

use std::time::Duration;

use common::*;
use hyper::Method;
use serde_json::json;
use switchyard_mock_engine::MockEngineArgs;

#[tokio::test]
async fn every_family_has_help_type_and_one_sample() {
    let engine = start(fast_args()).await;
    let text = get(engine.local_addr(), "/metrics").await.text();
    for (name, kind) in [
        ("vllm:num_requests_running", "gauge"),
        ("vllm:num_requests_waiting", "gauge"),
        ("vllm:kv_cache_usage_perc", "gauge"),
        ("vllm:prompt_tokens_total", "counter"),
        ("vllm:generation_tokens_total", "counter"),
        ("vllm:prefix_cache_queries_total", "counter"),
        ("vllm:prefix_cache_hits_total", "counter"),
        ("vllm:request_success_total", "counter"),
        ("DCGM_FI_DEV_GPU_UTIL", "gauge"),
        ("DCGM_FI_DEV_FB_USED", "gauge"),
        ("DCGM_FI_DEV_FB_FREE", "gauge"),
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {name} {kind}\n")).count(),
            1,
            "{name}:\n{text}"
        );
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        let samples = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .count();
        assert_eq!(samples, 1, "{name}:\n{text}");
    }
    assert!(text.contains("vllm:prefix_cache_hits_total{model_name=\"mock-llama\"} 0\n"));
    assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\","));
    // Idle: no utilisation, the weights' 40 % of 80 GiB used.
    assert_eq!(metric(&text, "DCGM_FI_DEV_GPU_UTIL"), Some(0.0));
    assert_eq!(metric(&text, "DCGM_FI_DEV_FB_USED"), Some(32768.0));
    assert_eq!(metric(&text, "DCGM_FI_DEV_FB_FREE"), Some(49152.0));
    engine.shutdown().await;
}

#[tokio::test]
async fn gpu_figures_follow_the_batch_and_the_kv_cache() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 1.0,
        max_concurrent: 4,
        kv_cache_tokens: 100,
        gpu_memory_mib: 10_000,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    // Two requests of 25 prompt tokens each, generating slowly: half the slots, and the KV
    // cache at least half full.
    let prompt = (0..25)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let body = json!({"prompt": prompt, "max_tokens": 1000, "stream": true}).to_string();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(addr).await;
        let resp = c
            .send(Method::POST, "/v1/completions", Some(body.clone().into()))
            .await;
        clients.push((c, resp));
    }
    wait_for(Duration::from_secs(10), "two running", || async {
        scrape(addr, "vllm:num_requests_running").await == 2.0
    })
    .await;
    let text = get(addr, "/metrics").await.text();
    assert_eq!(metric(&text, "DCGM_FI_DEV_GPU_UTIL"), Some(50.0));
    let kv = metric(&text, "vllm:kv_cache_usage_perc").unwrap();
    assert!(kv >= 0.5, "{kv}");
    let used = metric(&text, "DCGM_FI_DEV_FB_USED").unwrap();
    let free = metric(&text, "DCGM_FI_DEV_FB_FREE").unwrap();
    assert_eq!(used + free, 10_000.0);
    assert_eq!(used, (10_000.0 * (0.4 + 0.5 * kv)).round(), "{text}");
    assert!(used >= 6500.0);

    drop(clients);
    wait_for(Duration::from_secs(10), "idle again", || async {
        scrape(addr, "DCGM_FI_DEV_FB_USED").await == 4000.0
    })
    .await;
    assert_eq!(scrape(addr, "DCGM_FI_DEV_GPU_UTIL").await, 0.0);
    engine.shutdown().await;
}
