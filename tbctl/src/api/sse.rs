//! Incremental Server-Sent-Events framing for OpenAI-style streams: bytes arrive split anywhere,
//! events come out whole, with the buffers reused so steady state allocates nothing.

/// One complete SSE event, borrowed from the parser until the callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEvent<'a> {
    /// The event's `data` (several `data:` lines joined with `\n`), to be decoded as JSON.
    Data(&'a [u8]),
    /// `data: [DONE]`, OpenAI's end-of-stream marker.
    Done,
}

/// Line-based SSE parser (the WHATWG event-stream rules, less `retry`, `id` and event names,
/// which inference servers do not rely on).
#[derive(Debug)]
pub struct SseParser {
    /// A line started in an earlier push and not yet terminated.
    line: Vec<u8>,
    /// `data` of the event being assembled.
    data: Vec<u8>,
    /// Whether the current event has had a `data` field; `data:` with an empty value still counts.
    has_data: bool,
    /// The previous push ended in `\r`, so a `\n` opening the next push ends no new line.
    skip_lf: bool,
    /// No line processed yet, so a UTF-8 byte-order mark may still need stripping.
    at_start: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            skip_lf: false,
            at_start: true,
        }
    }

    /// Feeds the next bytes read and calls `out` for every event they complete, in order.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl FnMut(SseEvent<'_>)) {
        // An empty read must not clear `skip_lf`: the `\n` of a split CRLF may still follow.
        if bytes.is_empty() {
            return;
        }
        if self.skip_lf {
            self.skip_lf = false;
            if let [b'\n', rest @ ..] = bytes {
                bytes = rest;
            }
        }
        // memchr: a whole response often comes in one read, and the search ran byte by byte.
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (segment, term) = (&bytes[..end], bytes[end]);
            let mut next = end + 1;
            if term == b'\r' {
                match bytes.get(next) {
                    Some(b'\n') => next += 1,
                    None => self.skip_lf = true,
                    Some(_) => {}
                }
            }
            if self.line.is_empty() {
                self.line_done(segment, out);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(segment);
                self.line_done(&line, out);
                line.clear();
                self.line = line;
            }
            bytes = &bytes[next..];
        }
        self.line.extend_from_slice(bytes);
    }

    /// Ends the stream: an unterminated last line and an event with no closing blank line are
    /// still delivered, since servers that close the connection right after them mean them.
    pub fn finish(&mut self, out: &mut impl FnMut(SseEvent<'_>)) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out);
        }
        self.dispatch(out);
        *self = SseParser::new();
    }

    /// Bytes held for an incomplete line or event, so a caller can cap a runaway stream.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn line_done(&mut self, mut line: &[u8], out: &mut impl FnMut(SseEvent<'_>)) {
        if self.at_start {
            self.at_start = false;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => return, // comment, e.g. a keep-alive `: ping`
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }

    fn dispatch(&mut self, out: &mut impl FnMut(SseEvent<'_>)) {
        if !self.has_data {
            return;
        }
        if self.data.trim_ascii() == b"[DONE]" {
            out(SseEvent::Done);
        } else {
            out(SseEvent::Data(&self.data));
        }
        self.data.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Data(String),
        Done,
    }

    fn collect(chunks: &[&[u8]], finish: bool) -> Vec<Ev> {
        let mut p = SseParser::new();
        let mut evs = Vec::new();
        let mut out = |e: SseEvent<'_>| {
            evs.push(match e {
                SseEvent::Data(d) => Ev::Data(String::from_utf8(d.to_vec()).unwrap()),
                SseEvent::Done => Ev::Done,
            })
        };
        for c in chunks {
            p.push(c, &mut out);
        }
        if finish {
            p.finish(&mut out);
        }
        evs
    }

    fn data(s: &str) -> Ev {
        Ev::Data(s.to_string())
    }

    /// A shortened copy of a real vLLM-style stream: role+content first chunk, content chunks,
    /// finish chunk, usage in a `choices: []` chunk, `[DONE]`.
    const BODY: &str = concat!(
        "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\" hello\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" hello\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" hello\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        "data: {\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gt-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":3,\"total_tokens\":19}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn whole_body_in_one_read() {
        let evs = collect(&[BODY.as_bytes()], false);
        assert_eq!(evs.len(), 6);
        assert!(matches!(&evs[0], Ev::Data(d) if d.contains("\"role\":\"assistant\"")));
        assert!(matches!(&evs[4], Ev::Data(d) if d.contains("\"usage\"")));
        assert_eq!(evs[5], Ev::Done);
        for e in &evs[..5] {
            let Ev::Data(d) = e else { unreachable!() };
            assert!(d.starts_with('{') && d.ends_with('}'), "{d}");
        }
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let body = BODY.as_bytes();
        let want = collect(&[body], false);
        for i in 0..=body.len() {
            assert_eq!(
                collect(&[&body[..i], &body[i..]], false),
                want,
                "split at {i}"
            );
        }
        // Byte at a time, and three-way splits on a coarser grid.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(collect(&bytes, false), want);
        for i in (0..body.len()).step_by(7) {
            for j in (i..body.len()).step_by(13) {
                assert_eq!(
                    collect(&[&body[..i], &body[i..j], &body[j..]], false),
                    want,
                    "split at {i},{j}"
                );
            }
        }
    }

    #[test]
    fn crlf_and_cr_line_ends_at_every_split() {
        let lf = collect(&[BODY.as_bytes()], false);
        for ending in ["\r\n", "\r"] {
            let body = BODY.replace('\n', ending);
            let body = body.as_bytes();
            for i in 0..=body.len() {
                assert_eq!(
                    collect(&[&body[..i], &body[i..]], false),
                    lf,
                    "{ending:?} split at {i}"
                );
            }
        }
    }

    #[test]
    fn empty_reads_between_cr_and_lf_change_nothing() {
        let evs = collect(
            &[b"data: a\r", b"", b"\ndata: b\r", b"\n\r", b"", b"\n"],
            false,
        );
        assert_eq!(evs, vec![data("a\nb")]);
    }

    #[test]
    fn a_crlf_ends_one_line_not_two() {
        // Read whole: a CRLF taken as two line ends would split the event at its blank "line".
        let body = b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n";
        assert_eq!(collect(&[body], false), vec![data("a\nb"), data("c")]);
    }

    #[test]
    fn mixed_line_ends() {
        let body = b"data: a\r\n\ndata: b\n\r\ndata: c\r\rdata: d\n\n";
        assert_eq!(
            collect(&[body], false),
            vec![data("a"), data("b"), data("c"), data("d")]
        );
    }

    #[test]
    fn multi_line_data_space_optional_and_ignored_fields() {
        let body = b": keep-alive\nevent: message\nid: 7\nretry: 100\ndata:{\"a\":\ndata:  1}\n\n:ping\n\ndata\n\n";
        assert_eq!(
            collect(&[body], false),
            vec![data("{\"a\":\n 1}"), data("")]
        );
    }

    #[test]
    fn comments_and_field_only_events_dispatch_nothing() {
        let body = b": ping\n\nevent: x\n\nid: 1\n\n\n\n";
        assert!(collect(&[body], true).is_empty());
    }

    #[test]
    fn done_marker_variants() {
        assert_eq!(collect(&[b"data:[DONE]\n\n"], false), vec![Ev::Done]);
        assert_eq!(collect(&[b"data: [DONE]\r\n\r\n"], false), vec![Ev::Done]);
        assert_eq!(
            collect(&[b"data: [DONE]x\n\n"], false),
            vec![data("[DONE]x")]
        );
    }

    #[test]
    fn finish_flushes_unterminated_event() {
        assert_eq!(collect(&[b"data: {}"], false), vec![]);
        assert_eq!(collect(&[b"data: {}"], true), vec![data("{}")]);
        assert_eq!(collect(&[b"data: {}\n"], true), vec![data("{}")]);
        assert_eq!(collect(&[b"data: [DONE]"], true), vec![Ev::Done]);
        assert_eq!(collect(&[b"data: a\n\n"], true), vec![data("a")]);
    }

    #[test]
    fn bom_is_stripped_once() {
        let body = b"\xEF\xBB\xBFdata: a\n\n";
        for i in 0..=body.len() {
            assert_eq!(
                collect(&[&body[..i], &body[i..]], false),
                vec![data("a")],
                "split at {i}"
            );
        }
    }

    #[test]
    fn parser_is_reusable_after_finish_and_buffers_drain() {
        let mut p = SseParser::new();
        let mut n = 0;
        p.push(b"data: x\n\ndata: ab\ndata: partial", &mut |_| n += 1);
        assert_eq!(n, 1);
        // The event's first data line (2 bytes) and the unfinished line (13).
        assert_eq!(p.buffered(), 2 + 13);
        p.finish(&mut |_| n += 1);
        assert_eq!(n, 2);
        assert_eq!(p.buffered(), 0);
        p.push(b"data: y\n\n", &mut |_| n += 1);
        assert_eq!(n, 3);
    }
}
