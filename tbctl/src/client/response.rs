//! Turning a response body, as it arrives, into the request record's times and tokens.

use crate::{
    api::{
        chunk::{decode_full, ChunkDecoder, ChunkInfo, Usage},
        flavour::ApiFlavour,
        ndjson::NdjsonParser,
        sse::{SseEvent, SseParser},
    },
    client::error::ClientError,
    record::{RequestRecord, TokenSource},
};

enum Framing {
    Sse(SseParser),
    Ndjson(NdjsonParser),
    /// Non-streaming: the whole body is one JSON document.
    Whole(Vec<u8>),
}

/// Incremental state of one response.
pub struct ResponseReader {
    framing: Framing,
    decoder: ChunkDecoder,
    progress: Progress,
}

/// What the payloads so far said, apart from what goes straight into the record.
#[derive(Default)]
struct Progress {
    usage: Option<Usage>,
    chunk_tokens: u64,
    done: bool,
    error: Option<ClientError>,
}

impl Progress {
    fn apply(&mut self, info: Result<ChunkInfo, ClientError>, t_ns: u64, rec: &mut RequestRecord) {
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        if let Some(msg) = info.error {
            self.error.get_or_insert(ClientError::Http {
                status: rec.http_status.unwrap_or(200),
                body: msg,
            });
        }
        if info.content {
            rec.t_first_token_ns.get_or_insert(t_ns);
            rec.t_last_token_ns = Some(t_ns);
            rec.chunks.push([t_ns, info.tokens as u64]);
            self.chunk_tokens += info.tokens as u64;
        }
        if let Some(u) = info.usage {
            self.usage = Some(u);
        }
        self.done |= info.done;
    }
}

impl ResponseReader {
    /// A reader for `flavour`, streaming or not.
    pub fn new(flavour: ApiFlavour, stream: bool) -> Self {
        let framing = match (stream, flavour.is_ollama()) {
            (false, _) => Framing::Whole(Vec::new()),
            (true, false) => Framing::Sse(SseParser::new()),
            (true, true) => Framing::Ndjson(NdjsonParser::new()),
        };
        Self {
            framing,
            decoder: ChunkDecoder::new(flavour),
            progress: Progress::default(),
        }
    }

    /// Feeds bytes that a read returned at `t_ns`; each complete payload is applied as the
    /// framing yields it (this runs per chunk, so nothing is collected in between).
    pub fn push(&mut self, bytes: &[u8], t_ns: u64, rec: &mut RequestRecord) {
        let Self {
            framing,
            decoder,
            progress,
        } = self;
        match framing {
            Framing::Sse(p) => p.push(bytes, &mut |ev| {
                progress.apply(decode_sse(decoder, ev), t_ns, rec)
            }),
            Framing::Ndjson(p) => p.push(bytes, &mut |line| {
                progress.apply(decode(decoder, line), t_ns, rec)
            }),
            Framing::Whole(buf) => buf.extend_from_slice(bytes),
        }
    }

    /// Ends the body at `t_ns`; fills tokens and their source, or says why it failed.
    pub fn finish(self, t_ns: u64, rec: &mut RequestRecord) -> Result<(), ClientError> {
        let Self {
            mut framing,
            mut decoder,
            mut progress,
        } = self;
        match &mut framing {
            Framing::Sse(p) => {
                p.finish(&mut |ev| progress.apply(decode_sse(&mut decoder, ev), t_ns, rec))
            }
            Framing::Ndjson(p) => {
                p.finish(&mut |line| progress.apply(decode(&mut decoder, line), t_ns, rec))
            }
            Framing::Whole(buf) => progress.apply(
                decode_full(decoder.flavour(), buf)
                    .map_err(|e| ClientError::Malformed(e.to_string())),
                t_ns,
                rec,
            ),
        }
        rec.t_end_ns = Some(t_ns);
        if let Some(e) = progress.error {
            return Err(e);
        }
        if !progress.done {
            return Err(ClientError::StreamCut(
                "no end-of-stream marker ([DONE] or done:true)".into(),
            ));
        }
        match progress.usage.and_then(|u| u.completion_tokens) {
            Some(n) => {
                rec.output_tokens = Some(n);
                rec.token_source = Some(TokenSource::Usage);
            }
            None => {
                rec.output_tokens = Some(progress.chunk_tokens);
                rec.token_source = Some(TokenSource::Chunks);
            }
        }
        if let Some(p) = progress.usage.and_then(|u| u.prompt_tokens) {
            rec.input_tokens = Some(p);
        }
        Ok(())
    }
}

fn decode(decoder: &mut ChunkDecoder, payload: &[u8]) -> Result<ChunkInfo, ClientError> {
    decoder
        .decode(payload)
        .map_err(|e| ClientError::Malformed(e.to_string()))
}

fn decode_sse(decoder: &mut ChunkDecoder, ev: SseEvent<'_>) -> Result<ChunkInfo, ClientError> {
    match ev {
        SseEvent::Data(d) => decode(decoder, d),
        SseEvent::Done => Ok(ChunkInfo::done_marker()),
    }
}
