//! One pick over 1,000 backends, for every balancer (the bar: under a microsecond).
//!
//! Run with `cargo bench -p switchyard-balance --bench pick`. The backends carry in-flight
//! counts, latencies and fresh scraped figures, so the balancers that read them do their full
//! work; `consistent_hash` gets a different key per pick and `prefix_cache` a prompt of 32
//! blocks, half of them shared with earlier requests.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use switchyard_balance::{prefix_cache, BackendState, LoadFigures, PickContext, SplitMix64};

const BACKENDS: usize = 1_000;
const NOW_MS: u64 = 1_000_000;

fn fleet() -> Vec<Arc<BackendState>> {
    let mut rng = SplitMix64::new(7);
    (0..BACKENDS)
        .map(|i| {
            let b = Arc::new(BackendState::new(format!("engine-{i}"), 1 + (i % 4) as u32));
            for _ in 0..rng.below(8) {
                std::mem::forget(b.start_request());
            }
            b.observe_latency_us(1_000 + rng.below(50_000) as u64);
            b.observe_peak_latency_us(1_000 + rng.below(50_000) as u64, NOW_MS);
            let figures = LoadFigures {
                waiting: Some(rng.below(20) as u64),
                running: Some(rng.below(64) as u64),
                kv_cache_usage: Some(rng.below(100) as f64 / 100.0),
                gpu_util: Some(rng.below(100) as f64 / 100.0),
                ..LoadFigures::default()
            };
            b.record_figures(figures, NOW_MS, 60_000);
            b
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let backends = fleet();
    let mut group = c.benchmark_group("pick_1000_backends");
    for name in switchyard_balance::names() {
        let mut balancer = switchyard_balance::build(name, 1).expect("registered");
        let mut rng = SplitMix64::new(11);
        // Prompts: a shared 16-block system prompt, then 16 blocks of their own.
        let shared: Vec<u8> = (0..16 * 64).map(|i| b'a' + (i % 26) as u8).collect();
        group.bench_function(name, |bench| {
            bench.iter_batched(
                || {
                    let mut prompt = shared.clone();
                    let tail = rng.next_u64();
                    prompt.extend((0..16 * 64).map(|i| b'a' + ((tail >> (i % 60)) % 26) as u8));
                    (rng.next_u64(), prefix_cache::block_chain(&prompt))
                },
                |(key, chain)| {
                    let ctx = PickContext {
                        now_ms: NOW_MS,
                        exclude: &[],
                        key: Some(key),
                        prefix: &chain,
                    };
                    black_box(balancer.pick(black_box(&backends), &ctx))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, picks);
criterion_main!(benches);
