//! Recognising HTTP/1.1 request and status lines in the payload prefix the probes copy.
//!
//! The probes copy at most [`tbd_common::PREFIX_LEN`] bytes of each read or write, so every function
//! here accepts a prefix cut anywhere. They are called on every tracked data event: a prefix that
//! does not match is rejected from its first bytes without allocating.

/// Methods recognised at the start of a request line.
const METHODS: [&[u8]; 7] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS",
];

/// Header carrying tbctl's request id; tbctl sends it first, right after the request line.
const RID_HEADER: &[u8] = b"x-tb-rid";

/// The parts of an HTTP/1.x request head found in a payload prefix, borrowed from it: the
/// tracker copies them into an exchange whose buffers it reuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The request method, e.g. `POST`.
    pub method: &'static str,
    /// The request target as sent; cut short when the prefix ends inside it.
    pub path: &'a str,
    /// The `x-tb-rid` header's value, when that header line is complete within the prefix.
    pub request_id: Option<&'a str>,
}

/// Parses the request line (and the `x-tb-rid` header) at the start of `prefix`.
///
/// A prefix that ends inside the request target or the version still counts when what is there
/// is consistent with a request line: long targets (query strings) overflow the probe's copy.
pub fn request_line(prefix: &[u8]) -> Option<RequestHead<'_>> {
    let method = METHODS
        .iter()
        .find(|m| prefix.len() > m.len() && prefix.starts_with(m) && prefix[m.len()] == b' ')?;
    let rest = &prefix[method.len() + 1..];
    // origin-form `/...`, asterisk-form `*`, absolute-form `http://...`
    if !matches!(rest.first(), Some(b'/' | b'*')) && !rest.starts_with(b"http") {
        return None;
    }
    let path_len = rest
        .iter()
        .position(|&b| !is_target_byte(b))
        .unwrap_or(rest.len());
    let path = &rest[..path_len];
    let after = &rest[path_len..];
    let head_end = if after.is_empty() {
        None
    } else {
        Some(version_end(after)?)
    };
    let request_id = head_end.and_then(|end| find_request_id(&after[end..]));
    Some(RequestHead {
        // METHODS and is_target_byte admit ASCII only, so these are valid UTF-8.
        method: std::str::from_utf8(method).unwrap_or_default(),
        path: std::str::from_utf8(path).unwrap_or_default(),
        request_id,
    })
}

/// Parses the status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`) at the start of `prefix`.
///
/// Needs the full three-digit code; a prefix cut before it gives None.
pub fn status_line(prefix: &[u8]) -> Option<u16> {
    if prefix.len() < 12 || !prefix.starts_with(b"HTTP/1.") {
        return None;
    }
    if !prefix[7].is_ascii_digit() || prefix[8] != b' ' {
        return None;
    }
    let code = &prefix[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // The code must end at a space, the line end, or the end of the prefix.
    if let Some(&b) = prefix.get(12) {
        if b != b' ' && b != b'\r' && b != b'\n' {
            return None;
        }
    }
    let value = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    (100..=599).contains(&value).then_some(value)
}

/// Bytes allowed in a request target: visible ASCII (RFC 9112 forbids spaces and controls).
fn is_target_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// Checks ` HTTP/1.x\r\n` at the start of `after` (the bytes following the target), allowing it
/// to be cut anywhere; returns the offset just past `\r\n`, or `after.len()` when cut.
/// None means the bytes contradict a request line.
fn version_end(after: &[u8]) -> Option<usize> {
    const PATTERN: &[u8] = b" HTTP/1.#\r\n";
    for (i, &b) in after.iter().enumerate() {
        let Some(&want) = PATTERN.get(i) else {
            return Some(PATTERN.len());
        };
        let ok = if want == b'#' {
            b.is_ascii_digit()
        } else {
            b == want
        };
        if !ok {
            return None;
        }
    }
    // Cut inside the version (nothing follows), or right after its `\r\n`.
    Some(after.len())
}

/// Looks for a complete `x-tb-rid: <id>\r\n` line among the header lines of `headers`.
fn find_request_id(mut headers: &[u8]) -> Option<&str> {
    loop {
        // A header line that is not complete within the prefix cannot be trusted: its value
        // could be cut.
        let line_end = headers.windows(2).position(|w| w == b"\r\n")?;
        let line = &headers[..line_end];
        if line.is_empty() {
            return None; // end of the header block
        }
        if let Some(id) = rid_value(line) {
            return Some(id);
        }
        headers = &headers[line_end + 2..];
    }
}

/// The trimmed value of `line` when it is an `x-tb-rid` header with a non-empty value.
fn rid_value(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    if !line[..colon].eq_ignore_ascii_case(RID_HEADER) {
        return None;
    }
    let value = line[colon + 1..].trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    // Checked ASCII just above.
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_request_with_rid() {
        let p =
            b"POST /v1/chat/completions HTTP/1.1\r\nx-tb-rid: r-000042\r\nhost: localhost:8000\r\n";
        let h = request_line(p).unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/v1/chat/completions");
        assert_eq!(h.request_id, Some("r-000042"));
    }

    #[test]
    fn every_method() {
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            let p = format!("{m} /x HTTP/1.0\r\n\r\n");
            assert_eq!(request_line(p.as_bytes()).unwrap().method, m);
        }
        assert!(request_line(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").is_none());
        assert!(request_line(b"CONNECT host:443 HTTP/1.1\r\n").is_none());
    }

    #[test]
    fn header_name_is_case_insensitive() {
        let p = b"GET /v1/models HTTP/1.1\r\nX-TB-RID:abc\r\n\r\n";
        assert_eq!(request_line(p).unwrap().request_id, Some("abc"));
        let p = b"GET /v1/models HTTP/1.1\r\nX-Tb-Rid:   spaced  \r\n";
        assert_eq!(request_line(p).unwrap().request_id, Some("spaced"));
    }

    #[test]
    fn rid_after_other_headers_is_found() {
        let p = b"GET / HTTP/1.1\r\nhost: a\r\nx-tb-rid: later\r\n";
        assert_eq!(request_line(p).unwrap().request_id, Some("later"));
    }

    #[test]
    fn missing_header() {
        let p = b"POST /api/generate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\r\n{";
        let h = request_line(p).unwrap();
        assert_eq!(h.path, "/api/generate");
        assert_eq!(h.request_id, None);
        // A header named like it but longer is a different header.
        let p = b"GET / HTTP/1.1\r\nx-tb-rid-extra: no\r\n\r\n";
        assert_eq!(request_line(p).unwrap().request_id, None);
        // The header after the blank line is body, not a header.
        let p = b"GET / HTTP/1.1\r\n\r\nx-tb-rid: body\r\n";
        assert_eq!(request_line(p).unwrap().request_id, None);
    }

    #[test]
    fn truncated_prefixes() {
        let full = b"POST /v1/completions HTTP/1.1\r\nx-tb-rid: r-7\r\n";
        // Cut inside the header value: request recognised, id not trusted.
        for cut in 31..full.len() {
            let h = request_line(&full[..cut]).unwrap();
            assert_eq!(h.path, "/v1/completions");
            assert_eq!(h.request_id, None, "cut at {cut}");
        }
        assert_eq!(request_line(full).unwrap().request_id, Some("r-7"));
        // Cut inside the version or right after the line: still a request.
        for cut in 20..=31 {
            let h = request_line(&full[..cut]).unwrap();
            assert_eq!(h.path, "/v1/completions", "cut at {cut}");
        }
        // Cut inside the target: the part seen is the path.
        assert_eq!(request_line(&full[..10]).unwrap().path, "/v1/c");
        // Cut before any target byte: not enough to tell.
        assert!(request_line(b"POST ").is_none());
        assert!(request_line(b"POS").is_none());
        assert!(request_line(b"").is_none());
        // A long target filling the whole 96-byte prefix.
        let long = format!("GET /v1/models?{} HTTP/1.1\r\n", "q".repeat(120));
        let h = request_line(&long.as_bytes()[..96]).unwrap();
        assert_eq!(h.path.len(), 92);
    }

    #[test]
    fn body_chunks_are_not_requests() {
        let cases: &[&[u8]] = &[
            b"data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"GET \"}}]}\n\n",
            b"1a\r\ndata: {\"x\":1}\r\n",
            b"0\r\n\r\n",
            b"{\"model\":\"m\",\"messages\":[]}",
            b"GET",
            b"GETX /a HTTP/1.1\r\n",
            b"get /a HTTP/1.1\r\n",
            b"GET a HTTP/1.1\r\n",
            b"GET /a HTTP/2\r\n",
            b"GET /a HTTP/1.1\n",
            b"GET /a  HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
        ];
        for p in cases {
            assert!(
                request_line(p).is_none(),
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"),
            Some(200)
        );
        assert_eq!(status_line(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(status_line(b"HTTP/1.1 100 Continue\r\n\r\n"), Some(100));
        assert_eq!(status_line(b"HTTP/1.1 204\r\n"), Some(204));
        assert_eq!(status_line(b"HTTP/1.1 503"), Some(503));
        assert_eq!(status_line(b"HTTP/1.1 50"), None);
        assert_eq!(status_line(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_line(b"HTTP/1.1 099 x"), None);
        assert_eq!(status_line(b"HTTP/2 200 OK\r\n"), None);
        assert_eq!(status_line(b"data: HTTP/1.1 200 OK"), None);
        assert_eq!(status_line(b"1a\r\ndata: {}\r\n"), None);
        assert_eq!(status_line(b""), None);
    }
}
