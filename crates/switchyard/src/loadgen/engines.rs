//! The engines' own counters, scraped from their Prometheus `/metrics` before and after the
//! measured window: the prefix-cache hit rate is `Δhits / Δqueries` summed over the engines
//! (vLLM's `vllm:prefix_cache_hits_total` and `vllm:prefix_cache_queries_total`, both counted
//! in prompt tokens), and each engine's share of the requests is
//! `Δvllm:request_success_total`. A scrape that fails is reported with its reason; it never
//! stops the run.

use std::time::Duration;

use super::client::{get_text, HttpUrl};

/// Prefix-cache hits, in tokens.
pub const HITS: &str = "vllm:prefix_cache_hits_total";
/// Prefix-cache lookups, in tokens.
pub const QUERIES: &str = "vllm:prefix_cache_queries_total";
/// Requests finished successfully.
pub const REQUESTS: &str = "vllm:request_success_total";

/// The counters read from one scrape (`None`: the engine does not export it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// [`HITS`], summed over label sets.
    pub hits: Option<f64>,
    /// [`QUERIES`], summed over label sets.
    pub queries: Option<f64>,
    /// [`REQUESTS`], summed over label sets.
    pub requests: Option<f64>,
}

/// Sums the samples of `name` over all its label sets in a Prometheus text page; `None` when
/// it has none. Malformed lines are skipped.
pub fn sum_metric(page: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in page.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value_part = if let Some(labels) = rest.strip_prefix('{') {
            match closing_brace(labels) {
                Some(end) => &labels[end + 1..],
                None => continue,
            }
        } else if rest.starts_with([' ', '\t']) {
            rest
        } else {
            continue; // another metric whose name starts with `name`
        };
        if let Some(v) = value_part
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// The index of the `}` closing a label set (quotes and escapes inside values respected).
fn closing_brace(labels: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in labels.char_indices() {
        match (in_quotes, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_quotes = !in_quotes,
            (false, _, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// Reads the counters of one Prometheus text page.
pub fn counters(page: &str) -> Counters {
    Counters {
        hits: sum_metric(page, HITS),
        queries: sum_metric(page, QUERIES),
        requests: sum_metric(page, REQUESTS),
    }
}

/// Scrapes `url` within `timeout`.
pub async fn scrape(url: &HttpUrl, timeout: Duration) -> Result<Counters, String> {
    get_text(url, timeout).await.map(|page| counters(&page))
}

/// Scrapes every URL at once; one result per URL, in order.
pub async fn scrape_all(urls: &[HttpUrl], timeout: Duration) -> Vec<Result<Counters, String>> {
    let tasks: Vec<_> = urls
        .iter()
        .cloned()
        .map(|u| tokio::spawn(async move { scrape(&u, timeout).await }))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(
            t.await
                .unwrap_or_else(|e| Err(format!("scrape task failed: {e}"))),
        );
    }
    out
}

/// One engine's figures over the measured window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EngineDelta {
    /// The metrics URL.
    pub url: String,
    /// Prefix-cache hits, in tokens (`None`: not exported or a scrape failed).
    pub prefix_hits: Option<f64>,
    /// Prefix-cache lookups, in tokens.
    pub prefix_queries: Option<f64>,
    /// `prefix_hits / prefix_queries`.
    pub hit_rate: Option<f64>,
    /// Requests the engine finished.
    pub requests: Option<f64>,
    /// Why figures are missing, if they are.
    pub error: Option<String>,
}

fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    // A counter that went down means the engine restarted: the delta is unknown.
    Some(after? - before?).filter(|d| *d >= 0.0)
}

/// The change between two scrapes of one engine.
pub fn engine_delta(
    url: &HttpUrl,
    before: &Result<Counters, String>,
    after: &Result<Counters, String>,
) -> EngineDelta {
    let mut d = EngineDelta {
        url: url.to_string(),
        ..EngineDelta::default()
    };
    match (before, after) {
        (Ok(b), Ok(a)) => {
            d.prefix_hits = delta(b.hits, a.hits);
            d.prefix_queries = delta(b.queries, a.queries);
            d.requests = delta(b.requests, a.requests);
            d.hit_rate = match (d.prefix_hits, d.prefix_queries) {
                (Some(h), Some(q)) if q > 0.0 => Some(h / q),
                _ => None,
            };
            if a.hits.is_none() || a.queries.is_none() {
                d.error = Some(format!("no {HITS} / {QUERIES} in the metrics"));
            } else if d.prefix_hits.is_none() || d.prefix_queries.is_none() {
                d.error = Some("a counter went down (engine restarted?)".into());
            }
        }
        (Err(e), _) => d.error = Some(format!("before the run: {e}")),
        (_, Err(e)) => d.error = Some(format!("after the run: {e}")),
    }
    d
}

/// `Σ hits / Σ queries` over the engines with both figures; `None` when no engine has any
/// lookup.
pub fn overall_hit_rate(engines: &[EngineDelta]) -> Option<f64> {
    let (mut hits, mut queries) = (0.0, 0.0);
    for e in engines {
        if let (Some(h), Some(q)) = (e.prefix_hits, e.prefix_queries) {
            hits += h;
            queries += q;
        }
    }
    (queries > 0.0).then(|| hits / queries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{model_name=\"a}\\\"b\"} 30
vllm:prefix_cache_hits_total{model_name=\"c\"} 10 1700000000000
vllm:prefix_cache_hits_total_created{model_name=\"c\"} 17
vllm:prefix_cache_queries_total 200
vllm:request_success_total{model_name=\"c\",finished_reason=\"length\"} 5
vllm:request_success_total{broken 9
";

    #[test]
    fn sums_label_sets_and_skips_lookalikes() {
        let c = counters(PAGE);
        assert_eq!(c.hits, Some(40.0));
        assert_eq!(c.queries, Some(200.0));
        assert_eq!(c.requests, Some(5.0));
        assert_eq!(sum_metric(PAGE, "vllm:num_requests_running"), None);
        assert_eq!(sum_metric("x NaN\n", "x"), None);
    }

    #[test]
    fn deltas_and_the_overall_rate() {
        let url = HttpUrl::parse("http://e:1/metrics").unwrap();
        let before = Ok(Counters {
            hits: Some(10.0),
            queries: Some(100.0),
            requests: Some(1.0),
        });
        let after = Ok(Counters {
            hits: Some(70.0),
            queries: Some(200.0),
            requests: Some(11.0),
        });
        let a = engine_delta(&url, &before, &after);
        assert_eq!(a.prefix_hits, Some(60.0));
        assert_eq!(a.hit_rate, Some(0.6));
        assert_eq!(a.requests, Some(10.0));
        assert_eq!(a.error, None);
        let failed = engine_delta(&url, &Err("refused".into()), &after);
        assert!(failed.error.unwrap().contains("refused"));
        let missing = engine_delta(&url, &Ok(Counters::default()), &Ok(Counters::default()));
        assert!(missing.error.unwrap().contains(HITS));
        let b = EngineDelta {
            prefix_hits: Some(0.0),
            prefix_queries: Some(100.0),
            ..EngineDelta::default()
        };
        assert_eq!(overall_hit_rate(&[a.clone(), b]), Some(0.3));
        assert_eq!(overall_hit_rate(&[]), None);
        let restarted = engine_delta(&url, &after, &before);
        assert!(restarted.error.unwrap().contains("went down"));
    }
}
