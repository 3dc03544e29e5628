//! The four API flavours TrafficBench speaks and the request body each one expects.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Which inference API a target speaks; decides the request path, the body and the stream framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFlavour {
    /// OpenAI `/v1/chat/completions` (vLLM, SGLang, TGI, llama.cpp, ...), streamed as SSE.
    OpenAiChat,
    /// OpenAI legacy `/v1/completions` with a raw prompt, streamed as SSE.
    OpenAiCompletions,
    /// Ollama `/api/chat`, streamed as newline-delimited JSON.
    OllamaChat,
    /// Ollama `/api/generate` with a raw prompt, streamed as newline-delimited JSON.
    OllamaGenerate,
}

/// The CLI names in the order `--help` and error messages list them.
const NAMES: &str = "openai-chat, openai-completions, ollama-chat, ollama-generate";

impl ApiFlavour {
    /// Every flavour, so callers can list or iterate them without repeating the set.
    pub const ALL: [ApiFlavour; 4] = [
        ApiFlavour::OpenAiChat,
        ApiFlavour::OpenAiCompletions,
        ApiFlavour::OllamaChat,
        ApiFlavour::OllamaGenerate,
    ];

    /// The CLI name (`--api` value), also written into run metadata.
    pub fn name(self) -> &'static str {
        match self {
            ApiFlavour::OpenAiChat => "openai-chat",
            ApiFlavour::OpenAiCompletions => "openai-completions",
            ApiFlavour::OllamaChat => "ollama-chat",
            ApiFlavour::OllamaGenerate => "ollama-generate",
        }
    }

    /// Request path appended to the base URL.
    pub fn path(self) -> &'static str {
        match self {
            ApiFlavour::OpenAiChat => "/v1/chat/completions",
            ApiFlavour::OpenAiCompletions => "/v1/completions",
            ApiFlavour::OllamaChat => "/api/chat",
            ApiFlavour::OllamaGenerate => "/api/generate",
        }
    }

    /// Short name of the service family (`openai` or `ollama`), for labels and capture filters.
    pub fn service_type(self) -> &'static str {
        if self.is_ollama() {
            "ollama"
        } else {
            "openai"
        }
    }

    /// True for Ollama's native API, which streams NDJSON rather than SSE.
    pub fn is_ollama(self) -> bool {
        matches!(self, ApiFlavour::OllamaChat | ApiFlavour::OllamaGenerate)
    }

    /// True when the body carries a chat `messages` list rather than a raw `prompt`.
    pub fn is_chat(self) -> bool {
        matches!(self, ApiFlavour::OpenAiChat | ApiFlavour::OllamaChat)
    }
}

impl fmt::Display for ApiFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `--api` value that names no flavour; the message lists the valid names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown API flavour `{0}`; expected one of: {NAMES}")]
pub struct UnknownFlavour(pub String);

impl FromStr for ApiFlavour {
    type Err = UnknownFlavour;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let want = s.trim();
        ApiFlavour::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(want))
            .ok_or_else(|| UnknownFlavour(s.to_string()))
    }
}

/// What one request asks for, independent of flavour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec<'a> {
    /// Model name as the server knows it.
    pub model: &'a str,
    /// The prompt; sent as a single user message for chat flavours.
    pub prompt: &'a str,
    /// Output length to ask for; `None` leaves it to the server.
    pub max_tokens: Option<u32>,
    /// Ask for a streamed response.
    pub stream: bool,
    /// Ask OpenAI-compatible servers (vLLM, SGLang) to ignore EOS so the output length is exact.
    pub ignore_eos: bool,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<[Message<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ignore_eos: bool,
}

#[derive(Serialize)]
struct OllamaOptions {
    num_predict: u32,
}

#[derive(Serialize)]
struct OllamaBody<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<[Message<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<OllamaOptions>,
}

/// The JSON request body for `spec` in `flavour`'s shape; built per request, so it borrows and
/// serialises straight into one pre-sized buffer.
pub fn build_body(flavour: ApiFlavour, spec: &RequestSpec) -> Vec<u8> {
    let messages = flavour.is_chat().then_some([Message {
        role: "user",
        content: spec.prompt,
    }]);
    let prompt = (!flavour.is_chat()).then_some(spec.prompt);
    // Prompt plus the fixed keys; JSON escaping rarely grows the prompt much.
    let mut out = Vec::with_capacity(spec.prompt.len() + spec.model.len() + 160);
    let written = if flavour.is_ollama() {
        serde_json::to_writer(
            &mut out,
            &OllamaBody {
                model: spec.model,
                messages,
                prompt,
                stream: spec.stream,
                options: spec.max_tokens.map(|n| OllamaOptions { num_predict: n }),
            },
        )
    } else {
        serde_json::to_writer(
            &mut out,
            &OpenAiBody {
                model: spec.model,
                messages,
                prompt,
                stream: spec.stream,
                stream_options: spec.stream.then_some(StreamOptions {
                    include_usage: true,
                }),
                max_tokens: spec.max_tokens,
                ignore_eos: spec.ignore_eos,
            },
        )
    };
    // Writing plain structs of strings and integers into a Vec cannot fail.
    written.expect("serialising a request body into memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn spec(stream: bool, max_tokens: Option<u32>, ignore_eos: bool) -> RequestSpec<'static> {
        RequestSpec {
            model: "m-1",
            prompt: "say \"hi\"\nnow",
            max_tokens,
            stream,
            ignore_eos,
        }
    }

    fn body(f: ApiFlavour, s: &RequestSpec) -> Value {
        serde_json::from_slice(&build_body(f, s)).expect("body is JSON")
    }

    #[test]
    fn names_round_trip_and_unknown_lists_valid() {
        for f in ApiFlavour::ALL {
            assert_eq!(f.to_string().parse::<ApiFlavour>().unwrap(), f);
        }
        assert_eq!(
            " OpenAI-Chat ".parse::<ApiFlavour>().unwrap(),
            ApiFlavour::OpenAiChat
        );
        let err = "openai".parse::<ApiFlavour>().unwrap_err().to_string();
        assert!(err.contains("`openai`"), "{err}");
        for f in ApiFlavour::ALL {
            assert!(err.contains(f.name()), "{err}");
        }
    }

    #[test]
    fn paths_and_families() {
        assert_eq!(ApiFlavour::OpenAiChat.path(), "/v1/chat/completions");
        assert_eq!(ApiFlavour::OpenAiCompletions.path(), "/v1/completions");
        assert_eq!(ApiFlavour::OllamaChat.path(), "/api/chat");
        assert_eq!(ApiFlavour::OllamaGenerate.path(), "/api/generate");
        assert!(ApiFlavour::OllamaGenerate.is_ollama());
        assert!(!ApiFlavour::OpenAiCompletions.is_ollama());
        assert_eq!(ApiFlavour::OllamaChat.service_type(), "ollama");
        assert_eq!(ApiFlavour::OpenAiChat.service_type(), "openai");
    }

    #[test]
    fn openai_chat_streaming_body() {
        let v = body(ApiFlavour::OpenAiChat, &spec(true, Some(64), true));
        assert_eq!(v["model"], "m-1");
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["messages"][0]["content"], "say \"hi\"\nnow");
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["ignore_eos"], true);
        assert!(v.get("prompt").is_none());
        assert!(v.get("cache_prompt").is_none());
    }

    #[test]
    fn openai_chat_plain_body_omits_optional_keys() {
        let v = body(ApiFlavour::OpenAiChat, &spec(false, None, false));
        let obj = v.as_object().unwrap();
        assert_eq!(v["stream"], false);
        for k in ["stream_options", "max_tokens", "ignore_eos", "prompt"] {
            assert!(!obj.contains_key(k), "{k} in {v}");
        }
    }

    #[test]
    fn openai_completions_body() {
        let v = body(ApiFlavour::OpenAiCompletions, &spec(true, Some(8), false));
        assert_eq!(v["prompt"], "say \"hi\"\nnow");
        assert!(v.get("messages").is_none());
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["max_tokens"], 8);
        assert!(v.get("ignore_eos").is_none());
    }

    #[test]
    fn ollama_bodies() {
        let v = body(ApiFlavour::OllamaChat, &spec(true, Some(32), true));
        assert_eq!(v["model"], "m-1");
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["messages"][0]["content"], "say \"hi\"\nnow");
        assert_eq!(v["stream"], true);
        assert_eq!(v["options"]["num_predict"], 32);
        for k in ["stream_options", "max_tokens", "ignore_eos", "prompt"] {
            assert!(v.get(k).is_none(), "{k} in {v}");
        }

        let v = body(ApiFlavour::OllamaGenerate, &spec(false, None, false));
        assert_eq!(v["prompt"], "say \"hi\"\nnow");
        assert_eq!(v["stream"], false);
        assert!(v.get("messages").is_none());
        assert!(v.get("options").is_none());
    }
}
