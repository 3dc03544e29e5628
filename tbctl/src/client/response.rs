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
    /// Socket arrival of the bytes being fed (see [`ResponseReader::arrived`]).
    arrival_ns: Option<u64>,
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
            if let Some(a) = self.arrival_ns {
                rec.chunk_arrivals_ns.push(a);
            }
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

    /// Sets when the bytes fed next reached the socket (their read's last segment), for
    /// `chunk_arrivals_ns`; None when the read had no receive stamp.
    pub fn arrived(&mut self, arrival_ns: Option<u64>) {
        self.progress.arrival_ns = arrival_ns;
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
        // Arrivals count only for a response whose every chunk has one.
        if rec.chunk_arrivals_ns.len() != rec.chunks.len() {
            rec.chunk_arrivals_ns.clear();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ErrorClass;

    fn chunk(content: &str) -> String {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n")
    }

    const FINISH: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    const USAGE: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    /// Feeds `reads` (bytes, time) to a chat stream reader and finishes at `end`.
    fn read(reads: &[(&str, u64)], end: u64) -> (Result<(), ClientError>, RequestRecord) {
        let mut rec = RequestRecord {
            input_tokens: Some(99),
            ..Default::default()
        };
        let mut r = ResponseReader::new(ApiFlavour::OpenAiChat, true);
        for (bytes, t) in reads {
            r.push(bytes.as_bytes(), *t, &mut rec);
        }
        (r.finish(end, &mut rec), rec)
    }

    #[test]
    fn each_content_chunk_is_timed_by_its_read_and_usage_gives_the_tokens() {
        let first = chunk("Hello there");
        let reads = [
            (
                "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
                100,
            ),
            (first.as_str(), 200),
            (&chunk(" world")[..], 300),
            // Two events in one read share its time; the finish and usage chunks carry no content.
            (&(chunk("!") + FINISH + USAGE)[..], 400),
            (DONE, 500),
        ];
        let (r, rec) = read(&reads, 600);
        r.unwrap();
        assert_eq!(rec.chunks, vec![[200, 2], [300, 1], [400, 1]]);
        assert_eq!(
            (rec.t_first_token_ns, rec.t_last_token_ns),
            (Some(200), Some(400))
        );
        assert_eq!(rec.t_end_ns, Some(600));
        assert_eq!(rec.output_tokens, Some(5));
        assert_eq!(rec.token_source, Some(TokenSource::Usage));
        assert_eq!(rec.input_tokens, Some(7));
    }

    #[test]
    fn without_usage_the_chunks_estimates_are_summed() {
        let body = chunk("one two") + &chunk(" three") + FINISH + DONE;
        let (r, rec) = read(&[(&body, 10)], 20);
        r.unwrap();
        assert_eq!(rec.chunks, vec![[10, 2], [10, 1]]);
        assert_eq!(rec.output_tokens, Some(3));
        assert_eq!(rec.token_source, Some(TokenSource::Chunks));
        assert_eq!(rec.input_tokens, Some(99), "the request's own count stays");
    }

    #[test]
    fn a_stream_without_its_end_marker_is_cut() {
        let body = chunk("a") + USAGE;
        let (r, rec) = read(&[(&body, 10)], 20);
        let e = r.unwrap_err();
        assert_eq!(e.class(), ErrorClass::StreamCut, "{e}");
        assert_eq!(rec.chunks, vec![[10, 1]], "what did arrive is kept");
        assert_eq!(rec.t_end_ns, Some(20));
    }

    #[test]
    fn bad_json_and_error_events_fail_the_request_with_their_class() {
        let body = chunk("a") + "data: {not json\n\n" + DONE;
        let e = read(&[(&body, 10)], 20).0.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Malformed, "{e}");

        let body = chunk("a") + "data: {\"error\":{\"message\":\"overloaded\"}}\n\n" + DONE;
        match read(&[(&body, 10)], 20).0.unwrap_err() {
            ClientError::Http { status, body } => {
                assert_eq!((status, body.as_str()), (200, "overloaded"))
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn a_whole_body_is_one_chunk_at_its_end() {
        let body = r#"{"choices":[{"message":{"content":"a b c"},"finish_reason":"stop"}],"usage":{"completion_tokens":4}}"#;
        let mut rec = RequestRecord::default();
        let mut r = ResponseReader::new(ApiFlavour::OpenAiChat, false);
        r.push(&body.as_bytes()[..10], 5, &mut rec);
        r.push(&body.as_bytes()[10..], 8, &mut rec);
        assert!(rec.chunks.is_empty(), "nothing is decoded before the end");
        r.finish(9, &mut rec).unwrap();
        assert_eq!(rec.chunks, vec![[9, 4]]);
        assert_eq!(rec.output_tokens, Some(4));
    }

    #[test]
    fn each_chunk_takes_its_reads_socket_arrival_or_none_has_any() {
        let stream = [
            chunk("a"),
            chunk("b") + &chunk("c"),
            FINISH.to_owned() + USAGE + DONE,
        ];
        let feed = |arrivals: [Option<u64>; 3]| {
            let mut rec = RequestRecord::default();
            let mut r = ResponseReader::new(ApiFlavour::OpenAiChat, true);
            for (i, (bytes, a)) in stream.iter().zip(arrivals).enumerate() {
                r.arrived(a);
                r.push(bytes.as_bytes(), 100 * (i as u64 + 1), &mut rec);
            }
            r.finish(400, &mut rec).unwrap();
            rec
        };
        // Two chunks in one read share its arrival, as they share its read time.
        let rec = feed([Some(90), Some(150), Some(290)]);
        assert_eq!(rec.chunks, vec![[100, 1], [200, 1], [200, 1]]);
        assert_eq!(rec.chunk_arrivals_ns, vec![90, 150, 150]);
        // A read without a stamp leaves the response without arrivals, never misaligned.
        assert!(feed([Some(90), None, Some(290)])
            .chunk_arrivals_ns
            .is_empty());
        assert!(feed([None; 3]).chunk_arrivals_ns.is_empty());
    }
}
