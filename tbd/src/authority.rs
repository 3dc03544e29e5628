//! Lets gRPC clients that send a unix socket's path as `:authority` use tbd.
//!
//! gRPC's C core (Python's grpcio, Ruby, PHP, C++) sends a `unix:` target's path,
//! percent-encoded, as the `:authority` of every request (`tmp%2Ftbd.sock`). The `http` crate
//! refuses a `%` in a host, so h2 answers each such request with RST_STREAM (protocol error)
//! before tonic sees it, and h2 has no option to accept it. This wrapper sits between the
//! socket and h2 on the client's side of the connection: it decodes every header block the
//! client sends (HPACK, tracking the client's dynamic table), replaces an `:authority` that
//! is not a valid authority with `localhost` (what a unix socket is), and encodes the block
//! again for h2 (with its own table, which h2 then tracks). Everything else passes as it is.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// h2's default SETTINGS_MAX_FRAME_SIZE: re-encoded blocks are split to fit it.
const MAX_FRAME: usize = 16_384;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A header block still arriving (HEADERS without END_HEADERS, then CONTINUATIONs).
struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// The client-to-server byte rewriter.
pub struct Rewriter {
    input: Vec<u8>,
    preface_seen: bool,
    decoder: hpack::Decoder<'static>,
    encoder: hpack::Encoder<'static>,
    pending: Option<Pending>,
    /// Requests whose `:authority` was replaced.
    pub fixed: u64,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            input: Vec::new(),
            preface_seen: false,
            decoder: hpack::Decoder::new(),
            encoder: hpack::Encoder::new(),
            pending: None,
            fixed: 0,
        }
    }
}

fn frame_header(len: usize, kind: u8, flags: u8, stream: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

impl Rewriter {
    /// Takes bytes read from the client; appends to `out` what h2 may read now.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.input.extend_from_slice(bytes);
        let mut at = 0;
        if !self.preface_seen {
            if self.input.len() < PREFACE.len() {
                return Ok(());
            }
            out.extend_from_slice(&self.input[..PREFACE.len()]);
            at = PREFACE.len();
            self.preface_seen = true;
        }
        while self.input.len() - at >= 9 {
            let h = &self.input[at..at + 9];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            if self.input.len() - at < 9 + len {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let frame = at..at + 9 + len;
            at += 9 + len;
            match kind {
                HEADERS => {
                    // Copied out: the header block is rewritten through `self`.
                    let frame = self.input[frame].to_vec();
                    self.headers(stream, flags, &frame[9..], &frame, out)?
                }
                CONTINUATION if self.pending.is_some() => {
                    let p = self.pending.as_mut().expect("checked");
                    p.block
                        .extend_from_slice(&self.input[frame.start + 9..frame.end]);
                    if flags & END_HEADERS != 0 {
                        let p = self.pending.take().expect("checked");
                        self.emit(p, out)?;
                    }
                }
                // DATA (client-record uploads) and every other frame pass as they are.
                _ => out.extend_from_slice(&self.input[frame]),
            }
        }
        self.input.drain(..at);
        Ok(())
    }

    fn headers(
        &mut self,
        stream: u32,
        flags: u8,
        payload: &[u8],
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut p = payload;
        let mut pad = 0;
        if flags & PADDED != 0 {
            let Some((&n, rest)) = p.split_first() else {
                // Malformed: h2 will say so.
                out.extend_from_slice(frame);
                return Ok(());
            };
            pad = n as usize;
            p = rest;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 && p.len() >= 5 {
            priority = Some(p[..5].try_into().expect("5 bytes"));
            p = &p[5..];
        }
        if pad > p.len() {
            out.extend_from_slice(frame);
            return Ok(());
        }
        let pending = Pending {
            stream,
            flags,
            priority,
            block: p[..p.len() - pad].to_vec(),
        };
        if flags & END_HEADERS != 0 {
            self.emit(pending, out)
        } else {
            self.pending = Some(pending);
            Ok(())
        }
    }

    /// Decodes a whole header block, fixes its `:authority` and writes it as HEADERS (and
    /// CONTINUATION) frames.
    fn emit(&mut self, p: Pending, out: &mut Vec<u8>) -> io::Result<()> {
        let mut fields = self.decoder.decode(&p.block).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a client's HTTP/2 header block does not decode: {e:?}"),
            )
        })?;
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority"
                && http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                *value = b"localhost".to_vec();
                self.fixed += 1;
            }
        }
        let block = self
            .encoder
            .encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut first = true;
        let mut rest: &[u8] = &block;
        loop {
            let room = MAX_FRAME - if first && p.priority.is_some() { 5 } else { 0 };
            let (chunk, after) = rest.split_at(rest.len().min(room));
            let last = after.is_empty();
            let end = if last { END_HEADERS } else { 0 };
            if first {
                let flags =
                    (p.flags & END_STREAM) | end | if p.priority.is_some() { PRIORITY } else { 0 };
                let prio = p.priority.map_or(0, |_| 5);
                frame_header(chunk.len() + prio, HEADERS, flags, p.stream, out);
                if let Some(pr) = p.priority {
                    out.extend_from_slice(&pr);
                }
            } else {
                frame_header(chunk.len(), CONTINUATION, end, p.stream, out);
            }
            out.extend_from_slice(chunk);
            first = false;
            rest = after;
            if last {
                return Ok(());
            }
        }
    }
}

/// A connection whose client-to-server bytes pass through a [`Rewriter`].
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    ready: Vec<u8>,
    served: usize,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            ready: Vec::new(),
            served: 0,
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.served < me.ready.len() {
                let n = buf.remaining().min(me.ready.len() - me.served);
                buf.put_slice(&me.ready[me.served..me.served + n]);
                me.served += n;
                if me.served == me.ready.len() {
                    me.ready.clear();
                    me.served = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.eof {
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16_384];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // The client closed: what is left unparsed goes on as it was.
                    me.eof = true;
                    me.ready.append(&mut me.rewriter.input);
                }
                Poll::Ready(Ok(())) => me.rewriter.push(rb.filled(), &mut me.ready)?,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's request headers as grpc-core sends them over a unix socket, encoded by an
    /// HPACK encoder of its own (with a dynamic table), framed in HEADERS and CONTINUATION.
    fn client_frames(enc: &mut hpack::Encoder<'static>, stream: u32, split: bool) -> Vec<u8> {
        let block = enc.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/trafficbench.v1.Tbd/GetInfo"),
            (b":authority", b"tmp%2Fg1%2Fs.sock"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]);
        let mut out = Vec::new();
        if split {
            let (a, b) = block.split_at(block.len() / 2);
            // PADDED with 3 bytes of padding, and a priority.
            frame_header(
                a.len() + 1 + 5 + 3,
                HEADERS,
                PADDED | PRIORITY,
                stream,
                &mut out,
            );
            out.push(3);
            out.extend_from_slice(&[0, 0, 0, 0, 15]);
            out.extend_from_slice(a);
            out.extend_from_slice(&[0; 3]);
            frame_header(b.len(), CONTINUATION, END_HEADERS, stream, &mut out);
            out.extend_from_slice(b);
        } else {
            frame_header(block.len(), HEADERS, END_HEADERS, stream, &mut out);
            out.extend_from_slice(&block);
        }
        out
    }

    /// Decodes the frames the rewriter gave h2: every header block, with h2's view of it.
    fn server_view(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        assert!(bytes.starts_with(PREFACE));
        let mut dec = hpack::Decoder::new();
        let (mut at, mut blocks, mut block) = (PREFACE.len(), Vec::new(), Vec::new());
        while at < bytes.len() {
            let h = &bytes[at..at + 9];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let p = &bytes[at + 9..at + 9 + len];
            match h[3] {
                HEADERS => block.extend_from_slice(if h[4] & PRIORITY != 0 { &p[5..] } else { p }),
                CONTINUATION => block.extend_from_slice(p),
                _ => {}
            }
            if matches!(h[3], HEADERS | CONTINUATION) && h[4] & END_HEADERS != 0 {
                blocks.push(dec.decode(&block).unwrap());
                block.clear();
            }
            at += 9 + len;
        }
        blocks
    }

    #[test]
    fn a_percent_encoded_authority_becomes_localhost_across_frames_and_dynamic_tables() {
        let mut enc = hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        // A SETTINGS frame passes through untouched.
        frame_header(0, 0x4, 0, 0, &mut input);
        input.extend(client_frames(&mut enc, 1, false));
        // The second request's headers come from the client's dynamic table, split and padded.
        input.extend(client_frames(&mut enc, 3, true));
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        // Fed a byte at a time: frames arrive cut anywhere.
        for b in &input {
            r.push(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(r.fixed, 2);
        assert_eq!(
            &out[PREFACE.len()..PREFACE.len() + 9],
            &input[PREFACE.len()..PREFACE.len() + 9]
        );
        let blocks = server_view(&out);
        assert_eq!(blocks.len(), 2);
        for b in &blocks {
            let auth = b.iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(auth.1, b"localhost");
            let path = b.iter().find(|(n, _)| n == b":path").unwrap();
            assert_eq!(path.1, b"/trafficbench.v1.Tbd/GetInfo");
            assert_eq!(b.len(), 6);
        }
    }

    #[test]
    fn a_valid_authority_is_kept() {
        let mut enc = hpack::Encoder::new();
        let block = enc.encode(vec![(&b":authority"[..], &b"localhost:50051"[..])]);
        let mut input = PREFACE.to_vec();
        frame_header(
            block.len(),
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &mut input,
        );
        input.extend_from_slice(&block);
        let (mut r, mut out) = (Rewriter::default(), Vec::new());
        r.push(&input, &mut out).unwrap();
        assert_eq!(r.fixed, 0);
        assert_eq!(
            out[PREFACE.len() + 4],
            END_HEADERS | END_STREAM,
            "flags kept"
        );
        assert_eq!(server_view(&out)[0][0].1, b"localhost:50051");
    }
}
