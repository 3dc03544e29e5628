//! Event layouts shared by the eBPF programs (kernel side) and tbd (user side).
//!
//! Every event starts with [`EventHeader`]; user space reads `kind` and then the whole struct.
//! All times are `bpf_ktime_get_ns` (CLOCK_MONOTONIC ns).
#![no_std]

/// Bytes of payload copied from each tracked read or write: enough for the request line, the
/// first header (`x-tb-rid`) and the status line, nothing more.
pub const PREFIX_LEN: usize = 96;
/// Bytes of a DNS name kept from `getaddrinfo`'s `node` argument.
pub const DNS_NAME_LEN: usize = 64;
/// Length of a task's `comm`.
pub const COMM_LEN: usize = 16;

/// Event kinds (the `kind` field of [`EventHeader`]).
pub mod kind {
    /// A tracked process called connect() (emitted at syscall exit).
    pub const CONNECT: u32 = 1;
    /// A tracked listening socket accepted a connection.
    pub const ACCEPT: u32 = 2;
    /// A read-side or write-side syscall moved bytes on a tracked socket.
    pub const DATA: u32 = 3;
    /// A tracked socket's fd was closed.
    pub const CLOSE: u32 = 4;
    /// A TCP state change of a tracked socket.
    pub const STATE: u32 = 5;
    /// A TCP retransmission on a tracked socket.
    pub const RETRANSMIT: u32 = 6;
    /// A `getaddrinfo` call of a tracked process returned.
    pub const DNS: u32 = 7;
    /// Up to [`BATCH_LEN`](crate::BATCH_LEN) syscalls that moved bytes in the same direction as
    /// the socket's previous one (the middle of a message, so no payload prefix), held in the
    /// kernel and sent together ([`DataBatchEvent`](crate::DataBatchEvent)).
    pub const DATA_BATCH: u32 = 8;
    /// A tracked server socket's peer, as getpeername() returned it to the server
    /// ([`PeerEvent`](crate::PeerEvent)): for servers that accept with a null address.
    pub const PEER: u32 = 9;
    /// A segment with payload reached a tracked socket (cgroup_skb ingress):
    /// [`ArrivalEvent`](crate::ArrivalEvent).
    pub const ARRIVAL: u32 = 10;
}

/// Indices of the per-CPU loss counters (`LOST` map), one per reason an event can be lost.
pub mod lost {
    /// The ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// The in-flight syscall map (enter -> exit) was full.
    pub const INFLIGHT_FULL: u32 = 1;
    /// The tracked-socket table had no free slot in the socket's bucket.
    pub const SOCKETS_FULL: u32 = 2;
    /// The tracked-pid map was full when a tracked process forked (the child goes untracked).
    pub const PIDS_FULL: u32 = 3;
    /// Number of reasons.
    pub const COUNT: u32 = 4;
    /// Human names, indexed by reason.
    pub const NAMES: [&str; COUNT as usize] =
        ["ringbuf_full", "inflight_full", "sockets_full", "pids_full"];
}

/// TCP states as the kernel numbers them (`sock/inet_sock_set_state`'s `oldstate` and
/// `newstate`).
pub mod tcp_state {
    pub const ESTABLISHED: i32 = 1;
    /// Inside connect(), with the connecting fd.
    pub const SYN_SENT: i32 = 2;
    pub const SYN_RECV: i32 = 3;
    /// This side sent its FIN first.
    pub const FIN_WAIT1: i32 = 4;
    /// The socket is done; its address may be reused for another socket.
    pub const CLOSE: i32 = 7;
    /// The peer's FIN came first.
    pub const CLOSE_WAIT: i32 = 8;
    pub const LISTEN: i32 = 10;
}

/// Data direction of a [`DataEvent`].
pub mod op {
    /// read, readv, recvfrom, recvmsg.
    pub const READ: u8 = 0;
    /// write, writev, sendto, sendmsg, sendmmsg.
    pub const WRITE: u8 = 1;
    /// No data moved yet on the socket.
    pub const NONE: u32 = 2;
}

/// Common head of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub kind: u32,
    /// Thread-group id (the process id user space sees).
    pub pid: u32,
    pub tid: u32,
    pub _pad: u32,
    /// When the event happened (for syscalls: at exit).
    pub ts_ns: u64,
}

/// An IPv4 or IPv6 socket address; v4 addresses use the first 4 bytes of `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockAddr {
    /// AF_INET (2) or AF_INET6 (10); 0 when unknown.
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub addr: [u8; 16],
}

/// connect() on a socket of a tracked process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    pub hdr: EventHeader,
    /// When connect() was entered.
    pub ts_enter_ns: u64,
    pub fd: i32,
    /// connect()'s return value (0, or -EINPROGRESS for non-blocking sockets).
    pub ret: i32,
    pub dst: SockAddr,
    pub comm: [u8; COMM_LEN],
}

/// accept()/accept4() on a tracked listening socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AcceptEvent {
    pub hdr: EventHeader,
    pub listen_fd: i32,
    /// The new connection's fd.
    pub fd: i32,
    /// The peer, as accept() reported it.
    pub peer: SockAddr,
    /// The listening port (from the tracked-listener map).
    pub local_port: u16,
    pub _pad: [u8; 6],
    pub comm: [u8; COMM_LEN],
}

/// A syscall that moved bytes on a tracked socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataEvent {
    pub hdr: EventHeader,
    /// When a write was entered (`hdr.ts_ns` is its exit); for reads, equal to `hdr.ts_ns`:
    /// a read's entry says nothing about when its bytes arrived, so reads have no enter probe.
    pub ts_enter_ns: u64,
    pub fd: i32,
    /// Bytes moved (the syscall's return value).
    pub bytes: u32,
    /// [`op::READ`] or [`op::WRITE`].
    pub op: u8,
    pub _pad: u8,
    /// Valid bytes in `prefix`.
    pub prefix_len: u16,
    pub _pad2: u32,
    pub prefix: [u8; PREFIX_LEN],
}

/// One continuation syscall of a tracked socket, held in [`SockInfo::batch`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Chunk {
    /// Syscall exit.
    pub ts_ns: u64,
    /// Syscall entry for writes; equal to `ts_ns` for reads (no enter probe on reads).
    pub ts_enter_ns: u64,
    /// Bytes moved.
    pub bytes: u64,
}

/// Continuation chunks the kernel holds per socket before sending them as one event: a streamed
/// response of 32 tokens costs one ring-buffer record instead of 32.
pub const BATCH_LEN: usize = 32;

/// Continuation chunks of one socket, in order, all in direction `op` (`kind::DATA_BATCH`).
/// Sent when the batch is full, before the socket's next direction change, at close(), or read
/// out of [`SockInfo`] by tbd when a capture stops. The record holds the header and only the
/// `n` valid chunks ([`BATCH_HEADER_LEN`] + n × 24 bytes): a batch flushed by a direction
/// change is usually far from full, and copying its unused entries into the ring buffer would
/// cost every exchange.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DataBatchEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// Valid entries of `chunks`.
    pub n: u32,
    pub op: u32,
    pub _pad: u32,
    pub chunks: [Chunk; BATCH_LEN],
}

/// Bytes of a [`DataBatchEvent`] before its chunks.
pub const BATCH_HEADER_LEN: usize = core::mem::offset_of!(DataBatchEvent, chunks);

/// close() of a tracked socket fd.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CloseEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    pub _pad: u32,
}

/// getpeername() on a tracked server-side socket. Servers built on cpp-httplib (llama.cpp's
/// llama-server) accept with a null address and ask for the peer afterwards; without it their
/// connections would have no 4-tuple to link TCP state and retransmit events by.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PeerEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    pub _pad: u32,
    pub peer: SockAddr,
}

/// A TCP state change (`sock/inet_sock_set_state`) of a tracked socket, or of any socket whose
/// local port is a tracked server port.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StateEvent {
    pub hdr: EventHeader,
    pub skaddr: u64,
    pub oldstate: i32,
    pub newstate: i32,
    /// The fd being connected, when the change happened inside a tracked connect(); else -1.
    pub fd: i32,
    pub _pad: u32,
    pub src: SockAddr,
    pub dst: SockAddr,
}

/// A TCP retransmission (`tcp/tcp_retransmit_skb`) on a tracked socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RetransmitEvent {
    pub hdr: EventHeader,
    pub skaddr: u64,
    pub src: SockAddr,
    pub dst: SockAddr,
}

/// A TCP segment with new payload that reached a tracked socket (a cgroup_skb ingress
/// program, as the TCP receive path filters it; bytes the socket had already are left out):
/// when the bytes arrived, as opposed to when the process read them. `hdr.pid` and `hdr.tid`
/// are 0: the receive runs in no process of the reader's.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ArrivalEvent {
    pub hdr: EventHeader,
    pub skaddr: u64,
    /// Payload bytes of the segment that the socket did not have yet.
    pub bytes: u32,
    /// TCP sequence number of the first of them.
    pub seq: u32,
    /// The socket's next expected sequence number when the segment came: where the stream
    /// stands, for a connection whose first segment seen overtook a lost one.
    pub rcv_nxt: u32,
    pub _pad: u32,
}

/// A `getaddrinfo` call of a tracked process, timed by a uprobe/uretprobe pair.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent {
    pub hdr: EventHeader,
    pub ts_start_ns: u64,
    pub ret: i32,
    pub _pad: u32,
    pub name: [u8; DNS_NAME_LEN],
}

/// A socket of a process: (tgid, fd).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockKey {
    pub pid: u32,
    pub fd: u32,
}

/// Slots of the tracked-socket table unless tbd is given `--max-sockets`: two arrays, the
/// sockets' tags and their values. An array lookup is inlined by the verifier, where a hash
/// map's costs two calls (and each return pays the CPU's return-stack mitigation), on every
/// data syscall of a tracked process.
pub const SOCK_SLOTS: u32 = 1 << 14;
/// Slots per bucket: a socket takes a free one of its bucket's, and a lookup tests them all,
/// one cache line of tags. A table's size is a power of two, at least one bucket.
pub const SOCK_WAYS: u32 = 8;

/// Slots of the table of kernel socket addresses per slot of the (pid, fd) table. A socket
/// is in both, each bucket filled by its own hash; with four times the slots a bucket of the
/// address table is full when the socket's (pid, fd) bucket had room too rarely to matter, so
/// a socket past the limit is lost (and counted) once, not twice.
pub const SK_TABLE_SCALE: u32 = 4;

/// log2 of the number of buckets of a table of `slots` slots.
pub fn sock_bucket_bits(slots: u32) -> u32 {
    (slots / SOCK_WAYS).trailing_zeros()
}

impl SockKey {
    /// The socket's tag in the table, `tgid << 32 | fd`; 0 marks a free slot, and no tracked
    /// process has tgid 0.
    #[inline(always)]
    pub fn tag(self) -> u64 {
        ((self.pid as u64) << 32) | self.fd as u64
    }
}

/// First slot of the bucket a tag belongs to, in a table of `2^bucket_bits` buckets:
/// Fibonacci hashing, whose top bits spread the consecutive fds of one process and the pids
/// of many.
#[inline(always)]
pub fn sock_bucket(tag: u64, bucket_bits: u32) -> u32 {
    // Two shifts: a table of one bucket shifts by 64 in all, more than one shift may.
    ((tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (63 - bucket_bits)) >> 1) as u32 * SOCK_WAYS
}

/// A tracked socket's value in the table.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockInfo {
    /// 0 client side (tbctl or another tracked process connected), 1 server side (accepted).
    pub side: u32,
    /// Direction ([`op`]) of the last data syscall that moved bytes; [`op::NONE`] at first.
    pub last_op: u32,
    /// Continuation chunks not yet sent, kept in event form so that the probe sends them
    /// straight from the map value; only `n` and `chunks` are valid between sends.
    pub batch: DataBatchEvent,
}

/// Entry of a write in progress, in the per-thread slot table the write enter probes fill
/// (slot = tid modulo the table's size). The exit takes the stamp, and the fd from it, only
/// when the tid matches and the stamp is newer than the capture's start; tid and fd share one
/// word, so a slot written at once by two threads never pairs one's tid with the other's fd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteStart {
    pub ts_ns: u64,
    /// `tid << 32 | fd`.
    pub tid_fd: u64,
    /// The write's second argument (buffer, iovec, msghdr or mmsghdr array), so that its exit
    /// need not fetch the saved registers (two helper calls) for the payload prefix.
    pub buf: u64,
}

/// Slots in the write-start table: a power of two, so that a tid masks into it.
pub const WRITE_SLOTS: u32 = 1 << 16;

/// Value of the tracked-listener map, keyed by [`SockKey`] of the listening fd.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ListenInfo {
    pub port: u16,
    pub _pad: [u8; 6],
}

/// The clock every record uses, for user space.
#[cfg(feature = "clock")]
pub mod clock {
    /// Now in CLOCK_MONOTONIC ns: what `bpf_ktime_get_ns` returns, so kernel, client and
    /// sensor times line up without conversion.
    #[inline]
    pub fn mono_ns() -> u64 {
        read(libc::CLOCK_MONOTONIC)
    }

    /// Now in Unix-epoch ns (wall clock), for the (monotonic, wall) pair each run records.
    pub fn unix_ns() -> u64 {
        read(libc::CLOCK_REALTIME)
    }

    #[inline]
    fn read(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// An accept() in flight on a tracked listener, by pid_tgid (enter -> exit). tbd also fills
/// it from /proc for threads already blocked in accept() when a capture starts.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AcceptArgs {
    /// The accept call's `upeer_sockaddr` argument.
    pub peer_ptr: u64,
    pub listen_fd: i32,
    pub port: u16,
    pub _pad: u16,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), Copy, and valid for any bit pattern.
    unsafe impl aya::Pod for SockKey {}
    unsafe impl aya::Pod for SockInfo {}
    unsafe impl aya::Pod for ListenInfo {}
    unsafe impl aya::Pod for AcceptArgs {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    /// Bucket loads of `keys` in the default table: the most sockets any one bucket is asked
    /// to hold.
    fn max_load(keys: impl Iterator<Item = SockKey>) -> usize {
        let mut load = vec![0usize; (SOCK_SLOTS / SOCK_WAYS) as usize];
        for k in keys {
            let b = sock_bucket(k.tag(), sock_bucket_bits(SOCK_SLOTS));
            assert!(
                b.is_multiple_of(SOCK_WAYS) && b + SOCK_WAYS <= SOCK_SLOTS,
                "bucket {b}"
            );
            load[(b / SOCK_WAYS) as usize] += 1;
        }
        load.into_iter().max().unwrap_or(0)
    }

    #[test]
    fn sockets_spread_over_buckets_with_room_to_spare() {
        // A load generator at concurrency 1024 and its server: 2048 consecutive fds in each
        // of two processes.
        let two = (0..2048).flat_map(|fd| [SockKey { pid: 4242, fd }, SockKey { pid: 4300, fd }]);
        assert!(max_load(two) <= SOCK_WAYS as usize / 2);
        // Many processes with a few sockets each, at a quarter of the table.
        let many = (0..1024u32).flat_map(|p| {
            (3..7).map(move |fd| SockKey {
                pid: 1000 + p * 7,
                fd,
            })
        });
        assert!(max_load(many) < SOCK_WAYS as usize);
        assert_ne!(
            SockKey { pid: 1, fd: 0 }.tag(),
            0,
            "a tracked socket's tag is never free"
        );
    }

    #[test]
    fn every_table_size_keeps_buckets_inside_it() {
        for bits in 0..=17 {
            let slots = SOCK_WAYS << bits;
            assert_eq!(sock_bucket_bits(slots), bits);
            let top = (0..5000u32)
                .map(|fd| sock_bucket(SockKey { pid: 77, fd }.tag(), bits))
                .max()
                .unwrap();
            assert!(top + SOCK_WAYS <= slots, "{slots} slots: bucket at {top}");
            if bits > 0 {
                assert!(
                    top >= slots / 2,
                    "{slots} slots: the upper half is never used"
                );
            }
        }
    }
}
