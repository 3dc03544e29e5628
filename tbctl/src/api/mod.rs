//! OpenAI and Ollama API flavours: request bodies, streaming parsers, discovery.

pub mod chunk;
pub mod discover;
pub mod flavour;
pub mod ndjson;
mod scan;
pub mod sse;

pub use chunk::{decode_full, parse_chunk, ChunkDecoder, ChunkInfo, ParseError, Usage};
pub use discover::{detect, list_models, normalize_base, DiscoverError, Discovery};
pub use flavour::{build_body, ApiFlavour, RequestSpec, UnknownFlavour};
pub use ndjson::NdjsonParser;
pub use sse::{SseEvent, SseParser};

#[cfg(test)]
mod tests {
    use super::*;

    /// What a whole stream adds up to, as the load loop would compute it.
    #[derive(Debug, PartialEq, Eq, Default)]
    struct Totals {
        content_chunks: usize,
        tokens: u32,
        usage: Option<Usage>,
        finish_reason: Option<String>,
        done: bool,
    }

    fn add(t: &mut Totals, c: ChunkInfo) {
        if c.content {
            t.content_chunks += 1;
        }
        t.tokens += c.tokens;
        t.usage = c.usage.or(t.usage);
        t.finish_reason = c.finish_reason.or(t.finish_reason.take());
        t.done |= c.done;
    }

    fn sse_totals(parts: &[&[u8]]) -> Totals {
        let mut p = SseParser::new();
        let mut d = ChunkDecoder::new(ApiFlavour::OpenAiChat);
        let mut t = Totals::default();
        let mut on = |e: SseEvent<'_>| match e {
            SseEvent::Data(j) => add(&mut t, d.decode(j).unwrap()),
            SseEvent::Done => add(&mut t, ChunkInfo::done_marker()),
        };
        for part in parts {
            p.push(part, &mut on);
        }
        p.finish(&mut on);
        t
    }

    const CHUNK: &str = "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" hello\"},\"finish_reason\":null}]}\n\n";

    #[test]
    fn sse_streams_add_up_at_every_split() {
        let first = "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\" hello\"},\"finish_reason\":null}]}\n\n";
        let finish = "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]";
        let usage = "\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":4,\"total_tokens\":20}}";
        // Usage in its own `choices: []` chunk, then [DONE] (vLLM).
        let separate = format!(
            "{first}{CHUNK}{CHUNK}{CHUNK}{finish}}}\n\ndata: {{\"id\":\"chatcmpl-fast\",\"choices\":[],{usage}\n\ndata: [DONE]\n\n"
        );
        // Usage riding on the finish chunk, no [DONE] (a proxy that drops it).
        let riding = format!("{first}{CHUNK}{CHUNK}{CHUNK}{finish},{usage}\n\n");
        let want = |done| Totals {
            content_chunks: 4,
            tokens: 4,
            usage: Some(Usage {
                prompt_tokens: Some(16),
                completion_tokens: Some(4),
            }),
            finish_reason: Some("length".into()),
            done,
        };
        for (body, done) in [(separate, true), (riding, false)] {
            let b = body.as_bytes();
            for i in 0..=b.len() {
                assert_eq!(sse_totals(&[&b[..i], &b[i..]]), want(done), "split at {i}");
            }
        }
    }

    #[test]
    fn ndjson_ollama_stream_adds_up_at_every_split() {
        let body = concat!(
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\" The\"},\"done\":false}\r\n",
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\" sky\"},\"done\":false}\r\n",
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":26,\"eval_count\":2}",
        )
        .as_bytes();
        for i in 0..=body.len() {
            let mut p = NdjsonParser::new();
            let mut d = ChunkDecoder::new(ApiFlavour::OllamaChat);
            let mut t = Totals::default();
            let mut on = |line: &[u8]| add(&mut t, d.decode(line).unwrap());
            p.push(&body[..i], &mut on);
            p.push(&body[i..], &mut on);
            p.finish(&mut on);
            let want = Totals {
                content_chunks: 2,
                tokens: 2,
                usage: Some(Usage {
                    prompt_tokens: Some(26),
                    completion_tokens: Some(2),
                }),
                finish_reason: Some("stop".into()),
                done: true,
            };
            assert_eq!(t, want, "split at {i}");
        }
    }
}
