//! `[budget NAME]`: an LLM token budget (a token bucket refilled at `tokens_per_minute`): what
//! requests share a bucket (`key`, `per_model`), which requests it applies to (`models`,
//! `routes`), and how a request's cost is estimated before its real usage is known
//! (`default_max_tokens`).

use crate::limit::LimitKey;
use crate::reader::SectionReader;
use crate::value::{format_list, parse_list};

/// The keys of `[budget NAME]`, in the order they are rendered.
pub(crate) const BUDGET_KEYS: &[&str] = &[
    "tokens_per_minute",
    "burst",
    "key",
    "per_model",
    "models",
    "routes",
    "max_keys",
    "default_max_tokens",
];

/// The largest `tokens_per_minute` and `burst`.
pub const MAX_BUDGET_TOKENS: u64 = 1_000_000_000;
/// The default `default_max_tokens`.
pub const DEFAULT_BUDGET_MAX_TOKENS: u32 = 256;
/// The largest `default_max_tokens`.
pub const MAX_BUDGET_MAX_TOKENS: u32 = 10_000_000;
/// The most models `models` may list.
pub const MAX_BUDGET_MODELS: usize = 1024;

/// A `[budget NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// The section's name (it names the budget in `/stats` and in the audit log).
    pub name: String,
    /// `tokens_per_minute`: the sustained rate per key (required; 1..=1000000000).
    pub tokens_per_minute: u64,
    /// `burst`: the bucket's capacity in tokens (default: `tokens_per_minute`).
    pub burst: u64,
    /// `key`: what requests share a bucket: `api_key` (the default), `header:NAME`,
    /// `client_ip` or `global` (never `path`).
    pub key: LimitKey,
    /// `per_model`: a separate bucket per (key, model) (default `true`).
    pub per_model: bool,
    /// `models`: the budget applies only to requests for these models; empty: every request.
    pub models: Vec<String>,
    /// `routes`: the budget applies only to requests routed to these routes; empty: every
    /// route.
    pub routes: Vec<String>,
    /// `max_keys`: the most buckets tracked at once (1..=10000000, default 100000).
    pub max_keys: usize,
    /// `default_max_tokens`: the completion estimate for a request naming neither
    /// `max_tokens` nor `max_completion_tokens` (default [`DEFAULT_BUDGET_MAX_TOKENS`]).
    pub default_max_tokens: u32,
}

impl BudgetConfig {
    /// A budget of `tokens_per_minute` with every optional key at its default.
    pub fn new(name: &str, tokens_per_minute: u64) -> Self {
        BudgetConfig {
            name: name.to_string(),
            tokens_per_minute,
            burst: tokens_per_minute,
            key: LimitKey::ApiKey,
            per_model: true,
            models: Vec::new(),
            routes: Vec::new(),
            max_keys: crate::DEFAULT_LIMIT_MAX_KEYS,
            default_max_tokens: DEFAULT_BUDGET_MAX_TOKENS,
        }
    }
}

fn tokens(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=MAX_BUDGET_TOKENS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number of tokens from 1 to {MAX_BUDGET_TOKENS}"
        )),
    }
}

fn key(s: &str) -> Result<LimitKey, String> {
    match s.parse::<LimitKey>() {
        Ok(LimitKey::Path) | Err(_) => Err(
            "expected `api_key`, `header:NAME`, `client_ip` or `global` (NAME an HTTP token, \
             e.g. header:x-tenant)"
                .to_string(),
        ),
        Ok(k) => Ok(k),
    }
}

fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

fn models(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for m in parse_list(s)? {
        if !m.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("`{m}` is not a model name (no spaces)"));
        }
        if out.iter().any(|n| n == m) {
            return Err(format!("model `{m}` is listed twice"));
        }
        out.push(m.to_string());
    }
    if out.len() > MAX_BUDGET_MODELS {
        return Err(format!("at most {MAX_BUDGET_MODELS} models"));
    }
    Ok(out)
}

fn max_keys(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=crate::MAX_LIMIT_KEYS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {}",
            crate::MAX_LIMIT_KEYS
        )),
    }
}

fn max_tokens(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_BUDGET_MAX_TOKENS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_BUDGET_MAX_TOKENS}"
        )),
    }
}

/// A budget as read, before the cross-checks that need the whole file.
pub(crate) struct BudgetRead {
    /// The budget; `None` if `tokens_per_minute` is missing or invalid.
    pub config: Option<BudgetConfig>,
    /// The line of `routes` (the header's if absent).
    pub routes_line: usize,
}

/// Reads `[budget NAME]`.
pub(crate) fn read_budget(r: &mut SectionReader<'_>, name: &str) -> BudgetRead {
    let tpm: Option<u64> = r.required("tokens_per_minute", tokens);
    let burst = r.optional("burst", tokens);
    let key = r.value("key", LimitKey::ApiKey, key);
    let per_model = r.value("per_model", true, boolean);
    let models = r.value("models", Vec::new(), models);
    let routes = r.value("routes", Vec::new(), crate::limit::route_names);
    let max_keys = r.value("max_keys", crate::DEFAULT_LIMIT_MAX_KEYS, max_keys);
    let default_max_tokens = r.value("default_max_tokens", DEFAULT_BUDGET_MAX_TOKENS, max_tokens);
    let config = tpm.map(|tpm| BudgetConfig {
        burst: burst.unwrap_or(tpm),
        key,
        per_model,
        models,
        routes,
        max_keys,
        default_max_tokens,
        ..BudgetConfig::new(name, tpm)
    });
    BudgetRead {
        config,
        routes_line: r.line_of("routes"),
    }
}

/// Every `[budget NAME]` key with its value as INI text, in canonical order (empty: unset).
pub(crate) fn budget_values(b: &BudgetConfig) -> Vec<(&'static str, String)> {
    vec![
        ("tokens_per_minute", b.tokens_per_minute.to_string()),
        ("burst", b.burst.to_string()),
        ("key", b.key.to_string()),
        ("per_model", b.per_model.to_string()),
        ("models", format_list(&b.models)),
        ("routes", format_list(&b.routes)),
        ("max_keys", b.max_keys.to_string()),
        ("default_max_tokens", b.default_max_tokens.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_exclude_path() {
        assert_eq!(key("api_key"), Ok(LimitKey::ApiKey));
        assert_eq!(key("header:X-T"), Ok(LimitKey::Header("x-t".into())));
        assert!(key("path").is_err());
        assert!(key("cookie:a").is_err());
    }

    #[test]
    fn model_lists() {
        assert_eq!(models("a, b@v2").unwrap(), ["a", "b@v2"]);
        assert!(models("a, a").is_err());
    }
}
