//! What serve-sim answers and when: reading a generation request, the timing of its tokens, and
//! the bytes of each API's responses (OpenAI SSE and JSON, Ollama NDJSON and JSON).
//!
//! Bodies are written by hand into reused buffers rather than through serde: at thousands of
//! streaming requests per second on two shared cores every allocation per chunk shows. All text
//! the server makes up is plain ASCII words, and the model name is JSON-escaped once at start,
//! so nothing needs escaping per chunk.

use std::io::{self, Write as _};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::config::SimConfig;
use super::http::{push_chunk_frame, push_head, Head, LAST_CHUNK};
use super::pace::sleep_until_ns;
use crate::clock::{mono_ns, unix_ns};

/// Output words; each is one token by `crate::tokens::estimate`, so a client's local count
/// matches the server's exactly.
const WORDS: [&str; 16] = [
    " the", " quick", " brown", " fox", " jumps", " over", " lazy", " dog", " and", " then",
    " runs", " far", " into", " a", " green", " wood",
];

/// Most tokens one response carries, whatever the request asks: a non-streaming answer is built
/// in memory, and a request for 2^32 tokens must not take the server down.
const MAX_OUTPUT_TOKENS: u32 = 1 << 20;

/// The generation APIs served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    OpenAiChat,
    OpenAiCompletions,
    OllamaChat,
    OllamaGenerate,
}

impl Api {
    fn is_ollama(self) -> bool {
        matches!(self, Api::OllamaChat | Api::OllamaGenerate)
    }
}

/// A generation request, decided: how many tokens, streamed or not, with usage or not.
#[derive(Debug)]
pub(crate) struct Generation {
    pub api: Api,
    pub stream: bool,
    pub tokens: u32,
    pub prompt_tokens: u32,
    pub include_usage: bool,
    pub finish_reason: &'static str,
}

/// Why a generation request is refused before any generation.
#[derive(Debug, PartialEq)]
pub(crate) enum Reject {
    /// 400: the body is not the JSON object the API expects.
    BadRequest(String),
    /// 404: the request names a model this server does not serve.
    UnknownModel(String),
}

#[derive(Deserialize)]
struct GenRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    options: Option<OllamaOptions>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    prompt: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct OllamaOptions {
    #[serde(default)]
    num_predict: Option<i64>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<serde_json::Value>,
}

/// Reads a generation request body for `api`.
pub(crate) fn parse_generation(
    api: Api,
    body: &[u8],
    cfg: &SimConfig,
) -> Result<Generation, Reject> {
    let req: GenRequest = serde_json::from_slice(body)
        .map_err(|e| Reject::BadRequest(format!("invalid JSON body: {e}")))?;
    if let Some(model) = &req.model {
        let tagged = model
            .strip_suffix(":latest")
            .is_some_and(|m| m == cfg.model);
        if *model != cfg.model && !tagged {
            return Err(Reject::UnknownModel(model.clone()));
        }
    }
    // Negative limits mean "no limit" (Ollama's num_predict -1).
    let limit = |v: Option<i64>| v.filter(|n| *n >= 0).map(|n| n.min(u32::MAX as i64) as u32);
    let requested = if api.is_ollama() {
        limit(req.options.as_ref().and_then(|o| o.num_predict))
    } else {
        limit(req.max_completion_tokens).or(limit(req.max_tokens))
    };
    let tokens = cfg.output_tokens_for(requested).min(MAX_OUTPUT_TOKENS);
    let mut prompt_tokens = 0u32;
    for m in req.messages.iter().flatten() {
        prompt_tokens += m.content.as_ref().map_or(0, value_tokens);
    }
    prompt_tokens += req.prompt.as_ref().map_or(0, value_tokens);
    Ok(Generation {
        api,
        // Ollama streams unless told not to; OpenAI only when asked.
        stream: req.stream.unwrap_or(api.is_ollama()),
        tokens,
        prompt_tokens,
        include_usage: cfg.usage
            && req
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        finish_reason: if requested == Some(tokens) {
            "length"
        } else {
            "stop"
        },
    })
}

/// Tokens of a prompt or message content: a string, a list of strings or text parts, or a list
/// of token ids.
fn value_tokens(v: &serde_json::Value) -> u32 {
    use serde_json::Value;
    match v {
        Value::String(s) => crate::tokens::estimate(s),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Number(_) => 1,
                Value::Object(part) => part.get("text").map_or(0, value_tokens),
                other => value_tokens(other),
            })
            .sum(),
        _ => 0,
    }
}

/// When each token is due, as absolute CLOCK_MONOTONIC deadlines chained from the request's
/// read time: a late wake-up delays one write but not the ones after it.
pub(crate) struct Schedule {
    paced: bool,
    next_ns: u64,
    first: bool,
    ttft_ns: f64,
    itl_ns: f64,
    jitter: f64,
    rng: SmallRng,
}

impl Schedule {
    /// The schedule of a request read at `t_read_ns`; `seed` makes its jitter reproducible.
    pub fn new(cfg: &SimConfig, t_read_ns: u64, seed: u64) -> Schedule {
        Schedule {
            paced: cfg.paced(),
            next_ns: t_read_ns,
            first: true,
            ttft_ns: cfg.ttft.as_nanos() as f64,
            itl_ns: cfg.itl.as_nanos() as f64,
            jitter: cfg.jitter,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn draw(&mut self, d: f64) -> u64 {
        if self.jitter == 0.0 || d == 0.0 {
            return d as u64;
        }
        (d * self.rng.random_range(1.0 - self.jitter..=1.0 + self.jitter)) as u64
    }

    /// Deadline of the chunk carrying the next `k` tokens: when the last of them is generated.
    pub(crate) fn chunk_due(&mut self, k: u32) -> u64 {
        for _ in 0..k {
            let gap = if self.first {
                self.ttft_ns
            } else {
                self.itl_ns
            };
            self.first = false;
            self.next_ns += self.draw(gap);
        }
        self.next_ns
    }

    /// Waits until the next `k` tokens are due. Unpaced servers return at once and never touch
    /// a timer.
    async fn wait_chunk(&mut self, k: u32) {
        if self.paced {
            let due = self.chunk_due(k);
            sleep_until_ns(due).await;
        }
    }
}

/// Per-request text that every chunk repeats, built once.
pub(crate) struct Texts {
    /// The JSON object up to and including `"choices":[` (OpenAI), or up to `"created_at":"…",`
    /// (Ollama).
    prefix: String,
    word0: usize,
}

impl Texts {
    /// Texts for request number `ordinal` of `api` serving the JSON-quoted `model_json`.
    pub fn new(api: Api, ordinal: u64, model_json: &str) -> Texts {
        let now_ns = unix_ns();
        let prefix = match api {
            Api::OpenAiChat => format!(
                r#"{{"id":"chatcmpl-sim{ordinal}","object":"chat.completion.chunk","created":{},"model":{model_json},"choices":["#,
                now_ns / 1_000_000_000
            ),
            Api::OpenAiCompletions => format!(
                r#"{{"id":"cmpl-sim{ordinal}","object":"text_completion","created":{},"model":{model_json},"choices":["#,
                now_ns / 1_000_000_000
            ),
            Api::OllamaChat | Api::OllamaGenerate => format!(
                r#"{{"model":{model_json},"created_at":"{}","#,
                rfc3339(now_ns)
            ),
        };
        Texts {
            prefix,
            word0: (ordinal % WORDS.len() as u64) as usize,
        }
    }

    fn push_words(&self, out: &mut Vec<u8>, first_token: u32, k: u32) {
        for i in first_token..first_token + k {
            out.extend_from_slice(WORDS[(self.word0 + i as usize) % WORDS.len()].as_bytes());
        }
    }
}

/// The payload of one content chunk carrying tokens `first..first+k`, framed for the stream
/// (SSE event or NDJSON line).
fn content_payload(out: &mut Vec<u8>, api: Api, t: &Texts, first: u32, k: u32) {
    match api {
        Api::OpenAiChat => {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(t.prefix.as_bytes());
            out.extend_from_slice(br#"{"index":0,"delta":{"content":""#);
            t.push_words(out, first, k);
            out.extend_from_slice(b"\"},\"finish_reason\":null}]}\n\n");
        }
        Api::OpenAiCompletions => {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(t.prefix.as_bytes());
            out.extend_from_slice(br#"{"index":0,"text":""#);
            t.push_words(out, first, k);
            out.extend_from_slice(b"\",\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        }
        Api::OllamaChat => {
            out.extend_from_slice(t.prefix.as_bytes());
            out.extend_from_slice(br#""message":{"role":"assistant","content":""#);
            t.push_words(out, first, k);
            out.extend_from_slice(b"\"},\"done\":false}\n");
        }
        Api::OllamaGenerate => {
            out.extend_from_slice(t.prefix.as_bytes());
            out.extend_from_slice(br#""response":""#);
            t.push_words(out, first, k);
            out.extend_from_slice(b"\",\"done\":false}\n");
        }
    }
}

fn usage_json(out: &mut Vec<u8>, g: &Generation) {
    let _ = write!(
        out,
        r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
        g.prompt_tokens,
        g.tokens,
        g.prompt_tokens as u64 + g.tokens as u64
    );
}

/// Ollama's closing fields: counts and durations as Ollama reports them (ns).
fn ollama_done_fields(out: &mut Vec<u8>, g: &Generation, t_read_ns: u64) {
    let total = mono_ns().saturating_sub(t_read_ns);
    let _ = write!(
        out,
        r#""done":true,"done_reason":"{}","total_duration":{total},"load_duration":0,"prompt_eval_count":{},"prompt_eval_duration":0,"eval_count":{},"eval_duration":{total}}}"#,
        g.finish_reason, g.prompt_tokens, g.tokens
    );
}

/// The non-content frames that close a stream: finish (and usage) chunks, `[DONE]` or Ollama's
/// final line, and the terminating zero-length chunk. They are emitted at one instant, so they
/// go out in one write.
fn push_tail(out: &mut Vec<u8>, scratch: &mut Vec<u8>, g: &Generation, t: &Texts, t_read: u64) {
    scratch.clear();
    match g.api {
        Api::OpenAiChat | Api::OpenAiCompletions => {
            scratch.extend_from_slice(b"data: ");
            scratch.extend_from_slice(t.prefix.as_bytes());
            if g.api == Api::OpenAiChat {
                scratch.extend_from_slice(br#"{"index":0,"delta":{},"finish_reason":""#);
            } else {
                scratch.extend_from_slice(
                    br#"{"index":0,"text":"","logprobs":null,"finish_reason":""#,
                );
            }
            scratch.extend_from_slice(g.finish_reason.as_bytes());
            scratch.extend_from_slice(b"\"}]}\n\n");
            push_chunk_frame(out, scratch);
            if g.include_usage {
                scratch.clear();
                scratch.extend_from_slice(b"data: ");
                scratch.extend_from_slice(t.prefix.as_bytes());
                scratch.extend_from_slice(br#"],"usage":"#);
                usage_json(scratch, g);
                scratch.extend_from_slice(b"}\n\n");
                push_chunk_frame(out, scratch);
            }
            push_chunk_frame(out, b"data: [DONE]\n\n");
        }
        Api::OllamaChat | Api::OllamaGenerate => {
            scratch.extend_from_slice(t.prefix.as_bytes());
            if g.api == Api::OllamaChat {
                scratch.extend_from_slice(br#""message":{"role":"assistant","content":""},"#);
            } else {
                scratch.extend_from_slice(br#""response":"","#);
            }
            ollama_done_fields(scratch, g, t_read);
            scratch.push(b'\n');
            push_chunk_frame(out, scratch);
        }
    }
    out.extend_from_slice(LAST_CHUNK);
}

/// What happened while answering, for the ground truth.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub t_head_ns: Option<u64>,
    pub chunks: Vec<[u64; 2]>,
    pub chunks_end_ns: Vec<u64>,
    pub t_end_ns: u64,
    /// The write that failed, if one did; the connection is then unusable.
    pub error: Option<io::Error>,
}

/// Reused buffers of one connection.
#[derive(Default)]
pub(crate) struct Buffers {
    /// Bytes of one write.
    pub out: Vec<u8>,
    /// One chunk's payload before framing.
    pub scratch: Vec<u8>,
}

/// Per-request inputs of [`answer`].
pub(crate) struct Request<'a> {
    pub gen: &'a Generation,
    pub texts: &'a Texts,
    pub t_read_ns: u64,
    pub close: bool,
    /// Send the role-only first chunk (OpenAI chat only).
    pub prelude: bool,
    /// Tokens per content chunk, at least 1.
    pub tokens_per_chunk: u32,
    /// Whether to keep chunk times (only when a ground truth is written).
    pub record: bool,
}

/// Answers a generation request on `w`: streamed chunk by chunk on schedule, or in one write
/// once the last token is due.
pub(crate) async fn answer<W: AsyncWrite + Unpin>(
    w: &mut W,
    req: Request<'_>,
    sched: &mut Schedule,
    bufs: &mut Buffers,
) -> Outcome {
    let mut outcome = Outcome::default();
    let result = if req.gen.stream {
        stream(w, &req, sched, bufs, &mut outcome).await
    } else {
        whole(w, &req, sched, bufs, &mut outcome).await
    };
    outcome.t_end_ns = mono_ns();
    outcome.error = result.err();
    outcome
}

async fn stream<W: AsyncWrite + Unpin>(
    w: &mut W,
    req: &Request<'_>,
    sched: &mut Schedule,
    bufs: &mut Buffers,
    outcome: &mut Outcome,
) -> io::Result<()> {
    let g = req.gen;
    let Buffers { out, scratch } = bufs;
    out.clear();
    let content_type = if g.api.is_ollama() {
        "application/x-ndjson"
    } else {
        "text/event-stream"
    };
    push_head(
        out,
        Head {
            status: 200,
            content_type,
            content_length: None,
            close: req.close,
        },
    );
    outcome.t_head_ns = Some(mono_ns());
    w.write_all(out).await?;

    if g.api == Api::OpenAiChat && req.prelude {
        scratch.clear();
        scratch.extend_from_slice(b"data: ");
        scratch.extend_from_slice(req.texts.prefix.as_bytes());
        scratch.extend_from_slice(
            br#"{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        );
        scratch.extend_from_slice(b"\n\n");
        out.clear();
        push_chunk_frame(out, scratch);
        w.write_all(out).await?;
    }

    let per_chunk = req.tokens_per_chunk.max(1);
    if req.record {
        // Capped: max_tokens is the client's to choose, memory is ours.
        let n_chunks = (g.tokens.div_ceil(per_chunk) as usize).min(4096);
        outcome.chunks.reserve_exact(n_chunks);
        outcome.chunks_end_ns.reserve_exact(n_chunks);
    }
    let mut sent = 0u32;
    while sent < g.tokens {
        let k = per_chunk.min(g.tokens - sent);
        scratch.clear();
        content_payload(scratch, g.api, req.texts, sent, k);
        out.clear();
        push_chunk_frame(out, scratch);
        sched.wait_chunk(k).await;
        let t0 = mono_ns();
        w.write_all(out).await?;
        if req.record {
            outcome.chunks.push([t0, k as u64]);
            outcome.chunks_end_ns.push(mono_ns());
        }
        sent += k;
    }

    out.clear();
    push_tail(out, scratch, g, req.texts, req.t_read_ns);
    w.write_all(out).await?;
    Ok(())
}

async fn whole<W: AsyncWrite + Unpin>(
    w: &mut W,
    req: &Request<'_>,
    sched: &mut Schedule,
    bufs: &mut Buffers,
    outcome: &mut Outcome,
) -> io::Result<()> {
    let g = req.gen;
    let Buffers { out, scratch } = bufs;
    // The whole answer is ready when its last token is.
    sched.wait_chunk(g.tokens).await;
    scratch.clear();
    whole_body(scratch, g, req.texts, req.t_read_ns);
    out.clear();
    push_head(
        out,
        Head {
            status: 200,
            content_type: "application/json",
            content_length: Some(scratch.len()),
            close: req.close,
        },
    );
    out.extend_from_slice(scratch);
    let t0 = mono_ns();
    outcome.t_head_ns = Some(t0);
    w.write_all(out).await?;
    if req.record && g.tokens > 0 {
        outcome.chunks.push([t0, g.tokens as u64]);
        outcome.chunks_end_ns.push(mono_ns());
    }
    Ok(())
}

/// The non-streaming JSON answer.
fn whole_body(out: &mut Vec<u8>, g: &Generation, t: &Texts, t_read: u64) {
    match g.api {
        Api::OpenAiChat | Api::OpenAiCompletions => {
            // The chunk prefix with the non-streaming object type.
            let prefix = t
                .prefix
                .replacen("chat.completion.chunk", "chat.completion", 1);
            out.extend_from_slice(prefix.as_bytes());
            if g.api == Api::OpenAiChat {
                out.extend_from_slice(br#"{"index":0,"message":{"role":"assistant","content":""#);
                t.push_words(out, 0, g.tokens);
                out.extend_from_slice(b"\"},\"finish_reason\":\"");
            } else {
                out.extend_from_slice(br#"{"index":0,"text":""#);
                t.push_words(out, 0, g.tokens);
                out.extend_from_slice(b"\",\"logprobs\":null,\"finish_reason\":\"");
            }
            out.extend_from_slice(g.finish_reason.as_bytes());
            out.extend_from_slice(br#""}],"usage":"#);
            usage_json(out, g);
            out.push(b'}');
        }
        Api::OllamaChat | Api::OllamaGenerate => {
            out.extend_from_slice(t.prefix.as_bytes());
            if g.api == Api::OllamaChat {
                out.extend_from_slice(br#""message":{"role":"assistant","content":""#);
                t.push_words(out, 0, g.tokens);
                out.extend_from_slice(b"\"},");
            } else {
                out.extend_from_slice(br#""response":""#);
                t.push_words(out, 0, g.tokens);
                out.extend_from_slice(b"\",");
            }
            ollama_done_fields(out, g, t_read);
        }
    }
}

/// `GET /v1/models`.
pub(crate) fn models_body(model_json: &str) -> Vec<u8> {
    format!(
        r#"{{"object":"list","data":[{{"id":{model_json},"object":"model","created":0,"owned_by":"serve-sim"}}]}}"#
    )
    .into_bytes()
}

/// `GET /api/tags`.
pub(crate) fn tags_body(model_json: &str) -> Vec<u8> {
    format!(r#"{{"models":[{{"name":{model_json},"model":{model_json}}}]}}"#).into_bytes()
}

/// An OpenAI-style error object (Ollama clients read `error` too, as a string or object).
pub(crate) fn error_body(message: &str, kind: &str, code: u16) -> Vec<u8> {
    serde_json::json!({"error": {"message": message, "type": kind, "code": code}})
        .to_string()
        .into_bytes()
}

/// Unix ns as RFC 3339 UTC with milliseconds, as Ollama's `created_at`.
fn rfc3339(unix_ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(unix_ns as i128)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(api: Api, body: &str) -> Result<Generation, Reject> {
        parse_generation(api, body.as_bytes(), &SimConfig::default())
    }

    #[test]
    fn words_are_one_token_each() {
        for w in WORDS {
            assert_eq!(crate::tokens::estimate(w), 1, "{w:?}");
        }
    }

    #[test]
    fn request_parsing() {
        let g = gen(
            Api::OpenAiChat,
            r#"{"model":"sim-model","messages":[{"role":"user","content":"hello there"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(g.stream && g.include_usage);
        assert_eq!(
            (g.tokens, g.prompt_tokens, g.finish_reason),
            (5, 2, "length")
        );

        let g = gen(Api::OpenAiCompletions, r#"{"prompt":"a b c"}"#).unwrap();
        assert!(!g.stream);
        assert_eq!(
            (g.tokens, g.prompt_tokens, g.finish_reason),
            (32, 3, "stop")
        );

        let g = gen(
            Api::OllamaGenerate,
            r#"{"model":"sim-model:latest","prompt":"x","options":{"num_predict":-1}}"#,
        )
        .unwrap();
        assert!(g.stream);
        assert_eq!(g.tokens, 32);

        let g = gen(
            Api::OllamaChat,
            r#"{"stream":false,"options":{"num_predict":7}}"#,
        )
        .unwrap();
        assert!(!g.stream);
        assert_eq!(g.tokens, 7);

        assert_eq!(
            gen(Api::OpenAiChat, r#"{"model":"other"}"#).unwrap_err(),
            Reject::UnknownModel("other".into())
        );
        assert!(matches!(
            gen(Api::OpenAiChat, "{"),
            Err(Reject::BadRequest(_))
        ));
        assert!(matches!(
            gen(Api::OpenAiChat, ""),
            Err(Reject::BadRequest(_))
        ));
        assert!(matches!(
            gen(Api::OpenAiChat, "[1]"),
            Err(Reject::BadRequest(_))
        ));
    }

    #[test]
    fn output_tokens_flag_caps_requests() {
        let cfg = SimConfig {
            output_tokens: Some(10),
            ..SimConfig::default()
        };
        let g = parse_generation(Api::OpenAiChat, br#"{"max_tokens":100}"#, &cfg).unwrap();
        assert_eq!((g.tokens, g.finish_reason), (10, "stop"));
        let g = parse_generation(Api::OpenAiChat, br#"{"max_tokens":4}"#, &cfg).unwrap();
        assert_eq!((g.tokens, g.finish_reason), (4, "length"));
    }

    #[test]
    fn payloads_are_json() {
        let model = serde_json::to_string("m\"odel").unwrap();
        for api in [
            Api::OpenAiChat,
            Api::OpenAiCompletions,
            Api::OllamaChat,
            Api::OllamaGenerate,
        ] {
            let t = Texts::new(api, 3, &model);
            let mut out = Vec::new();
            content_payload(&mut out, api, &t, 0, 2);
            let text = std::str::from_utf8(&out).unwrap();
            let json = text.strip_prefix("data: ").unwrap_or(text).trim_end();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["model"], "m\"odel");
            let g = Generation {
                api,
                stream: false,
                tokens: 3,
                prompt_tokens: 2,
                include_usage: true,
                finish_reason: "stop",
            };
            out.clear();
            whole_body(&mut out, &g, &t, mono_ns());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let content = match api {
                Api::OpenAiChat => &v["choices"][0]["message"]["content"],
                Api::OpenAiCompletions => &v["choices"][0]["text"],
                Api::OllamaChat => &v["message"]["content"],
                Api::OllamaGenerate => &v["response"],
            };
            assert_eq!(crate::tokens::estimate(content.as_str().unwrap()), 3);
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_709_251_199_123_000_000),
            "2024-02-29T23:59:59.123Z"
        );
    }
}
