//! One streamed payload (an SSE `data:` or an NDJSON line) or a whole non-streamed body, decoded
//! into what the request record needs: did it carry content, how many tokens, usage, end, error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::flavour::ApiFlavour;
use crate::tokens;

/// Token counts the server reported (OpenAI `usage`, Ollama `prompt_eval_count`/`eval_count`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens, when reported.
    pub prompt_tokens: Option<u64>,
    /// Output tokens so far (cumulative when the server streams usage on every chunk).
    pub completion_tokens: Option<u64>,
}

/// What one payload told us; the load loop turns a run of these into a request record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Carried non-empty content or reasoning content; only such chunks count for TTFT and ITL.
    pub content: bool,
    /// Tokens this chunk carries: the delta of cumulative usage when the server streams it on
    /// every chunk, else a local estimate of its text; always 0 when `content` is false.
    pub tokens: u32,
    /// Usage carried by this payload; with continuous usage every chunk has one, so keep the last.
    pub usage: Option<Usage>,
    /// The server said the response is complete: `[DONE]`, Ollama `"done": true`, or a whole body.
    pub done: bool,
    /// Why generation stopped (`stop`, `length`, Ollama's `done_reason`), when the payload says.
    pub finish_reason: Option<String>,
    /// An error object the server put in the stream or body.
    pub error: Option<String>,
}

impl ChunkInfo {
    /// The bare end-of-stream marker, for an SSE `data: [DONE]`.
    pub fn done_marker() -> Self {
        ChunkInfo {
            done: true,
            ..ChunkInfo::default()
        }
    }
}

/// A payload that is not the JSON its flavour sends.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of the wrong shape (a field of an unexpected type).
    #[error("malformed JSON in response: {0}")]
    Json(#[from] serde_json::Error),
}

// ---- wire shapes: borrowed, only the fields we read, everything optional ----

/// Deserialises a JSON array (or null) keeping only its first element, so the per-chunk
/// `choices` list costs no allocation.
pub(super) struct First<T>(pub(super) Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(First(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(First(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_option(V(PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WireUsage {
    pub(super) prompt_tokens: Option<u64>,
    pub(super) completion_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WireDelta<'a> {
    #[serde(borrow)]
    pub(super) content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) reasoning: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WireChoice<'a> {
    /// Streamed chat.
    #[serde(borrow)]
    pub(super) delta: Option<WireDelta<'a>>,
    /// Non-streamed chat.
    #[serde(borrow)]
    pub(super) message: Option<WireDelta<'a>>,
    /// Completions, streamed or not.
    #[serde(borrow)]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) finish_reason: Option<Cow<'a, str>>,
}

/// Any OpenAI-compatible chunk or body (chat or completions; vLLM, SGLang, TGI, llama.cpp).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WireOpenAi<'a> {
    #[serde(borrow)]
    pub(super) choices: First<WireChoice<'a>>,
    pub(super) usage: Option<WireUsage>,
    /// Rare, and a string or an object depending on the server, so a `Value` is fine here.
    pub(super) error: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireOllamaMessage<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thinking: Option<Cow<'a, str>>,
}

/// Any Ollama `/api/chat` or `/api/generate` line or body.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireOllama<'a> {
    #[serde(borrow)]
    message: Option<WireOllamaMessage<'a>>,
    #[serde(borrow)]
    response: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thinking: Option<Cow<'a, str>>,
    done: bool,
    #[serde(borrow)]
    done_reason: Option<Cow<'a, str>>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<serde_json::Value>,
}

// ---- decoding ----

/// The generated text of a payload, split as the server sent it.
#[derive(Default)]
struct Text<'s> {
    content: &'s str,
    reasoning: &'s str,
}

impl Text<'_> {
    fn is_empty(&self) -> bool {
        self.content.is_empty() && self.reasoning.is_empty()
    }

    // Summed per part: the parts are separate streams, and joining them would allocate.
    fn estimate(&self) -> u32 {
        tokens::estimate(self.content) + tokens::estimate(self.reasoning)
    }
}

fn opt_str<'s>(s: &'s Option<Cow<'_, str>>) -> &'s str {
    s.as_deref().unwrap_or("")
}

fn delta_text<'s>(d: &'s WireDelta<'_>) -> Text<'s> {
    // vLLM renamed `reasoning_content` to `reasoning`; a server sends one or the other.
    let reasoning = match opt_str(&d.reasoning_content) {
        "" => opt_str(&d.reasoning),
        r => r,
    };
    Text {
        content: opt_str(&d.content),
        reasoning,
    }
}

/// Servers put errors as a string (Ollama, TGI) or as `{"message": ...}` (OpenAI, vLLM).
fn error_text(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(mut o) => match o.remove("message") {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => Some(serde_json::Value::Object(o).to_string()),
        },
        other => Some(other.to_string()),
    }
}

/// TGI sends `"finish_reason": ""` on every completions chunk until the last.
fn finish(reason: &Option<Cow<'_, str>>) -> Option<String> {
    reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

fn is_done_marker(payload: &[u8]) -> bool {
    payload.trim_ascii() == b"[DONE]"
}

/// The decoded payload before tokens are assigned; tokens depend on decoder state.
struct Decoded {
    info: ChunkInfo,
    estimate: u32,
}

fn decode_openai(flavour: ApiFlavour, payload: &[u8], whole: bool) -> Result<Decoded, ParseError> {
    if !whole && is_done_marker(payload) {
        return Ok(Decoded {
            info: ChunkInfo::done_marker(),
            estimate: 0,
        });
    }
    let w = match super::scan::openai(payload) {
        Some(w) => w,
        None => serde_json::from_slice::<WireOpenAi<'_>>(payload)?,
    };
    let (text, finish_reason) = match &w.choices.0 {
        None => (Text::default(), None),
        Some(c) => {
            let text = if flavour == ApiFlavour::OpenAiCompletions {
                Text {
                    content: opt_str(&c.text),
                    reasoning: "",
                }
            } else {
                // A server answering `stream: false` anyway, or vice versa, still parses.
                let d = if whole {
                    c.message.as_ref().or(c.delta.as_ref())
                } else {
                    c.delta.as_ref().or(c.message.as_ref())
                };
                d.map(delta_text).unwrap_or_default()
            };
            (text, finish(&c.finish_reason))
        }
    };
    let info = ChunkInfo {
        content: !text.is_empty(),
        tokens: 0,
        usage: w.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }),
        done: whole,
        finish_reason,
        error: error_text(w.error),
    };
    Ok(Decoded {
        estimate: text.estimate(),
        info,
    })
}

fn decode_ollama(payload: &[u8], whole: bool) -> Result<Decoded, ParseError> {
    let w: WireOllama<'_> = serde_json::from_slice(payload)?;
    // Chat puts text in `message`, generate in `response`; read both so either flavour copes.
    let text = match &w.message {
        Some(m) => Text {
            content: opt_str(&m.content),
            reasoning: opt_str(&m.thinking),
        },
        None => Text {
            content: opt_str(&w.response),
            reasoning: opt_str(&w.thinking),
        },
    };
    let usage = (w.prompt_eval_count.is_some() || w.eval_count.is_some()).then_some(Usage {
        prompt_tokens: w.prompt_eval_count,
        completion_tokens: w.eval_count,
    });
    let info = ChunkInfo {
        content: !text.is_empty(),
        tokens: 0,
        usage,
        done: w.done || whole,
        finish_reason: finish(&w.done_reason),
        error: error_text(w.error),
    };
    Ok(Decoded {
        estimate: text.estimate(),
        info,
    })
}

fn decode_raw(flavour: ApiFlavour, payload: &[u8], whole: bool) -> Result<Decoded, ParseError> {
    if flavour.is_ollama() {
        decode_ollama(payload, whole)
    } else {
        decode_openai(flavour, payload, whole)
    }
}

/// Stateless decode of one streamed payload: tokens are always the local estimate. Use
/// [`ChunkDecoder`] in a stream so continuous usage gives exact per-chunk counts.
pub fn parse_chunk(flavour: ApiFlavour, payload: &[u8]) -> Result<ChunkInfo, ParseError> {
    let d = decode_raw(flavour, payload, false)?;
    let mut info = d.info;
    if info.content {
        info.tokens = d.estimate;
    }
    Ok(info)
}

/// Decodes one OpenAI chat chunk (`choices[0].delta`); see [`parse_chunk`].
pub fn parse_openai_chat(payload: &[u8]) -> Result<ChunkInfo, ParseError> {
    parse_chunk(ApiFlavour::OpenAiChat, payload)
}

/// Decodes one OpenAI completions chunk (`choices[0].text`); see [`parse_chunk`].
pub fn parse_openai_completions(payload: &[u8]) -> Result<ChunkInfo, ParseError> {
    parse_chunk(ApiFlavour::OpenAiCompletions, payload)
}

/// Decodes one Ollama `/api/chat` line (`message.content`, `message.thinking`); see [`parse_chunk`].
pub fn parse_ollama_chat(payload: &[u8]) -> Result<ChunkInfo, ParseError> {
    parse_chunk(ApiFlavour::OllamaChat, payload)
}

/// Decodes one Ollama `/api/generate` line (`response`, `thinking`); see [`parse_chunk`].
pub fn parse_ollama_generate(payload: &[u8]) -> Result<ChunkInfo, ParseError> {
    parse_chunk(ApiFlavour::OllamaGenerate, payload)
}

/// Decodes a whole non-streamed response body: `content`/`tokens` cover the full text, with
/// `tokens` taken from the server's completion count when it gives one; `done` is always true.
pub fn decode_full(flavour: ApiFlavour, body: &[u8]) -> Result<ChunkInfo, ParseError> {
    let d = decode_raw(flavour, body, true)?;
    let mut info = d.info;
    if info.content {
        let reported = info.usage.and_then(|u| u.completion_tokens);
        info.tokens = reported.map_or(d.estimate, |n| n.min(u32::MAX as u64) as u32);
    }
    Ok(info)
}

/// Per-stream decoder: remembers the last cumulative completion count so that, when the server
/// sends usage on every chunk (vLLM `continuous_usage_stats`), each content chunk gets the exact
/// number of tokens it carries instead of an estimate.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    flavour: ApiFlavour,
    last_completion_tokens: Option<u64>,
}

impl ChunkDecoder {
    /// A decoder for one response stream of `flavour`.
    pub fn new(flavour: ApiFlavour) -> Self {
        ChunkDecoder {
            flavour,
            last_completion_tokens: None,
        }
    }

    /// The flavour this decoder reads.
    pub fn flavour(&self) -> ApiFlavour {
        self.flavour
    }

    /// Decodes one payload (an SSE `data:` value, `[DONE]` included, or an NDJSON line).
    pub fn decode(&mut self, payload: &[u8]) -> Result<ChunkInfo, ParseError> {
        let d = decode_raw(self.flavour, payload, false)?;
        let mut info = d.info;
        if !info.content {
            // Tokens a server counts in a chunk without text (a detokeniser holding back a
            // partial character) are credited to the next content chunk, which shows them.
            return Ok(info);
        }
        let cumulative = info.usage.and_then(|u| u.completion_tokens);
        info.tokens = match (cumulative, self.last_completion_tokens) {
            (Some(now), Some(before)) => clamp(now.saturating_sub(before)),
            // First usage we see: continuous usage counts from 0, but usage that rides only on
            // the final chunk (finish_reason set) is the whole output, not this chunk's share.
            (Some(now), None) if info.finish_reason.is_none() => clamp(now),
            _ => d.estimate,
        };
        if let Some(now) = cumulative {
            if info.finish_reason.is_none() || self.last_completion_tokens.is_some() {
                self.last_completion_tokens = Some(now);
            }
        }
        Ok(info)
    }
}

fn clamp(n: u64) -> u32 {
    n.min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(p: &str) -> ChunkInfo {
        parse_openai_chat(p.as_bytes()).expect(p)
    }

    #[test]
    fn role_only_prelude_is_not_content() {
        for p in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":null},"logprobs":null}]}"#,
        ] {
            let c = chat(p);
            assert!(!c.content, "{p}");
            assert_eq!(c.tokens, 0, "{p}");
            assert!(!c.done);
        }
    }

    #[test]
    fn role_with_content_is_content() {
        let c = chat(
            r#"{"id":"chatcmpl-fast","object":"chat.completion.chunk","created":1700000000,"model":"gt-model","choices":[{"index":0,"delta":{"role":"assistant","content":" hello"},"finish_reason":null}]}"#,
        );
        assert!(c.content);
        assert_eq!(c.tokens, 1);
        assert_eq!(c.usage, None);
        assert_eq!(c.finish_reason, None);
    }

    #[test]
    fn escaped_content_is_read() {
        let c = chat(r#"{"choices":[{"delta":{"content":"\"a\"\n\u00e9"}}]}"#);
        assert!(c.content);
        assert_eq!(c.tokens, tokens::estimate("\"a\"\n\u{e9}"));
    }

    #[test]
    fn reasoning_counts_as_content() {
        for p in [
            r#"{"choices":[{"delta":{"reasoning_content":"Let me think","content":null}}]}"#,
            r#"{"choices":[{"delta":{"reasoning":"Let me think"}}]}"#,
            r#"{"choices":[{"delta":{"content":"","reasoning_content":"Let me think"}}]}"#,
        ] {
            let c = chat(p);
            assert!(c.content, "{p}");
            assert_eq!(c.tokens, 3, "{p}");
        }
    }

    #[test]
    fn usage_in_empty_choices_chunk() {
        let c = chat(
            r#"{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":16,"completion_tokens":16,"total_tokens":32}}"#,
        );
        assert!(!c.content);
        assert_eq!(c.tokens, 0);
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: Some(16),
                completion_tokens: Some(16)
            })
        );
        assert!(!c.done);
    }

    #[test]
    fn usage_on_finish_chunk() {
        let p = r#"{"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":16,"completion_tokens":16,"total_tokens":32}}"#;
        let mut dec = ChunkDecoder::new(ApiFlavour::OpenAiChat);
        for c in [chat(p), dec.decode(p.as_bytes()).unwrap()] {
            assert!(!c.content);
            assert_eq!(c.tokens, 0);
            assert_eq!(c.finish_reason.as_deref(), Some("length"));
            assert_eq!(c.usage.unwrap().completion_tokens, Some(16));
        }
    }

    #[test]
    fn missing_or_null_choices_do_not_crash() {
        for p in [
            "{}",
            r#"{"choices":null}"#,
            r#"{"choices":[{}]}"#,
            r#"{"choices":[{"delta":null}]}"#,
            r#"{"usage":null,"choices":[]}"#,
        ] {
            let c = chat(p);
            assert!(!c.content, "{p}");
            assert_eq!(c.usage, None, "{p}");
        }
    }

    #[test]
    fn only_first_choice_is_read() {
        let c = chat(r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b c d"}}]}"#);
        assert_eq!(c.tokens, 1);
    }

    #[test]
    fn done_marker() {
        let mut dec = ChunkDecoder::new(ApiFlavour::OpenAiChat);
        assert_eq!(dec.decode(b"[DONE]").unwrap(), ChunkInfo::done_marker());
        assert!(chat(" [DONE] ").done);
    }

    #[test]
    fn completions_text_and_tgi_empty_finish_reason() {
        let c = parse_openai_completions(
            br#"{"id":"","object":"text_completion","created":1,"model":"m","system_fingerprint":"3.0","choices":[{"index":0,"text":" world","logprobs":null,"finish_reason":""}]}"#,
        )
        .unwrap();
        assert!(c.content);
        assert_eq!(c.tokens, 1);
        assert_eq!(c.finish_reason, None);
        let c = parse_openai_completions(
            br#"{"choices":[{"index":0,"text":"","finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":7}}"#,
        )
        .unwrap();
        assert!(!c.content);
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
        assert_eq!(c.usage.unwrap().prompt_tokens, Some(3));
    }

    #[test]
    fn tgi_chat_chunks() {
        let c = chat(
            r#"{"object":"chat.completion.chunk","id":"","created":1,"model":"m","system_fingerprint":"3.0","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        );
        assert!(c.content);
        assert_eq!(c.usage, None);
        let c = chat(
            r#"{"object":"chat.completion.chunk","id":"","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":"eos_token"}],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#,
        );
        assert!(!c.content);
        assert_eq!(c.finish_reason.as_deref(), Some("eos_token"));
        assert_eq!(c.usage.unwrap().completion_tokens, Some(9));
    }

    #[test]
    fn error_objects_in_stream() {
        let c = chat(
            r#"{"error":{"object":"error","message":"max_tokens is too large","type":"BadRequestError","code":400}}"#,
        );
        assert_eq!(c.error.as_deref(), Some("max_tokens is too large"));
        assert!(!c.content);
        let c = chat(r#"{"error":"Input validation error","error_type":"validation"}"#);
        assert_eq!(c.error.as_deref(), Some("Input validation error"));
        let c = chat(r#"{"error":{"code":500}}"#);
        assert_eq!(c.error.as_deref(), Some(r#"{"code":500}"#));
        let c = parse_ollama_chat(br#"{"error":"model 'x' not found"}"#).unwrap();
        assert_eq!(c.error.as_deref(), Some("model 'x' not found"));
        assert!(!c.done);
        assert!(chat(r#"{"error":null,"choices":[]}"#).error.is_none());
    }

    #[test]
    fn malformed_json_is_an_error() {
        for p in [
            &b"{\"choices\":[{\"delta\":{\"content\":\"a"[..],
            b"not json",
            b"",
            br#"{"choices":[{"delta":{"content":5}}]}"#,
        ] {
            assert!(parse_openai_chat(p).is_err(), "{p:?}");
        }
        assert!(parse_ollama_generate(b"{\"response\":").is_err());
        let e = parse_openai_chat(b"{").unwrap_err().to_string();
        assert!(e.starts_with("malformed JSON"), "{e}");
    }

    #[test]
    fn ollama_chat_stream_and_final() {
        let c = parse_ollama_chat(
            br#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":" The"},"done":false}"#,
        )
        .unwrap();
        assert!(c.content);
        assert_eq!(c.tokens, 1);
        assert!(!c.done);
        let c = parse_ollama_chat(
            br#"{"model":"llama3.2","created_at":"2024-01-01T00:00:01Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}"#,
        )
        .unwrap();
        assert!(!c.content);
        assert_eq!(c.tokens, 0);
        assert!(c.done);
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: Some(26),
                completion_tokens: Some(282)
            })
        );
        let c = parse_ollama_chat(
            br#"{"message":{"role":"assistant","content":"","thinking":"Hmm"},"done":false}"#,
        )
        .unwrap();
        assert!(c.content);
        assert_eq!(c.tokens, 1);
    }

    #[test]
    fn ollama_generate_stream_and_final() {
        let mut dec = ChunkDecoder::new(ApiFlavour::OllamaGenerate);
        let c = dec
            .decode(br#"{"model":"m","created_at":"t","response":" sky","done":false}"#)
            .unwrap();
        assert!(c.content);
        assert_eq!(c.tokens, 1);
        let c = dec
            .decode(br#"{"model":"m","response":"","thinking":"why","done":false}"#)
            .unwrap();
        assert!(c.content);
        let c = dec
            .decode(br#"{"model":"m","created_at":"t","response":"","done":true,"done_reason":"length","context":[1,2,3],"prompt_eval_count":10,"eval_count":5}"#)
            .unwrap();
        assert!(c.done);
        assert!(!c.content);
        assert_eq!(c.usage.unwrap().completion_tokens, Some(5));
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn the_first_usage_mid_stream_counts_from_zero() {
        // No role prelude: the first chunk already says 3 tokens were generated, while its
        // text alone would be estimated at 1.
        let mut dec = ChunkDecoder::new(ApiFlavour::OpenAiChat);
        let c = dec
            .decode(br#"{"choices":[{"index":0,"delta":{"content":" b"},"finish_reason":null}],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}"#)
            .unwrap();
        assert_eq!(c.tokens, 3);
    }

    #[test]
    fn an_ollama_final_line_with_only_an_eval_count_has_usage() {
        let c = parse_ollama_generate(
            br#"{"model":"m","response":"","done":true,"done_reason":"stop","eval_count":7}"#,
        )
        .unwrap();
        let u = c.usage.expect("usage from eval_count alone");
        assert_eq!((u.prompt_tokens, u.completion_tokens), (None, Some(7)));
    }

    #[test]
    fn choices_that_are_not_a_list_say_what_was_expected() {
        let e = parse_openai_chat(br#"{"choices":5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("an array or null"), "{e}");
    }

    #[test]
    fn continuous_usage_gives_deltas() {
        let mut dec = ChunkDecoder::new(ApiFlavour::OpenAiChat);
        let u = |content: &str, n: u64, finish: &str| {
            format!(
                r#"{{"choices":[{{"index":0,"delta":{{"content":{content}}},"finish_reason":{finish}}}],"usage":{{"prompt_tokens":4,"completion_tokens":{n},"total_tokens":{}}}}}"#,
                n + 4
            )
        };
        // Role prelude with cumulative 0.
        let c = dec.decode(u("\"\"", 0, "null").as_bytes()).unwrap();
        assert!(!c.content);
        assert_eq!(c.tokens, 0);
        let c = dec.decode(u("\" a\"", 1, "null").as_bytes()).unwrap();
        assert_eq!(c.tokens, 1);
        // Speculative decoding: one chunk, several tokens; text estimate would say 1.
        let c = dec.decode(u("\" b\"", 3, "null").as_bytes()).unwrap();
        assert!(c.content);
        assert_eq!(c.tokens, 2);
        // A token held back by the detokeniser shows up with the next text.
        let c = dec.decode(u("\"\"", 4, "null").as_bytes()).unwrap();
        assert_eq!(c.tokens, 0);
        let c = dec.decode(u("\"\u{e9}\"", 5, "null").as_bytes()).unwrap();
        assert_eq!(c.tokens, 2);
        let c = dec.decode(u("\"\"", 5, "\"stop\"").as_bytes()).unwrap();
        assert!(!c.content);
        assert_eq!(c.tokens, 0);
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        let c = dec
            .decode(br#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":5}}"#)
            .unwrap();
        assert_eq!(c.tokens, 0);
        assert_eq!(c.usage.unwrap().completion_tokens, Some(5));
    }

    #[test]
    fn final_only_usage_on_content_chunk_is_not_a_delta() {
        let mut dec = ChunkDecoder::new(ApiFlavour::OpenAiChat);
        for _ in 0..5 {
            let c = dec
                .decode(br#"{"choices":[{"delta":{"content":" x"}}]}"#)
                .unwrap();
            assert_eq!(c.tokens, 1);
        }
        let c = dec
            .decode(br#"{"choices":[{"delta":{"content":" y"},"finish_reason":"stop"}],"usage":{"completion_tokens":6}}"#)
            .unwrap();
        assert!(c.content);
        assert_eq!(
            c.tokens, 1,
            "whole-output usage must not be credited to the last chunk"
        );
    }

    #[test]
    fn stateless_parse_estimates_even_with_usage() {
        let c = chat(r#"{"choices":[{"delta":{"content":" a"}}],"usage":{"completion_tokens":3}}"#);
        assert_eq!(c.tokens, 1);
    }

    #[test]
    fn full_bodies() {
        let c = decode_full(
            ApiFlavour::OpenAiChat,
            br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend.","reasoning_content":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}"#,
        )
        .unwrap();
        assert!(c.content && c.done);
        assert_eq!(c.tokens, 5);
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));

        let c = decode_full(
            ApiFlavour::OpenAiCompletions,
            br#"{"choices":[{"index":0,"text":"one two three","finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert!(c.content && c.done);
        assert_eq!(c.tokens, 3);
        assert_eq!(c.usage, None);

        let c = decode_full(
            ApiFlavour::OllamaChat,
            br#"{"model":"m","message":{"role":"assistant","content":"Hi!"},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":2}"#,
        )
        .unwrap();
        assert!(c.content && c.done);
        assert_eq!(c.tokens, 2);
        assert_eq!(c.usage.unwrap().prompt_tokens, Some(3));

        let c = decode_full(
            ApiFlavour::OllamaGenerate,
            br#"{"model":"m","response":"a b","done":true}"#,
        )
        .unwrap();
        assert_eq!(c.tokens, 2);

        let c = decode_full(
            ApiFlavour::OpenAiChat,
            br#"{"error":{"message":"model not found","code":404}}"#,
        )
        .unwrap();
        assert!(!c.content);
        assert_eq!(c.error.as_deref(), Some("model not found"));
        assert!(decode_full(ApiFlavour::OpenAiChat, b"<html>").is_err());
    }
}
