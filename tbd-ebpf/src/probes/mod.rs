//! The programs and maps. Tracepoint field offsets are those of `events/*/format` on the
//! project's kernels; tbd checks them against the running kernel before it attaches.
//!
//! One file per concern; this one holds the maps and the helpers they share.

mod accept;
mod arrival;
mod close;
mod connect;
mod data;
mod dns;
mod process;
mod state;

use core::{ffi::c_void, mem::size_of, ptr::addr_of_mut};

use aya_ebpf::bindings::{bpf_sock, pt_regs};
use aya_ebpf::EbpfContext;
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes, generated,
    },
    macros::{cgroup_skb, map, tracepoint, uprobe, uretprobe},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext, SkBuffContext, TracePointContext},
};
use tbd_common::{
    kind, lost, op, sock_bucket, tcp_state, AcceptArgs, AcceptEvent, ArrivalEvent, Chunk,
    CloseEvent, ConnectEvent, DataEvent, DnsEvent, EventHeader, ListenInfo, PeerEvent,
    RetransmitEvent, SockAddr, SockInfo, SockKey, StateEvent, WriteStart, BATCH_HEADER_LEN,
    BATCH_LEN, COMM_LEN, DNS_NAME_LEN, PREFIX_LEN, SK_TABLE_SCALE, SOCK_SLOTS, SOCK_WAYS,
    WRITE_SLOTS,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
/// listen(2) on x86_64.
const SYS_LISTEN: u64 = 50;
const EINPROGRESS: i64 = 115;
/// BPF_RB_NO_WAKEUP: a wake-up per event would cost more than the event; tbd drains the ring
/// buffer on a short timer instead.
const NO_WAKEUP: u64 = 1;

/// Offsets of syscall tracepoint arguments (`field:... offset:N`).
const ARG0: usize = 16;
const ARG1: usize = 24;
const SYS_RET: usize = 16;
/// Where a receive call's `flags` argument sits: none, rdx (recvmsg's third argument) or r10
/// (recvfrom's fourth).
const NO_FLAGS: u8 = 0;
const FLAGS_RDX: u8 = 1;
const FLAGS_R10: u8 = 2;
const MSG_PEEK: u64 = 2;

/// How a data syscall's second argument points at the bytes.
const BUF_PLAIN: u8 = 0;
const BUF_IOVEC: u8 = 1;
const BUF_MSGHDR: u8 = 2;
/// sendmmsg's `struct mmsghdr` array: the first message's header leads it, and the call
/// returns a count of messages, so the bytes are summed from each `msg_len`.
const BUF_MMSGHDR: u8 = 3;
/// `sizeof(struct mmsghdr)` and the offset of `msg_len` in it, on 64-bit.
const MMSGHDR_SIZE: u64 = 64;
const MMSGHDR_LEN_AT: u64 = 56;
/// Messages of one sendmmsg whose bytes are summed: glibc's resolver sends two (A and AAAA).
const MMSG_MAX: i64 = 4;

/// Processes whose outgoing connections are tracked (tgid -> 1): the registry user space
/// lists and clears. Probes test [`TRACKED_TGIDS`] instead.
#[map]
static TRACKED_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);
/// The filter every per-syscall probe tests first: nonzero at a tgid that may own a tracked
/// socket (a tracked process or child of one, or a holder of a tracked listener). An array
/// lookup is inlined by the verifier (no hashing, no helper call), so the syscalls of every
/// other process on the host pay little beyond the tracepoint's own dispatch. tbd sizes it to
/// the host's pid_max when it loads the object.
#[map]
static TRACKED_TGIDS: Array<u8> = Array::with_max_entries(32768, 0);
/// Local TCP ports whose server-side sockets are tracked (port -> 1).
#[map]
static TRACKED_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(256, 0);
/// Listening sockets (tgid, fd) whose accepted connections are tracked.
#[map]
static LISTENERS: HashMap<SockKey, ListenInfo> = HashMap::with_max_entries(1024, 0);
/// Processes forked during a capture by a listener holder (a server's worker, respawned or
/// added), by tgid: the holder whose listening fds they inherited. Their accepts on those fds
/// are tracked too.
#[map]
static SERVER_CHILDREN: HashMap<u32, u32> = HashMap::with_max_entries(4096, 0);
/// Tracked sockets by (tgid, fd), the filter every data syscall checks first: their tags
/// ([`SockKey::tag`], 0 free) in buckets of [`SOCK_WAYS`] slots ([`sock_bucket`]), and in the
/// same slot of [`SOCK_VALS`] their state. Array lookups are inlined by the verifier; a slot is
/// claimed with a compare-and-swap, since two CPUs may track sockets of one bucket at once.
#[map]
static SOCK_TAGS: Array<u64> = Array::with_max_entries(SOCK_SLOTS, 0);
/// The tracked sockets' state, slot for slot with [`SOCK_TAGS`].
#[map]
static SOCK_VALS: Array<SockInfo> = Array::with_max_entries(SOCK_SLOTS, 0);
/// log2 of the table's buckets, set by tbd at load with the arrays' size (`--max-sockets`).
#[no_mangle]
static SOCK_BUCKET_BITS: u32 = 11;

/// The first slot of `tag`'s bucket in a table of `2^bits` buckets, `bits` one of the globals
/// tbd sets at load ([`SOCK_BUCKET_BITS`], [`SK_BUCKET_BITS`]).
#[inline(always)]
fn bucket_of(tag: u64, bits: &'static u32) -> u32 {
    // SAFETY: a load of a read-only global set at load time.
    sock_bucket(tag, unsafe { core::ptr::read_volatile(bits) })
}

/// Tracked kernel sockets by `struct sock` address (the tag; 0 free), for the arrival program
/// and the state and retransmit tracepoints: buckets of [`SOCK_WAYS`] like [`SOCK_TAGS`], with
/// [`SK_TABLE_SCALE`] times its slots. The arrival program runs on every segment a tracked
/// socket gets; a hash map's lookup there (a call, jhash, a bucket head and an element, each a
/// cache miss at saturation) was most of its cost.
#[map]
static SK_TAGS: Array<u64> = Array::with_max_entries(SOCK_SLOTS * SK_TABLE_SCALE, 0);
/// log2 of [`SK_TAGS`]' buckets, set by tbd at load.
#[no_mangle]
static SK_BUCKET_BITS: u32 = 13;

/// Where the arrival program turns its socket pointer into a number ([`arrival`]'s
/// `address_of`), per CPU.
#[map]
static SK_ADDRESS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
/// connect() calls in flight from tracked processes, by pid_tgid.
#[map]
static CONNECTS: HashMap<u64, ConnectArgs> = HashMap::with_max_entries(4096, 0);
/// accept() calls in flight on tracked listeners, by pid_tgid.
#[map]
static ACCEPTS: HashMap<u64, AcceptArgs> = HashMap::with_max_entries(4096, 0);
/// getaddrinfo() calls in flight in tracked processes, by pid_tgid.
#[map]
static DNS_INFLIGHT: HashMap<u64, DnsArgs> = HashMap::with_max_entries(1024, 0);
/// Start of each thread's write in progress, by tid modulo the size: one inlined array store
/// in the enter probe, where a lookup of the socket would scan its bucket of the table. Per thread,
/// not per CPU, so a write that blocks and resumes elsewhere keeps its start.
#[map]
static WRITE_STARTS: Array<WriteStart> = Array::with_max_entries(WRITE_SLOTS, 0);
/// When the running capture attached its probes (monotonic ns), set by tbd before it
/// attaches: a write start stamped before it belongs to an earlier capture, whose exit no
/// probe saw.
#[map]
static CAPTURE_START: Array<u64> = Array::with_max_entries(1, 0);
/// Events to user space.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);
/// Events lost, per reason (`tbd_common::lost`), per CPU: atomics do not build for bpf.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::COUNT, 0);

#[derive(Clone, Copy)]
#[repr(C)]
struct ConnectArgs {
    ts: u64,
    fd: i32,
    _pad: u32,
    dst: SockAddr,
}

/// `struct iovec`: one segment of a vectored read or write.
#[derive(Clone, Copy)]
#[repr(C)]
struct Iovec {
    base: u64,
    len: u64,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct DnsArgs {
    ts: u64,
    name: [u8; DNS_NAME_LEN],
}

#[inline(always)]
fn count_lost(reason: u32) {
    if let Some(p) = LOST.get_ptr_mut(reason) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *p += 1 };
    }
}

/// Sends an event (or a record's leading bytes), counting it lost when the ring buffer is
/// full.
#[inline(always)]
fn emit<T: ?Sized + 'static>(ev: &T) {
    if EVENTS.output::<T>(ev, NO_WAKEUP).is_err() {
        count_lost(lost::RINGBUF_FULL);
    }
}

/// Sets `*p` to `v` if it is 0; whether this call did.
#[inline(always)]
fn claim(p: *mut u64, v: u64) -> bool {
    // SAFETY: `p` points at an aligned u64 of a map value; BPF_CMPXCHG is atomic on it.
    unsafe {
        core::intrinsics::atomic_cxchg::<
            u64,
            { core::intrinsics::AtomicOrdering::SeqCst },
            { core::intrinsics::AtomicOrdering::SeqCst },
        >(p, 0, v)
        .1
    }
}

/// The slot of bucket `first` of `tags` holding `tag`, if any.
#[inline(always)]
fn find_tag(tags: &Array<u64>, tag: u64, first: u32) -> Option<u32> {
    // Counted loops, which LLVM unrolls: an iterator's `find` stays a loop the verifier
    // walks state by state.
    for i in 0..SOCK_WAYS {
        if matches!(tags.get(first + i), Some(t) if *t == tag) {
            return Some(first + i);
        }
    }
    None
}

/// A free slot of bucket `first` of `tags`, claimed for `tag`; None when the bucket is full.
#[inline(always)]
fn claim_slot(tags: &Array<u64>, tag: u64, first: u32) -> Option<u32> {
    for i in 0..SOCK_WAYS {
        if let Some(t) = tags.get_ptr_mut(first + i) {
            if claim(t, tag) {
                return Some(first + i);
            }
        }
    }
    None
}

/// The slot of bucket `first` of `tags` holding `tag`, or one claimed for it; None when the
/// bucket is full.
#[inline(always)]
fn find_or_claim(tags: &Array<u64>, tag: u64, first: u32) -> Option<u32> {
    find_tag(tags, tag, first).or_else(|| claim_slot(tags, tag, first))
}

/// The table slot holding socket `key`, if it is tracked.
#[inline(always)]
fn socket_slot(key: SockKey) -> Option<u32> {
    let tag = key.tag();
    find_tag(&SOCK_TAGS, tag, bucket_of(tag, &SOCK_BUCKET_BITS))
}

/// Whether the kernel socket at `skaddr` is tracked.
#[inline(always)]
fn sk_tracked(skaddr: u64) -> bool {
    find_tag(&SK_TAGS, skaddr, bucket_of(skaddr, &SK_BUCKET_BITS)).is_some()
}

/// Tracks the kernel socket at `skaddr` (again: state changes repeat it); a full bucket is
/// counted as a loss.
#[inline(always)]
fn track_sk(skaddr: u64) {
    if find_or_claim(&SK_TAGS, skaddr, bucket_of(skaddr, &SK_BUCKET_BITS)).is_none() {
        count_lost(lost::SOCKETS_FULL);
    }
}

/// Stops tracking the kernel socket at `skaddr`.
#[inline(always)]
fn untrack_sk(skaddr: u64) {
    if let Some(slot) = find_tag(&SK_TAGS, skaddr, bucket_of(skaddr, &SK_BUCKET_BITS)) {
        free_slot(&SK_TAGS, slot);
    }
}

/// The state of socket `key`, if it is tracked.
#[inline(always)]
fn socket(key: SockKey) -> Option<*mut SockInfo> {
    SOCK_VALS.get_ptr_mut(socket_slot(key)?)
}

/// Starts tracking socket `key` on `side`, in the slot it already holds (a close that went
/// unseen) or a free one of its bucket; a full bucket is counted as a loss.
#[inline(always)]
fn track_socket(key: SockKey, side: u32) {
    let tag = key.tag();
    let slot = find_or_claim(&SOCK_TAGS, tag, bucket_of(tag, &SOCK_BUCKET_BITS));
    let Some(v) = slot.and_then(|s| SOCK_VALS.get_ptr_mut(s)) else {
        count_lost(lost::SOCKETS_FULL);
        return;
    };
    // SAFETY: this socket's slot; the chunks need no clearing while `n` is 0.
    unsafe {
        (*v).side = side;
        (*v).last_op = op::NONE;
        (*v).batch.fd = key.fd as i32;
        (*v).batch.n = 0;
        (*v).batch._pad = 0;
    }
}

/// Stops tracking the socket in `slot`.
#[inline(always)]
fn untrack_socket(slot: u32) {
    free_slot(&SOCK_TAGS, slot);
}

/// Frees `slot` of `tags`.
#[inline(always)]
fn free_slot(tags: &Array<u64>, slot: u32) {
    if let Some(t) = tags.get_ptr_mut(slot) {
        // SAFETY: an aligned 8-byte store, atomic for a concurrent reader.
        unsafe { core::ptr::write_volatile(t, 0) };
    }
}

#[inline(always)]
fn header(kind: u32, id: u64, ts: u64) -> EventHeader {
    EventHeader {
        kind,
        pid: (id >> 32) as u32,
        tid: id as u32,
        _pad: 0,
        ts_ns: ts,
    }
}

/// A syscall tracepoint's 8-byte field at `off`. A direct context load, which the verifier
/// allows for tracepoint programs at aligned offsets, where `read_at` would call a helper.
#[inline(always)]
fn arg(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: `off` is a field offset of the tracepoint's format (checked by tbd against
    // tracefs), 8-byte aligned, inside the record the context points at.
    unsafe { *((ctx.as_ptr() as *const u8).add(off) as *const u64) }
}

/// Whether `tgid` may own a tracked socket: the first test of every per-syscall probe.
#[inline(always)]
fn tgid_tracked(tgid: u32) -> bool {
    matches!(TRACKED_TGIDS.get(tgid), Some(v) if *v != 0)
}

/// Whether `tgid` is a tracked client (named by the capture, or a child of one): the fast
/// filter first, then the registry, since a listener holder passes the filter too.
#[inline(always)]
fn client_tracked(tgid: u32) -> bool {
    // SAFETY: plain value read of a map entry.
    tgid_tracked(tgid) && unsafe { TRACKED_PIDS.get(&tgid) }.is_some()
}

/// Sets or clears `tgid` in the fast filter.
#[inline(always)]
fn set_tgid(tgid: u32, on: u8) {
    if let Some(p) = TRACKED_TGIDS.get_ptr_mut(tgid) {
        // SAFETY: a plain byte store into an array element.
        unsafe { *p = on };
    }
}

#[inline(always)]
fn read_user<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user faults safely on bad addresses.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

#[inline(always)]
fn empty_addr() -> SockAddr {
    SockAddr {
        family: 0,
        port: 0,
        addr: [0; 16],
    }
}

/// Reads a user `struct sockaddr_in`/`sockaddr_in6`; None for other families.
#[inline(always)]
fn read_sockaddr(ptr: u64) -> Option<SockAddr> {
    if ptr == 0 {
        return None;
    }
    let family: u16 = read_user(ptr)?;
    let port = u16::from_be(read_user::<u16>(ptr + 2)?);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            let a: [u8; 4] = read_user(ptr + 4)?;
            addr[0] = a[0];
            addr[1] = a[1];
            addr[2] = a[2];
            addr[3] = a[3];
        }
        AF_INET6 => addr = read_user(ptr + 8)?,
        _ => return None,
    }
    Some(SockAddr { family, port, addr })
}

fn comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
}

/// The calling task's saved user registers (its syscall arguments).
#[inline(always)]
fn user_regs() -> *const pt_regs {
    // SAFETY: both helpers are valid in any tracing program; the result is a trusted kernel
    // pointer whose loads the verifier checks against the kernel's BTF.
    unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) as *const pt_regs }
}

/// Sends a socket's held continuation chunks and empties the batch.
#[inline(always)]
fn flush_batch(id: u64, info: *mut SockInfo, now: u64) {
    // SAFETY: `info` is a live map value of this program's socket; the batch is sent from it
    // as it stands (one kernel copy, no stack or scratch copy), its header and valid chunks
    // only: `n` is at most BATCH_LEN, so the slice stays inside the map value.
    unsafe {
        let b = addr_of_mut!((*info).batch);
        let n = (*b).n as usize;
        if n == 0 || n > BATCH_LEN {
            return;
        }
        (*b).hdr = header(kind::DATA_BATCH, id, now);
        (*b).op = (*info).last_op;
        let len = BATCH_HEADER_LEN + n * size_of::<Chunk>();
        emit::<[u8]>(core::slice::from_raw_parts(b as *const u8, len));
        (*b).n = 0;
    }
}
