//! A TCP stream that stamps its own syscalls: the first write of a request and every read
//! that returned data, in CLOCK_MONOTONIC ns. The request's send time is then when its bytes
//! really went to the kernel, not when the event loop got round to it.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::clock::mono_ns;

/// Times shared between the stream (inside hyper) and the request code.
#[derive(Debug, Default)]
pub struct Stamps {
    /// Entry of the first write since the last `arm` (0 = none yet).
    pub first_write_ns: AtomicU64,
    /// Return of the first read with data since the last `arm` (0 = none yet).
    pub first_read_ns: AtomicU64,
    /// Return of the latest read with data.
    pub last_read_ns: AtomicU64,
    /// Bytes read since the last `arm`.
    pub bytes_read: AtomicU64,
}

impl Stamps {
    /// Starts a new request: the next write and read are its first.
    pub fn arm(&self) {
        self.first_write_ns.store(0, Relaxed);
        self.first_read_ns.store(0, Relaxed);
        self.bytes_read.store(0, Relaxed);
    }

    fn get(v: &AtomicU64) -> Option<u64> {
        match v.load(Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// When the request's first byte was written.
    pub fn sent(&self) -> Option<u64> {
        Self::get(&self.first_write_ns)
    }

    /// When the response's first byte was read.
    pub fn first_read(&self) -> Option<u64> {
        Self::get(&self.first_read_ns)
    }

    /// When the latest data was read.
    pub fn last_read(&self) -> u64 {
        self.last_read_ns.load(Relaxed)
    }
}

/// The stamping stream.
pub struct TimedStream {
    inner: TcpStream,
    stamps: Arc<Stamps>,
}

impl TimedStream {
    /// Wraps a connected stream.
    pub fn new(inner: TcpStream, stamps: Arc<Stamps>) -> Self {
        Self { inner, stamps }
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            let now = mono_ns();
            let s = &self.stamps;
            s.last_read_ns.store(now, Relaxed);
            if s.first_read_ns.load(Relaxed) == 0 {
                s.first_read_ns.store(now, Relaxed);
            }
            s.bytes_read.fetch_add(n as u64, Relaxed);
        }
        r
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.stamps.first_write_ns.load(Relaxed) == 0 {
            self.stamps.first_write_ns.store(mono_ns(), Relaxed);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.stamps.first_write_ns.load(Relaxed) == 0 {
            self.stamps.first_write_ns.store(mono_ns(), Relaxed);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A timed client stream and the server's end of its connection.
    async fn pair() -> (TimedStream, Arc<Stamps>, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stamps = Arc::new(Stamps::default());
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (TimedStream::new(c, stamps.clone()), stamps, s)
    }

    #[tokio::test]
    async fn stamps_the_first_write_and_each_read_with_data_until_armed_again() {
        let (mut c, stamps, mut s) = pair().await;
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"ab").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(b"cde").await.unwrap();
            s.read_exact(&mut buf[..1]).await.unwrap();
            // Then close: the client's last read returns no data.
        });
        assert_eq!((stamps.sent(), stamps.first_read()), (None, None));

        stamps.arm();
        let before = mono_ns();
        c.write_all(b"ping").await.unwrap();
        let sent = stamps.sent().expect("the write is stamped");
        assert!(before <= sent && sent <= mono_ns());
        let mut got = [0u8; 5];
        c.read_exact(&mut got[..2]).await.unwrap();
        let first = stamps.first_read().expect("the read is stamped");
        assert!(sent < first && first == stamps.last_read());
        // The caller's buffer already holds the first two bytes: only the new ones count.
        let mut rb = ReadBuf::new(&mut got);
        rb.advance(2);
        while rb.filled().len() < 5 {
            std::future::poll_fn(|cx| Pin::new(&mut c).poll_read(cx, &mut rb))
                .await
                .unwrap();
        }
        assert_eq!(&got, b"abcde");
        // The second read came after the server's pause: it moves the last stamp, not the first.
        assert_eq!(stamps.first_read(), Some(first));
        assert!(stamps.last_read() > first);
        assert_eq!(stamps.bytes_read.load(Relaxed), 5);

        // A new request starts clean; a read at the end of the stream stamps nothing.
        let last = stamps.last_read();
        stamps.arm();
        assert_eq!((stamps.sent(), stamps.first_read()), (None, None));
        assert_eq!(stamps.bytes_read.load(Relaxed), 0);
        c.write_all(b"x").await.unwrap();
        assert!(stamps.sent().is_some_and(|t| t > last));
        server.await.unwrap();
        assert_eq!(c.read(&mut got).await.unwrap(), 0);
        assert_eq!(stamps.first_read(), None);
        assert_eq!(stamps.last_read(), last);
    }

    #[tokio::test]
    async fn a_vectored_write_is_stamped_and_sent_and_shutdown_ends_the_stream() {
        let (mut c, stamps, mut s) = pair().await;
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            // Everything the client sent, up to its shutdown.
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        // hyper writes a request's head and body with one vectored write when it can.
        assert!(c.is_write_vectored());
        stamps.arm();
        let (head, body) = (b"POST /x".as_slice(), b" body".as_slice());
        let mut sent = 0;
        while sent < head.len() + body.len() {
            let bufs = [
                io::IoSlice::new(head.get(sent..).unwrap_or_default()),
                io::IoSlice::new(&body[sent.saturating_sub(head.len())..]),
            ];
            let n = c.write_vectored(&bufs).await.unwrap();
            assert!(n > 0);
            sent += n;
        }
        assert!(stamps.sent().is_some(), "a vectored first write is stamped");
        c.flush().await.unwrap();
        c.shutdown().await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("the server saw the stream end")
            .unwrap();
        assert_eq!(got, b"POST /x body");
    }
}
