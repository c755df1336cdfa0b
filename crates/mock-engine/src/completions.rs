//! Execution of chat / text completion jobs, streamed (SSE) or not.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::body::ChannelBody;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::pacing::Pacer;
use crate::request::{Job, Kind};
use crate::response::{json_response, ApiError, RespBody};
use crate::scheduler::Slot;
use crate::schema::{
    ChatChoice, ChatChunkChoice, Delta, Envelope, Head, Message, TextChoice, Usage, CREATED,
};
use crate::tokens::TokenGenerator;

const FINISH_REASON: &str = "length";
/// Stream messages buffered between the generator and the connection.
const STREAM_BUFFER: usize = 16;

/// Runs `job`: waits for a slot (503 if the queue is full), then generates.
pub(crate) async fn execute(engine: Arc<Engine>, job: Job) -> Response<RespBody> {
    let slot = match engine.scheduler.acquire().await {
        Ok(slot) => slot,
        Err(_) => return ApiError::overloaded(engine.max_waiting).into_response(),
    };
    let run = Run::start(Arc::clone(&engine), slot, &job);
    if job.stream {
        stream(run, job)
    } else {
        complete(run, job).await
    }
}

/// Progress of one job holding a slot.
struct Run {
    engine: Arc<Engine>,
    slot: Slot,
    pacer: Pacer,
    prompt_tokens: u64,
    choices: u64,
    /// Block chains of the prompts, cached once the prefill is done.
    chains: Vec<Vec<u64>>,
}

impl Run {
    fn start(engine: Arc<Engine>, mut slot: Slot, job: &Job) -> Self {
        let prompt_tokens = job.prompt_tokens();
        slot.set_kv_tokens(prompt_tokens);
        Metrics::add(&engine.metrics.prompt_tokens, prompt_tokens);
        let cache = &engine.prefix_cache;
        let chains = cache.chains(&job.model, job.prompts.iter().map(|p| p.text.as_str()));
        let mut cached = 0;
        if cache.enabled() {
            cached = cache.lookup(&chains).min(prompt_tokens);
            Metrics::add(&engine.metrics.prefix_cache_queries, prompt_tokens);
            Metrics::add(&engine.metrics.prefix_cache_hits, cached);
        }
        let first = engine.first_token_delay(prompt_tokens - cached);
        let pacer = Pacer::new(Instant::now(), first, job.max_tokens);
        Self {
            engine,
            slot,
            pacer,
            prompt_tokens,
            choices: job.prompts.len() as u64,
            chains,
        }
    }

    /// When the next batch of tokens is due, if any is left.
    fn next_due(&self) -> Option<Instant> {
        self.pacer.next_due()
    }

    /// Produces the tokens due now (per choice) and updates the accounting; `None`,
    /// producing nothing, while the engine is hung (then see [`Run::stall`]).
    fn advance(&mut self) -> Option<u32> {
        let engine = Arc::clone(&self.engine);
        engine.hang.unless_hung(|| self.produce())
    }

    /// Waits until the engine is unhung; generation then resumes from now, without a
    /// burst of the tokens that would have come meanwhile.
    async fn stall(&mut self) {
        self.engine.hang.wait_unhung().await;
        self.pacer.resume(Instant::now());
    }

    fn produce(&mut self) -> u32 {
        let k = self
            .pacer
            .take_due(Instant::now(), self.engine.token_interval_now());
        if !self.chains.is_empty() {
            // The first token ends the prefill: the prompt's blocks are now computed.
            self.engine
                .prefix_cache
                .insert(&std::mem::take(&mut self.chains));
        }
        Metrics::add(
            &self.engine.metrics.generation_tokens,
            u64::from(k) * self.choices,
        );
        let generated = u64::from(self.pacer.produced()) * self.choices;
        self.slot.set_kv_tokens(self.prompt_tokens + generated);
        k
    }

    /// Frees the slot and counts the request as served.
    fn finish(self) -> Usage {
        let usage = Usage::new(
            self.prompt_tokens,
            u64::from(self.pacer.produced()) * self.choices,
        );
        drop(self.slot);
        Metrics::add(&self.engine.metrics.requests_succeeded, 1);
        usage
    }
}

fn object(kind: Kind, chunk: bool) -> &'static str {
    match (kind, chunk) {
        (Kind::Chat, false) => "chat.completion",
        (Kind::Chat, true) => "chat.completion.chunk",
        (Kind::Completion, _) => "text_completion",
    }
}

fn generators(job: &Job) -> Vec<TokenGenerator> {
    job.prompts
        .iter()
        .map(|p| TokenGenerator::new(&p.text))
        .collect()
}

/// Non-streamed: sleeps through the generation, then answers in one JSON body.
async fn complete(mut run: Run, job: Job) -> Response<RespBody> {
    let mut gens = generators(&job);
    let mut texts = vec![String::new(); gens.len()];
    while let Some(due) = run.next_due() {
        sleep_until(due).await;
        let Some(k) = run.advance() else {
            run.stall().await;
            continue;
        };
        for (gen, text) in gens.iter_mut().zip(&mut texts) {
            for _ in 0..k {
                text.push_str(gen.next_token());
            }
        }
    }
    let engine = Arc::clone(&run.engine);
    let usage = run.finish();
    let id = job.id();
    let head = Head {
        id: &id,
        object: object(job.kind, false),
        created: CREATED,
        model: &job.model,
        system_fingerprint: &engine.label,
    };
    match job.kind {
        Kind::Chat => {
            let choices: Vec<ChatChoice> = texts
                .iter()
                .zip(0..)
                .map(|(text, index)| ChatChoice {
                    index,
                    message: Message {
                        role: "assistant",
                        content: text,
                    },
                    logprobs: None,
                    finish_reason: FINISH_REASON,
                })
                .collect();
            json_response(StatusCode::OK, &envelope(&head, &choices, Some(usage)))
        }
        Kind::Completion => {
            let choices: Vec<TextChoice> = texts
                .iter()
                .zip(0..)
                .map(|(text, index)| TextChoice {
                    index,
                    text,
                    logprobs: None,
                    finish_reason: Some(FINISH_REASON),
                })
                .collect();
            json_response(StatusCode::OK, &envelope(&head, &choices, Some(usage)))
        }
    }
}

fn envelope<'a, C>(head: &'a Head<'a>, choices: &'a [C], usage: Option<Usage>) -> Envelope<'a, C> {
    Envelope {
        head,
        choices,
        usage,
    }
}

/// Streamed: answers at once with an SSE body fed by a generator task.
fn stream(run: Run, job: Job) -> Response<RespBody> {
    let (tx, body) = ChannelBody::channel(STREAM_BUFFER);
    tokio::spawn(generate_stream(run, job, tx));
    let mut resp = Response::new(body.boxed());
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Appends one SSE event `data: <json>\n\n`.
fn push_event<T: Serialize>(out: &mut String, value: &T) {
    out.push_str("data: ");
    // Serializing these plain structs cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
    out.push_str("\n\n");
}

/// Pushes one chunk per choice; `piece(index)` gives its content and finish reason.
fn push_choice_events(
    out: &mut String,
    head: &Head<'_>,
    kind: Kind,
    choices: u32,
    mut piece: impl FnMut(u32) -> (Option<&'static str>, Option<&'static str>),
) {
    for index in 0..choices {
        let (content, finish_reason) = piece(index);
        match kind {
            Kind::Chat => {
                let choice = [ChatChunkChoice {
                    index,
                    delta: Delta {
                        role: None,
                        content,
                    },
                    logprobs: None,
                    finish_reason,
                }];
                push_event(out, &envelope(head, &choice, None));
            }
            Kind::Completion => {
                let choice = [TextChoice {
                    index,
                    text: content.unwrap_or(""),
                    logprobs: None,
                    finish_reason,
                }];
                push_event(out, &envelope(head, &choice, None));
            }
        }
    }
}

/// Generates the SSE events of a streamed job; stops (freeing the slot) as
/// soon as the client is gone.
async fn generate_stream(mut run: Run, job: Job, tx: mpsc::Sender<Bytes>) {
    let mut gens = generators(&job);
    let choices = gens.len() as u32;
    let id = job.id();
    let engine = Arc::clone(&run.engine);
    let head = Head {
        id: &id,
        object: object(job.kind, true),
        created: CREATED,
        model: &job.model,
        system_fingerprint: &engine.label,
    };
    let mut first = true;
    while let Some(due) = run.next_due() {
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = tx.closed() => return,
        }
        let Some(k) = run.advance() else {
            tokio::select! {
                _ = run.stall() => {}
                _ = tx.closed() => return,
            }
            continue;
        };
        let mut out = String::new();
        if first && job.kind == Kind::Chat {
            for index in 0..choices {
                let choice = [ChatChunkChoice {
                    index,
                    delta: Delta {
                        role: Some("assistant"),
                        content: Some(""),
                    },
                    logprobs: None,
                    finish_reason: None,
                }];
                push_event(&mut out, &envelope(&head, &choice, None));
            }
        }
        first = false;
        for _ in 0..k {
            push_choice_events(&mut out, &head, job.kind, choices, |i| {
                (Some(gens[i as usize].next_token()), None)
            });
        }
        if tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
    }
    let mut out = String::new();
    push_choice_events(&mut out, &head, job.kind, choices, |_| {
        (None, Some(FINISH_REASON))
    });
    let usage = run.finish();
    if job.include_usage {
        match job.kind {
            Kind::Chat => push_event(
                &mut out,
                &envelope::<ChatChunkChoice>(&head, &[], Some(usage)),
            ),
            Kind::Completion => {
                push_event(&mut out, &envelope::<TextChoice>(&head, &[], Some(usage)))
            }
        }
    }
    out.push_str("data: [DONE]\n\n");
    let _ = tx.send(Bytes::from(out)).await;
}
