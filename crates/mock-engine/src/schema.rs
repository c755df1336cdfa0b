//! OpenAI-shaped response bodies and stream chunks.

use serde::Serialize;

/// Value of `created` in every response (fixed, for byte-identical answers).
pub(crate) const CREATED: u64 = 0;

/// Token usage of a request.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
}

impl Usage {
    /// Usage from prompt and completion token counts.
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Fields shared by every response and chunk.
#[derive(Debug, Serialize)]
pub(crate) struct Head<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) system_fingerprint: &'a str,
}

/// A complete (non-streamed) response, or one stream chunk.
#[derive(Debug, Serialize)]
pub(crate) struct Envelope<'a, C> {
    #[serde(flatten)]
    pub(crate) head: &'a Head<'a>,
    pub(crate) choices: &'a [C],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Usage>,
}

/// Assistant message of a chat choice.
#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
}

/// A non-streamed chat choice.
#[derive(Debug, Serialize)]
pub(crate) struct ChatChoice<'a> {
    pub(crate) index: u32,
    pub(crate) message: Message<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: &'static str,
}

/// Incremental message of a chat stream chunk.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<&'a str>,
}

/// A chat stream chunk choice.
#[derive(Debug, Serialize)]
pub(crate) struct ChatChunkChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: Delta<'a>,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

/// A completions choice (complete response or stream chunk).
#[derive(Debug, Serialize)]
pub(crate) struct TextChoice<'a> {
    pub(crate) index: u32,
    pub(crate) text: &'a str,
    pub(crate) logprobs: Option<()>,
    pub(crate) finish_reason: Option<&'static str>,
}

/// `GET /v1/models` body.
#[derive(Debug, Serialize)]
pub(crate) struct ModelList<'a> {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<ModelCard<'a>>,
}

/// One served model.
#[derive(Debug, Serialize)]
pub(crate) struct ModelCard<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) owned_by: &'static str,
}
