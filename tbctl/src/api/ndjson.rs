//! Incremental newline-delimited JSON framing for Ollama streams: bytes arrive split anywhere,
//! whole lines come out, borrowed straight from the read when it holds the entire line.

/// Splits a byte stream into lines (LF or CRLF), skipping blank ones.
#[derive(Debug, Default)]
pub struct NdjsonParser {
    /// A line started in an earlier push and not yet terminated.
    line: Vec<u8>,
}

impl NdjsonParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        NdjsonParser::default()
    }

    /// Feeds the next bytes read and calls `out` with every line they complete, without its line
    /// end; the slice is valid only during the call.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                emit(&bytes[..end], out);
            } else {
                self.line.extend_from_slice(&bytes[..end]);
                emit(&self.line, out);
                self.line.clear();
            }
            bytes = &bytes[end + 1..];
        }
        self.line.extend_from_slice(bytes);
    }

    /// Ends the stream, delivering a last line that had no newline.
    pub fn finish(&mut self, out: &mut impl FnMut(&[u8])) {
        emit(&self.line, out);
        self.line = Vec::new();
    }

    /// Bytes held for an incomplete line, so a caller can cap a runaway stream.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }
}

fn emit(line: &[u8], out: &mut impl FnMut(&[u8])) {
    // A `\r` before the `\n` belongs to the line end; JSON itself never holds a raw `\r`.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.trim_ascii().is_empty() {
        out(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]], finish: bool) -> Vec<String> {
        let mut p = NdjsonParser::new();
        let mut lines = Vec::new();
        let mut out = |l: &[u8]| lines.push(String::from_utf8(l.to_vec()).unwrap());
        for c in chunks {
            p.push(c, &mut out);
        }
        if finish {
            p.finish(&mut out);
        }
        lines
    }

    const BODY: &str = concat!(
        "{\"model\":\"llama3.2\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\" The\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\" sky\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"created_at\":\"2024-01-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"prompt_eval_count\":26,\"eval_count\":2}\n",
    );

    #[test]
    fn whole_body_and_every_split_point() {
        let want = collect(&[BODY.as_bytes()], false);
        assert_eq!(want.len(), 3);
        assert!(want[2].contains("\"eval_count\":2}"));
        for body in [BODY.to_string(), BODY.replace('\n', "\r\n")] {
            let body = body.as_bytes();
            for i in 0..=body.len() {
                assert_eq!(
                    collect(&[&body[..i], &body[i..]], false),
                    want,
                    "split at {i}"
                );
            }
            let bytes: Vec<&[u8]> = body.chunks(1).collect();
            assert_eq!(collect(&bytes, false), want);
        }
    }

    #[test]
    fn blank_lines_skipped_and_last_line_needs_finish() {
        assert_eq!(
            collect(&[b"\n{\"a\":1}\r\n\r\n  \n{\"b\":2}"], false),
            vec!["{\"a\":1}"]
        );
        assert_eq!(
            collect(&[b"\n{\"a\":1}\r\n\r\n  \n{\"b\":2}"], true),
            vec!["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(collect(&[b"{\"b\":2}\r"], true), vec!["{\"b\":2}"]);
        assert!(collect(&[b""], true).is_empty());
    }

    #[test]
    fn reusable_after_finish() {
        let mut p = NdjsonParser::new();
        let mut n = 0;
        p.push(b"{}\n{", &mut |_| n += 1);
        assert_eq!(p.buffered(), 1);
        p.finish(&mut |_| n += 1);
        assert_eq!((n, p.buffered()), (2, 0));
        p.push(b"{}\n", &mut |_| n += 1);
        assert_eq!(n, 3);
    }
}
