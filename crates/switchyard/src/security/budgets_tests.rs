//! Budgets bound to a config: admission, settlement and isolation, on a controllable clock.

use super::*;

const S: u64 = 1000;

fn budgets(text: &str) -> Budgets {
    let text = format!(
        "[backend b]\naddress = h:1\n[route a]\npath_prefix = /a\nbackends = b\n\
         [route z]\nbackends = b\n{text}"
    );
    Budgets::new(&switchyard_config::parse(&text, "t.ini").unwrap())
}

fn headers(key: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    h
}

fn ask(model: &str, prompt: u64, max: Option<u64>) -> Ask<'_> {
    Ask {
        model: Some(model),
        prompt_tokens: prompt,
        max_tokens: max,
    }
}

/// Reserves for `key`; the settlement, or the refusal.
fn reserve(
    b: &Budgets,
    now: u64,
    key: &str,
    a: &Ask<'_>,
) -> Result<Option<Box<Settlement>>, BudgetRefusal> {
    let h = headers(key);
    b.reserve(
        now,
        0,
        a,
        &Caller {
            headers: &h,
            client_ip: b"10.0.0.1",
        },
    )
}

/// A 200 JSON response reporting `total` tokens.
fn finish_json(b: &Budgets, now: u64, mut s: Box<Settlement>, total: u64) {
    s.respond(200, Some(false));
    s.feed(format!(r#"{{"usage":{{"total_tokens":{total}}}}}"#).as_bytes());
    b.settle(now, &mut s);
}

#[test]
fn reserve_then_settle_on_real_usage() {
    // 6000/m = 100/s, burst 1000.
    let b = budgets("[budget k]\ntokens_per_minute = 6000\nburst = 1000\n");
    let s = reserve(&b, S, "sk-a", &ask("m", 100, Some(300)))
        .unwrap()
        .unwrap();
    assert_eq!(
        s.headers,
        TokenHeaders {
            burst: 1000,
            remaining: 600,
            reset_ms: 4000
        }
    );
    finish_json(&b, S, s, 150);
    let report = b.report();
    assert_eq!(report[0]["tokens_reserved"], 400);
    assert_eq!(report[0]["tokens_charged"], 150);
    // 850 left: a request of 900 waits half a second.
    let refusal = reserve(&b, S, "sk-a", &ask("m", 400, Some(500))).unwrap_err();
    assert_eq!(
        (refusal.remaining, refusal.estimate, refusal.retry_after_ms),
        (850, 900, 500)
    );
    assert!(reserve(&b, S + 500, "sk-a", &ask("m", 400, Some(500))).is_ok());
    assert_eq!(b.report()[0]["denied"], 1);
    assert_eq!(b.report()[0]["admitted"], 2);
}

#[test]
fn default_max_tokens_and_clamping() {
    let b = budgets("[budget k]\ntokens_per_minute = 60\nburst = 500\ndefault_max_tokens = 40\n");
    let s = reserve(&b, S, "k", &ask("m", 10, None)).unwrap().unwrap();
    assert_eq!(s.headers.remaining, 450);
    // A request bigger than the bucket is clamped to it: it passes when the bucket is full.
    let other = reserve(&b, S, "k2", &ask("m", 10_000, Some(10_000)))
        .unwrap()
        .unwrap();
    assert_eq!(other.headers.remaining, 0);
    assert_eq!(b.report()[0]["tokens_reserved"], 550);
}

#[test]
fn debt_from_usage_beyond_the_estimate_refills() {
    // 60/m = 1 token a second, burst 100.
    let b = budgets("[budget k]\ntokens_per_minute = 60\nburst = 100\n");
    let s = reserve(&b, S, "k", &ask("m", 10, Some(10)))
        .unwrap()
        .unwrap();
    finish_json(&b, S, s, 150);
    // 100 - 150 = 50 of debt: 60 s until 10 tokens are back.
    let r = reserve(&b, S, "k", &ask("m", 5, Some(5))).unwrap_err();
    assert_eq!((r.remaining, r.retry_after_ms), (0, 60_000));
    let mut h = HeaderMap::new();
    r.set_headers(&mut h);
    assert_eq!(h["retry-after"], "60");
    assert_eq!(h["x-ratelimit-limit-tokens"], "100");
    assert_eq!(h["x-ratelimit-remaining-tokens"], "0");
    assert_eq!(h["x-ratelimit-reset-tokens"], "150s");
    assert!(reserve(&b, 61 * S, "k", &ask("m", 5, Some(5))).is_ok());
}

#[test]
fn keys_and_models_are_budgeted_apart() {
    let b = budgets(
        "[budget per-key]\ntokens_per_minute = 60\nburst = 1000\nper_model = false\n\
         [budget per-model]\ntokens_per_minute = 60\nburst = 100\n",
    );
    let big = |m| ask(m, 50, Some(50));
    assert!(reserve(&b, S, "a", &big("llama")).is_ok());
    assert_eq!(
        &*reserve(&b, S, "a", &big("llama")).unwrap_err().budget,
        "per-model"
    );
    assert!(reserve(&b, S, "a", &big("qwen")).is_ok(), "another model");
    assert!(reserve(&b, S, "b", &big("llama")).is_ok(), "another key");
    // The refused request gave its per-key reservation back.
    let report = b.report();
    assert_eq!(
        (report[0]["admitted"].as_u64(), report[1]["denied"].as_u64()),
        (Some(3), Some(1))
    );
    let s = reserve(&b, S, "a", &big("gpt")).unwrap().unwrap();
    assert_eq!(
        s.headers.remaining, 0,
        "the tightest budget's figures: per-model's"
    );
    // per_model = false: one bucket for every model of a key.
    for i in 0..10 {
        let model = format!("m{i}");
        assert!(reserve(&b, S, "c", &ask(&model, 50, Some(50))).is_ok());
    }
    let r = reserve(&b, S, "c", &big("y")).unwrap_err();
    assert_eq!(&*r.budget, "per-key");
}

#[test]
fn scopes_by_route_and_model() {
    let b = budgets(
        "[budget only-llama]\ntokens_per_minute = 60\nburst = 10\nmodels = llama\n\
         [budget on-z]\ntokens_per_minute = 60\nburst = 10\nroutes = z\n",
    );
    assert!(b.guards_route(0) && b.guards_route(1));
    let h = HeaderMap::new();
    let caller = Caller {
        headers: &h,
        client_ip: b"",
    };
    let qwen = ask("qwen", 100, Some(100));
    assert!(
        b.reserve(S, 0, &qwen, &caller).unwrap().is_none(),
        "no budget applies"
    );
    let nameless = Ask {
        model: None,
        ..qwen
    };
    assert!(b.reserve(S, 0, &nameless, &caller).unwrap().is_none());
    assert!(b
        .reserve(S, 0, &ask("llama", 1, Some(1)), &caller)
        .unwrap()
        .is_some());
    assert!(b.reserve(S, 1, &qwen, &caller).unwrap().is_some());
    assert!(!budgets("[budget z]\ntokens_per_minute = 1\nroutes = z\n").guards_route(0));
}

#[test]
fn the_settlement_rules() {
    let sse = |body: &str| {
        let mut s = UsageScanner::new(true);
        s.feed(body.as_bytes());
        s
    };
    let json = |body: &str| {
        let mut s = UsageScanner::new(false);
        s.feed(body.as_bytes());
        s
    };
    // (status, reserved, prompt, scanner) -> charged
    assert_eq!(charge(0, 300, 20, None), 0, "no response");
    assert_eq!(charge(502, 300, 20, None), 0);
    assert_eq!(charge(503, 300, 20, Some(&json("{}"))), 0);
    assert_eq!(charge(400, 300, 20, Some(&json("{}"))), 20);
    assert_eq!(charge(404, 10, 20, None), 10, "never more than reserved");
    assert_eq!(
        charge(
            200,
            300,
            20,
            Some(&json(r#"{"usage":{"total_tokens":77}}"#))
        ),
        77
    );
    assert_eq!(charge(200, 300, 20, Some(&json("cut off"))), 300);
    assert_eq!(
        charge(
            200,
            300,
            20,
            Some(&sse("data: {}\n\ndata: {}\n\ndata: [DONE]\n\n"))
        ),
        22
    );
    assert_eq!(charge(200, 300, 20, None), 300);
}

#[test]
fn a_failed_request_is_refunded_in_full() {
    let b = budgets("[budget k]\ntokens_per_minute = 60\nburst = 100\n");
    let mut s = reserve(&b, S, "k", &ask("m", 50, Some(50)))
        .unwrap()
        .unwrap();
    s.set_status(502);
    b.settle(S, &mut s);
    b.settle(S, &mut s); // settles once only
    let s = reserve(&b, S, "k", &ask("m", 50, Some(50)))
        .unwrap()
        .unwrap();
    assert_eq!(s.headers.remaining, 0, "the whole bucket was back");
    assert_eq!(b.report()[0]["tokens_charged"], 0);
}

#[test]
fn the_table_is_bounded() {
    let b = budgets("[budget k]\ntokens_per_minute = 60\nburst = 100\nmax_keys = 32\n");
    for i in 0..2000 {
        assert!(reserve(&b, S, &format!("sk-{i}"), &ask("m", 10, Some(10))).is_ok());
    }
    let r = b.report();
    let (keys, evictions) = (
        r[0]["keys"].as_u64().unwrap(),
        r[0]["evictions"].as_u64().unwrap(),
    );
    assert!(keys <= 32, "{r}");
    assert_eq!(keys + evictions, 2000, "{r}");
}
