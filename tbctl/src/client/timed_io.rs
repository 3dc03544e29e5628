//! A TCP stream that stamps its own syscalls: the first write of a request and every read
//! that returned data, in CLOCK_MONOTONIC ns. The request's send time is then when its bytes
//! really went to the kernel, not when the event loop got round to it.
//!
//! With socket arrivals on, each read also says when its data reached the socket: the kernel's
//! software receive stamp (SO_TIMESTAMPING) of the last segment the read returned, which is
//! what tbd's arrival probes report for the same read, without tbd.

use std::{
    io,
    mem::MaybeUninit,
    os::fd::AsRawFd,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::TcpStream,
};

use crate::clock::{mono_ns, unix_ns};

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
    /// Arrival at the socket (CLOCK_MONOTONIC) of the last segment the latest read returned;
    /// 0 when socket arrivals are off or the kernel gave no stamp.
    pub last_arrival_ns: AtomicU64,
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

    /// When the data of the latest read reached the socket, where socket arrivals are on.
    pub fn last_arrival(&self) -> Option<u64> {
        Self::get(&self.last_arrival_ns)
    }
}

/// The stamping stream.
pub struct TimedStream {
    inner: TcpStream,
    stamps: Arc<Stamps>,
    arrivals: bool,
}

impl TimedStream {
    /// Wraps a connected stream.
    pub fn new(inner: TcpStream, stamps: Arc<Stamps>) -> Self {
        Self {
            inner,
            stamps,
            arrivals: false,
        }
    }

    /// Asks the kernel for a software receive stamp on every segment (SO_TIMESTAMPING), so
    /// each read also stamps when its data arrived. Call before any data arrives: a segment
    /// queued earlier has no stamp, and its read records none.
    pub fn with_socket_arrivals(mut self) -> io::Result<Self> {
        let flags = libc::SOF_TIMESTAMPING_RX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;
        // SAFETY: a valid socket and a c_uint option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_TIMESTAMPING,
                (&flags as *const libc::c_uint).cast(),
                std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.arrivals = true;
        Ok(self)
    }

    fn note_read(&self, n: usize, arrival_unix_ns: Option<u64>) {
        let now = mono_ns();
        let s = &self.stamps;
        s.last_read_ns.store(now, Relaxed);
        if s.first_read_ns.load(Relaxed) == 0 {
            s.first_read_ns.store(now, Relaxed);
        }
        s.bytes_read.fetch_add(n as u64, Relaxed);
        if self.arrivals {
            let arrival = arrival_unix_ns.map_or(0, |a| unix_to_mono(a).max(1));
            s.last_arrival_ns.store(arrival, Relaxed);
        }
    }

    /// One read with its receive stamp, as the readiness loop of `poll_read` needs it.
    fn poll_read_stamped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            std::task::ready!(self.inner.poll_read_ready(cx))?;
            let fd = self.inner.as_raw_fd();
            // SAFETY: recv_stamped only writes initialised bytes into the unfilled part and
            // says how many; those are marked initialised below.
            let unfilled = unsafe { buf.unfilled_mut() };
            match self
                .inner
                .try_io(Interest::READABLE, || recv_stamped(fd, unfilled))
            {
                Ok((n, arrival)) => {
                    // SAFETY: the kernel wrote n bytes into the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 {
                        self.note_read(n, arrival);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// A wall-clock time (the kernel's receive stamps) on the monotonic clock, by the two clocks'
/// difference read now, so a clock step during a run does not shift it.
fn unix_to_mono(unix: u64) -> u64 {
    unix_to_mono_by(unix, || (unix_ns(), mono_ns(), unix_ns()))
}

/// Wall-clock reads further apart than this (preempted in between) are taken again: they would
/// move the stamp by as much.
const CLOCK_PAIR_SPREAD_NS: u64 = 2_000;

/// [`unix_to_mono`] with its clock reads given, (wall, monotonic, wall) per call: of up to four
/// such reads the first whose wall reads are less than [`CLOCK_PAIR_SPREAD_NS`] apart, else the
/// tightest; the monotonic read is paired with the middle of its two wall reads.
fn unix_to_mono_by(unix: u64, mut read: impl FnMut() -> (u64, u64, u64)) -> u64 {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..4 {
        let (before, mono, after) = read();
        let spread = after.saturating_sub(before);
        if spread < best.0 {
            best = (spread, mono, before + spread / 2);
        }
        if spread < CLOCK_PAIR_SPREAD_NS {
            break;
        }
    }
    let (_, mono, wall) = best;
    (mono + unix).saturating_sub(wall)
}

/// SO_TIMESTAMPING (SO_TIMESTAMPING_OLD in asm-generic/socket.h): with a 64-bit time_t its
/// control message carries 64-bit timespecs, which is what 64-bit targets have.
#[cfg(target_pointer_width = "64")]
const SO_TIMESTAMPING: libc::c_int = 37;

/// recvmsg(2) into `buf`, with the software receive stamp (Unix ns) of the last segment it
/// returned, when the kernel gave one.
fn recv_stamped(fd: i32, buf: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one scm_timestamping (three timespecs) and its header; u64s for alignment.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg describes valid buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut arrival = None;
    // SAFETY: walking the control messages the kernel wrote, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPING {
                // scm_timestamping: [software, deprecated, hardware]; only the first is set.
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                arrival = (ns > 0).then_some(ns);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, arrival))
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.arrivals {
            return self.poll_read_stamped(cx, buf);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.note_read(n, None);
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

    #[tokio::test]
    async fn socket_arrivals_stamp_when_the_last_segment_of_a_read_arrived() {
        let (c, stamps, mut s) = pair().await;
        let mut c = c.with_socket_arrivals().expect("SO_TIMESTAMPING");
        let ms = std::time::Duration::from_millis;
        // Two writes 30 ms apart, read only 30 ms after the second: one read returns both.
        let before_first = mono_ns();
        s.write_all(b"ab").await.unwrap();
        tokio::time::sleep(ms(30)).await;
        let before_second = mono_ns();
        s.write_all(b"cd").await.unwrap();
        let after_second = mono_ns();
        tokio::time::sleep(ms(30)).await;
        let mut got = [0u8; 8];
        let n = c.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"abcd");
        let arrival = stamps.last_arrival().expect("a receive stamp");
        // The read's arrival is its last segment's, on the monotonic clock: inside the second
        // write (loopback delivers within the send), 30 ms before the read returned.
        assert!(
            before_second <= arrival && arrival <= after_second + 1_000_000,
            "arrival {} ms after the second write began",
            (arrival as f64 - before_second as f64) / 1e6
        );
        assert!(arrival > before_first);
        assert!(stamps.last_read() >= arrival + 25_000_000);
        assert_eq!(stamps.bytes_read.load(Relaxed), 4);

        // End of stream: no data, nothing stamped.
        drop(s);
        assert_eq!(c.read(&mut got).await.unwrap(), 0);
        assert_eq!(stamps.last_arrival(), Some(arrival));
    }

    #[tokio::test]
    async fn without_socket_arrivals_reads_carry_no_arrival() {
        let (mut c, stamps, mut s) = pair().await;
        s.write_all(b"ab").await.unwrap();
        let mut got = [0u8; 2];
        c.read_exact(&mut got).await.unwrap();
        assert!(stamps.first_read().is_some());
        assert_eq!(stamps.last_arrival(), None);
    }

    /// Clock reads for `unix_to_mono_by`, in turn, counting how many were taken.
    fn reads(
        v: &[(u64, u64, u64)],
    ) -> (
        impl FnMut() -> (u64, u64, u64) + '_,
        std::rc::Rc<std::cell::Cell<usize>>,
    ) {
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let t = taken.clone();
        let f = move || {
            let i = t.get();
            t.set(i + 1);
            v[i]
        };
        (f, taken)
    }

    #[test]
    fn wall_times_move_to_the_monotonic_clock_by_the_tightest_pair_of_reads() {
        // One tight read: the monotonic read pairs with the middle of its wall reads (1,050).
        let (f, n) = reads(&[(1_000, 500, 1_100)]);
        assert_eq!((unix_to_mono_by(2_000, f), n.get()), (1_450, 1));
        // Preempted reads (5,000 and 2,000 ns apart) are taken again; the first under 2 µs wins.
        let v = [
            (0, 10, 5_000),
            (10_000, 10_500, 12_000),
            (20_000, 20_100, 20_300),
            (30_000, 30_000, 30_010),
        ];
        let (f, n) = reads(&v);
        assert_eq!(
            (unix_to_mono_by(40_000, f), n.get()),
            (20_100 + 40_000 - 20_150, 3)
        );
        // Never a tight pair: four reads, the tightest kept (the first of two equal ones).
        let v = [
            (0, 10, 5_000),
            (10_000, 10_500, 12_500),
            (20_000, 20_100, 22_500),
            (30_000, 30_000, 33_000),
        ];
        let (f, n) = reads(&v);
        assert_eq!(
            (unix_to_mono_by(40_000, f), n.get()),
            (10_500 + 40_000 - 11_250, 4)
        );
        // The real clocks: a wall time read now lands next to the monotonic time read with it.
        let (wall, mono) = (unix_ns(), mono_ns());
        assert!(unix_to_mono(wall).abs_diff(mono) < 1_000_000);
    }

    #[tokio::test]
    async fn with_socket_arrivals_a_read_waits_for_data_and_reports_a_reset() {
        let (c, stamps, mut s) = pair().await;
        let mut c = c.with_socket_arrivals().expect("SO_TIMESTAMPING");
        let mut got = [0u8; 8];
        // The first socket on the host to ask for receive stamps turns them on in a kernel work
        // item, so a segment right after it may come unstamped: write until one is stamped.
        let first = loop {
            s.write_all(b"ab").await.unwrap();
            assert_eq!(c.read(&mut got).await.unwrap(), 2);
            if let Some(t) = stamps.last_arrival() {
                break t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        };
        // Nothing queued now: the next read must wait (the socket answers EAGAIN first), not
        // fail, and return the bytes written later with their own arrival.
        let writer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(b"cd").await.unwrap();
            s
        });
        assert_eq!(c.read(&mut got).await.unwrap(), 2);
        assert_eq!(&got[..2], b"cd");
        assert!(stamps.last_arrival().unwrap() > first);
        // A reset is an error, at once (not a loop waiting for readiness).
        let s = writer.await.unwrap();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a linger struct of the right size.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        drop(s);
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut got))
            .await
            .expect("the read returns");
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    }
}
