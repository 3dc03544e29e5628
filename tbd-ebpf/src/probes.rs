//! The programs and maps. Tracepoint field offsets are those of `events/*/format` on the
//! project's kernels; tbd checks them against the running kernel before it attaches.

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
    BATCH_LEN, COMM_LEN, DNS_NAME_LEN, PREFIX_LEN, SOCK_SLOTS, SOCK_WAYS, WRITE_SLOTS,
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

/// The first slot of `tag`'s bucket in the table as loaded.
#[inline(always)]
fn bucket_of(tag: u64) -> u32 {
    // SAFETY: a load of a read-only global set at load time.
    sock_bucket(tag, unsafe { core::ptr::read_volatile(&SOCK_BUCKET_BITS) })
}

/// Tracked kernel sockets by `struct sock` address, for state and retransmit tracepoints.
#[map]
static SKS: HashMap<u64, u8> = HashMap::with_max_entries(65536, 0);
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

/// The slot of bucket `first` holding `tag`, if any.
#[inline(always)]
fn find_tag(tag: u64, first: u32) -> Option<u32> {
    // Counted loops, which LLVM unrolls: an iterator's `find` stays a loop the verifier
    // walks state by state.
    for i in 0..SOCK_WAYS {
        if matches!(SOCK_TAGS.get(first + i), Some(t) if *t == tag) {
            return Some(first + i);
        }
    }
    None
}

/// A free slot of bucket `first`, claimed for `tag`; None when the bucket is full.
#[inline(always)]
fn claim_slot(tag: u64, first: u32) -> Option<u32> {
    for i in 0..SOCK_WAYS {
        if let Some(t) = SOCK_TAGS.get_ptr_mut(first + i) {
            if claim(t, tag) {
                return Some(first + i);
            }
        }
    }
    None
}

/// The table slot holding socket `key`, if it is tracked.
#[inline(always)]
fn socket_slot(key: SockKey) -> Option<u32> {
    let tag = key.tag();
    find_tag(tag, bucket_of(tag))
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
    let first = bucket_of(tag);
    let slot = find_tag(tag, first).or_else(|| claim_slot(tag, first));
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
    if let Some(t) = SOCK_TAGS.get_ptr_mut(slot) {
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

// ---- connect ------------------------------------------------------------------------------

#[tracepoint]
pub fn tb_enter_connect(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // Only tracked clients: a listener holder's own outgoing connections are not its
    // server side.
    if !client_tracked((id >> 32) as u32) {
        return 0;
    }
    let Some(dst) = read_sockaddr(arg(&ctx, ARG1)) else {
        return 0;
    };
    let args = ConnectArgs {
        ts: unsafe { bpf_ktime_get_ns() },
        fd: arg(&ctx, ARG0) as i32,
        _pad: 0,
        dst,
    };
    if CONNECTS.insert(id, args, 0).is_err() {
        count_lost(lost::INFLIGHT_FULL);
    }
    0
}

#[tracepoint]
pub fn tb_exit_connect(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let Some(p) = CONNECTS.get_ptr(id) else {
        return 0;
    };
    // SAFETY: copy out before removing the entry.
    let args = unsafe { *p };
    let _ = CONNECTS.remove(id);
    let ret = arg(&ctx, SYS_RET) as i64;
    if ret == 0 || ret == -EINPROGRESS {
        let key = SockKey {
            pid: (id >> 32) as u32,
            fd: args.fd as u32,
        };
        track_socket(key, 0);
    }
    let ev = ConnectEvent {
        hdr: header(kind::CONNECT, id, unsafe { bpf_ktime_get_ns() }),
        ts_enter_ns: args.ts,
        fd: args.fd,
        ret: ret as i32,
        dst: args.dst,
        comm: comm(),
    };
    emit(&ev);
    0
}

// ---- accept -------------------------------------------------------------------------------

/// The tracked listener behind `key`: the process's own, or the one a server worker forked
/// during the capture inherited (same fd number) from its holder.
#[inline(always)]
fn listener(key: SockKey) -> Option<*const ListenInfo> {
    if let Some(l) = LISTENERS.get_ptr(key) {
        return Some(l);
    }
    // SAFETY: plain read of a map value.
    let holder = unsafe { *SERVER_CHILDREN.get_ptr(key.pid)? };
    LISTENERS.get_ptr(SockKey {
        pid: holder,
        fd: key.fd,
    })
}

#[inline(always)]
fn accept_enter(ctx: &TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tgid_tracked((id >> 32) as u32) {
        return 0;
    }
    let fd = arg(ctx, ARG0) as u32;
    let key = SockKey {
        pid: (id >> 32) as u32,
        fd,
    };
    let Some(l) = listener(key) else {
        return 0;
    };
    let args = AcceptArgs {
        peer_ptr: arg(ctx, ARG1),
        listen_fd: fd as i32,
        // SAFETY: plain read of a map value.
        port: unsafe { (*l).port },
        _pad: 0,
    };
    if ACCEPTS.insert(id, args, 0).is_err() {
        count_lost(lost::INFLIGHT_FULL);
    }
    0
}

#[inline(always)]
fn accept_exit(ctx: &TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tgid_tracked((id >> 32) as u32) {
        return 0;
    }
    let Some(p) = ACCEPTS.get_ptr(id) else {
        return 0;
    };
    // SAFETY: copy out before removing the entry.
    let args = unsafe { *p };
    let _ = ACCEPTS.remove(id);
    let ret = arg(ctx, SYS_RET) as i64;
    if ret < 0 {
        return 0;
    }
    let key = SockKey {
        pid: (id >> 32) as u32,
        fd: ret as u32,
    };
    track_socket(key, 1);
    let ev = AcceptEvent {
        hdr: header(kind::ACCEPT, id, unsafe { bpf_ktime_get_ns() }),
        listen_fd: args.listen_fd,
        fd: ret as i32,
        peer: read_sockaddr(args.peer_ptr).unwrap_or(empty_addr()),
        local_port: args.port,
        _pad: [0; 6],
        comm: comm(),
    };
    emit(&ev);
    0
}

#[tracepoint]
pub fn tb_enter_accept(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx)
}

#[tracepoint]
pub fn tb_exit_accept(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx)
}

#[tracepoint]
pub fn tb_enter_accept4(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx)
}

#[tracepoint]
pub fn tb_exit_accept4(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx)
}

/// getpeername() on a tracked server socket: the peer of a connection accepted with a null
/// address. Exit only: the fd and the address buffer are in the saved registers, and the
/// call is rare (once per connection), so it needs no in-flight entry.
#[tracepoint]
pub fn tb_exit_getpeername(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tgid_tracked((id >> 32) as u32) || arg(&ctx, SYS_RET) != 0 {
        return 0;
    }
    let regs = user_regs();
    // SAFETY: loads from the saved registers, checked by the verifier.
    let (fd, addr) = unsafe { ((*regs).rdi as u32, (*regs).rsi) };
    let key = SockKey {
        pid: (id >> 32) as u32,
        fd,
    };
    // SAFETY: plain read of a map value.
    match socket(key) {
        Some(info) if unsafe { (*info).side } == 1 => {}
        _ => return 0,
    }
    let Some(peer) = read_sockaddr(addr) else {
        return 0;
    };
    let ev = PeerEvent {
        hdr: header(kind::PEER, id, unsafe { bpf_ktime_get_ns() }),
        fd: fd as i32,
        _pad: 0,
        peer,
    };
    emit(&ev);
    0
}

// ---- read / write family ------------------------------------------------------------------
//
// Reads have only an exit probe and writes an enter probe that stamps the thread's slot in
// WRITE_STARTS with the time and the fd. A write's exit takes its fd from that stamp; a read's
// exit (or a write's without a stamp) finds the syscall's arguments in the task's saved user
// registers (x86_64: rdi, rsi, rdx, r10 hold arguments 1-4 and are not changed by the
// syscall), so no per-call map entry is written and deleted. Continuation chunks are held in
// the socket's slot of the table and sent in batches; only a direction change sends a record
// with a payload prefix.

/// The calling task's saved user registers (its syscall arguments).
#[inline(always)]
fn user_regs() -> *const pt_regs {
    // SAFETY: both helpers are valid in any tracing program; the result is a trusted kernel
    // pointer whose loads the verifier checks against the kernel's BTF.
    unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) as *const pt_regs }
}

/// Bytes sent by a sendmmsg that sent `sent` messages of the array at `mmsg` (the first
/// [`MMSG_MAX`] of them).
#[inline(always)]
fn mmsg_bytes(mmsg: u64, sent: i64) -> i64 {
    let mut bytes = 0i64;
    for i in 0..MMSG_MAX {
        // A guard rather than `break`: LLVM turns the early exit into a path that reads a
        // register the verifier considers unset.
        if i < sent {
            let len = read_user::<u32>(mmsg + i as u64 * MMSGHDR_SIZE + MMSGHDR_LEN_AT);
            bytes += len.unwrap_or(0) as i64;
        }
    }
    bytes
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

#[inline(always)]
fn write_enter(ctx: &TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tgid_tracked((id >> 32) as u32) {
        return 0;
    }
    // Every write of a tracked process is stamped, socket or not: the exit, which looks the
    // socket up anyway, decides whether the start is used.
    if let Some(slot) = WRITE_STARTS.get_ptr_mut(id as u32 & (WRITE_SLOTS - 1)) {
        // SAFETY: plain stores into an array element.
        unsafe {
            (*slot).ts_ns = bpf_ktime_get_ns();
            (*slot).buf = arg(ctx, ARG1);
            (*slot).tid_fd = (id << 32) | (arg(ctx, ARG0) & 0xffff_ffff);
        }
    }
    0
}

/// This thread's write in progress as its enter probe stamped it, (fd, start, buffer
/// argument), taken once;
/// None when there is none of this capture (the write began before the probes attached, or
/// another thread took the slot since).
#[inline(always)]
fn take_write_start(id: u64) -> Option<(u32, u64, u64)> {
    let slot = WRITE_STARTS.get_ptr_mut(id as u32 & (WRITE_SLOTS - 1))?;
    // SAFETY: plain loads and a store of array elements.
    unsafe {
        let (t, tid_fd) = ((*slot).ts_ns, (*slot).tid_fd);
        if tid_fd >> 32 != id & 0xffff_ffff || t == 0 || t < *CAPTURE_START.get(0)? {
            return None;
        }
        (*slot).ts_ns = 0;
        Some((tid_fd as u32, t, (*slot).buf))
    }
}

#[inline(always)]
fn data_exit(ctx: &TracePointContext, dir: u8, buf_kind: u8, flags_reg: u8) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tgid_tracked((id >> 32) as u32) {
        return 0;
    }
    // Before the register and socket lookups: a non-blocking reader ends every burst with a
    // read that returns EAGAIN, and such reads move nothing.
    let mut ret = arg(ctx, SYS_RET) as i64;
    if ret <= 0 {
        return 0;
    }
    // A write's fd and buffer come with its start from the enter probe's stamp; the saved
    // registers, read through two helper calls, are the fallback and the source for reads.
    let start = match dir {
        op::WRITE => take_write_start(id),
        _ => None,
    };
    // Fetched at most once, and only when needed: two helper calls.
    let mut regs = None;
    let (fd, flags) = match start {
        Some((fd, _, _)) => (fd, 0),
        None => {
            let r = *regs.get_or_insert_with(user_regs);
            // SAFETY: loads from the saved registers, checked by the verifier.
            unsafe {
                let flags = match flags_reg {
                    FLAGS_RDX => (*r).rdx,
                    FLAGS_R10 => (*r).r10,
                    _ => 0,
                };
                ((*r).rdi as u32, flags)
            }
        }
    };
    // A peek moves no data (the bytes are read again), e.g. an HTTP server's keep-alive
    // liveness check: counting it would double bytes and hide the next request line.
    if flags & MSG_PEEK != 0 {
        return 0;
    }
    let key = SockKey {
        pid: (id >> 32) as u32,
        fd,
    };
    let Some(info) = socket(key) else {
        return 0;
    };
    // The second argument: from the enter probe's stamp for a write, else the saved registers.
    let mut arg1 = || match start {
        Some((_, _, buf)) => buf,
        // SAFETY: a load from the saved registers, checked by the verifier.
        None => unsafe { (**regs.get_or_insert_with(user_regs)).rsi },
    };
    if buf_kind == BUF_MMSGHDR {
        ret = mmsg_bytes(arg1(), ret);
        if ret <= 0 {
            return 0;
        }
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let t_enter = match start {
        Some((_, t, _)) if t <= now => t,
        _ => now,
    };
    // SAFETY: plain loads and stores into this socket's map value.
    if unsafe { (*info).last_op } == dir as u32 {
        let n = unsafe { (*info).batch.n } as usize;
        if n < BATCH_LEN {
            unsafe {
                (*info).batch.chunks[n & (BATCH_LEN - 1)] = Chunk {
                    ts_ns: now,
                    ts_enter_ns: t_enter,
                    bytes: ret as u64,
                };
                (*info).batch.n = n as u32 + 1;
            }
        }
        if n + 1 >= BATCH_LEN {
            flush_batch(id, info, now);
        }
        return 0;
    }
    // A direction change: what the socket holds is older than this syscall.
    flush_batch(id, info, now);
    unsafe { (*info).last_op = dir as u32 };
    let raw = arg1();
    // The prefix comes from the first segment only, so it is capped at that segment's length.
    let (buf, seg_len) = match buf_kind {
        BUF_PLAIN => (raw, u64::MAX),
        BUF_IOVEC => read_user::<Iovec>(raw).map_or((0, 0), |v| (v.base, v.len)),
        // struct user_msghdr (also the head of sendmmsg's first mmsghdr): msg_iov at offset 16.
        _ => match read_user::<u64>(raw + 16) {
            Some(iov) => read_user::<Iovec>(iov).map_or((0, 0), |v| (v.base, v.len)),
            None => (0, 0),
        },
    };
    let Some(mut entry) = EVENTS.reserve::<DataEvent>(0) else {
        count_lost(lost::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    let mut len: u32 = if ret > PREFIX_LEN as i64 {
        PREFIX_LEN as u32
    } else {
        ret as u32
    };
    if seg_len < len as u64 {
        len = seg_len as u32;
    }
    // SAFETY: `ev` points at a reserved ring-buffer record of size_of::<DataEvent>() bytes;
    // every field is written before submit, and the copy length is at most PREFIX_LEN.
    unsafe {
        addr_of_mut!((*ev).hdr).write(header(kind::DATA, id, now));
        addr_of_mut!((*ev).ts_enter_ns).write(t_enter);
        addr_of_mut!((*ev).fd).write(fd as i32);
        addr_of_mut!((*ev).bytes).write(ret as u32);
        addr_of_mut!((*ev).op).write(dir);
        addr_of_mut!((*ev)._pad).write(0);
        addr_of_mut!((*ev)._pad2).write(0);
        let dst = addr_of_mut!((*ev).prefix) as *mut c_void;
        let copied = if buf != 0 && len > 0 {
            generated::bpf_probe_read_user(dst, len, buf as *const c_void) == 0
        } else {
            false
        };
        addr_of_mut!((*ev).prefix_len).write(if copied { len as u16 } else { 0 });
    }
    entry.submit(NO_WAKEUP);
    0
}

macro_rules! read_probes {
    ($($exit:ident, $buf:expr, $flags:expr;)*) => {$(
        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            data_exit(&ctx, op::READ, $buf, $flags)
        }
    )*};
}

macro_rules! write_probes {
    ($($enter:ident, $exit:ident, $buf:expr;)*) => {$(
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            write_enter(&ctx)
        }
        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            data_exit(&ctx, op::WRITE, $buf, NO_FLAGS)
        }
    )*};
}

read_probes! {
    tb_exit_read, BUF_PLAIN, NO_FLAGS;
    tb_exit_readv, BUF_IOVEC, NO_FLAGS;
    tb_exit_recvfrom, BUF_PLAIN, FLAGS_R10;
    tb_exit_recvmsg, BUF_MSGHDR, FLAGS_RDX;
}

write_probes! {
    tb_enter_write, tb_exit_write, BUF_PLAIN;
    tb_enter_writev, tb_exit_writev, BUF_IOVEC;
    tb_enter_sendto, tb_exit_sendto, BUF_PLAIN;
    tb_enter_sendmsg, tb_exit_sendmsg, BUF_MSGHDR;
    tb_enter_sendmmsg, tb_exit_sendmmsg, BUF_MMSGHDR;
}

// ---- close --------------------------------------------------------------------------------

#[tracepoint]
pub fn tb_enter_close(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !tgid_tracked((id >> 32) as u32) {
        return 0;
    }
    let key = SockKey {
        pid: (id >> 32) as u32,
        fd: arg(&ctx, ARG0) as u32,
    };
    let Some((slot, info)) = socket_slot(key).and_then(|s| Some((s, SOCK_VALS.get_ptr_mut(s)?)))
    else {
        // A closed listener's fd may come back as another port's listener. Looked up first:
        // most closes here are of files (a static server's), and the lookup is inlined where
        // a delete is a helper call (about 30 ns a close less, 160 to 130, in one A/B here).
        if LISTENERS.get_ptr(&key).is_some() {
            let _ = LISTENERS.remove(&key);
        }
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    flush_batch(id, info, now);
    untrack_socket(slot);
    let ev = CloseEvent {
        hdr: header(kind::CLOSE, id, now),
        fd: key.fd as i32,
        _pad: 0,
    };
    emit(&ev);
    0
}

// ---- TCP state and retransmits ------------------------------------------------------------

/// Reads an address pair of a sock/tcp tracepoint: v4 fields at `v4`, v6 fields at `v6`.
#[inline(always)]
fn tp_addrs(
    ctx: &TracePointContext,
    family: u16,
    sport: u16,
    dport: u16,
    v4: usize,
    v6: usize,
) -> (SockAddr, SockAddr) {
    let mut src = SockAddr {
        family,
        port: sport,
        addr: [0; 16],
    };
    let mut dst = SockAddr {
        family,
        port: dport,
        addr: [0; 16],
    };
    // SAFETY: offsets are those of the tracepoint's format.
    unsafe {
        if family == AF_INET6 {
            src.addr = ctx.read_at::<[u8; 16]>(v6).unwrap_or([0; 16]);
            dst.addr = ctx.read_at::<[u8; 16]>(v6 + 16).unwrap_or([0; 16]);
        } else {
            let s = ctx.read_at::<[u8; 4]>(v4).unwrap_or([0; 4]);
            let d = ctx.read_at::<[u8; 4]>(v4 + 4).unwrap_or([0; 4]);
            src.addr[..4].copy_from_slice(&s);
            dst.addr[..4].copy_from_slice(&d);
        }
    }
    (src, dst)
}

/// A socket starting to listen on a tracked port after the capture started (a server started
/// or restarted during it): inside listen(), whose fd is in the saved registers, the listener
/// is added as if tbd had found it at the start, and announced to user space (a state event
/// with the fd) for the run's list of listeners.
#[inline(always)]
fn listen_on_tracked_port(ctx: &TracePointContext, skaddr: u64, port: u16) {
    if TRACKED_PORTS.get_ptr(port).is_none() {
        return;
    }
    let regs = user_regs();
    // SAFETY: loads from the trusted pt_regs pointer, checked by the verifier.
    let (nr, fd) = unsafe { ((*regs).orig_rax, (*regs).rdi) };
    if nr != SYS_LISTEN {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let key = SockKey {
        pid: tgid,
        fd: fd as u32,
    };
    let info = ListenInfo { port, _pad: [0; 6] };
    if LISTENERS.insert(&key, &info, 0).is_err() {
        count_lost(lost::SOCKETS_FULL);
        return;
    }
    set_tgid(tgid, 1);
    // SAFETY: offsets of sock/inet_sock_set_state's format.
    let (oldstate, family) = unsafe {
        (
            ctx.read_at::<i32>(16).unwrap_or(0),
            ctx.read_at::<u16>(28).unwrap_or(0),
        )
    };
    let (src, dst) = tp_addrs(ctx, family, port, 0, 32, 40);
    let ev = StateEvent {
        hdr: header(kind::STATE, id, unsafe { bpf_ktime_get_ns() }),
        skaddr,
        oldstate,
        newstate: tcp_state::LISTEN,
        fd: fd as i32,
        _pad: 0,
        src,
        dst,
    };
    emit(&ev);
}

#[tracepoint]
pub fn tb_sock_state(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of sock/inet_sock_set_state's format.
    let (skaddr, newstate, protocol) = unsafe {
        (
            ctx.read_at::<u64>(8).unwrap_or(0),
            ctx.read_at::<i32>(20).unwrap_or(0),
            ctx.read_at::<u16>(30).unwrap_or(0),
        )
    };
    if protocol != IPPROTO_TCP {
        return 0;
    }
    let sport = unsafe { ctx.read_at::<u16>(24) }.unwrap_or(0);
    if newstate == tcp_state::LISTEN {
        listen_on_tracked_port(&ctx, skaddr, sport);
        return 0;
    }
    let mut fd: i32 = -1;
    let mut id = 0u64;
    let tracked = if SKS.get_ptr(skaddr).is_some() {
        true
    } else if newstate == tcp_state::SYN_SENT {
        // Inside connect(): the calling thread's in-flight connect names the fd.
        id = bpf_get_current_pid_tgid();
        match CONNECTS.get_ptr(id) {
            Some(c) => {
                fd = unsafe { (*c).fd };
                true
            }
            None => false,
        }
    } else {
        TRACKED_PORTS.get_ptr(sport).is_some()
    };
    if !tracked {
        return 0;
    }
    if newstate == tcp_state::CLOSE {
        let _ = SKS.remove(skaddr);
    } else if SKS.insert(skaddr, 1, 0).is_err() {
        count_lost(lost::SOCKETS_FULL);
    }
    let (oldstate, dport, family) = unsafe {
        (
            ctx.read_at::<i32>(16).unwrap_or(0),
            ctx.read_at::<u16>(26).unwrap_or(0),
            ctx.read_at::<u16>(28).unwrap_or(0),
        )
    };
    let (src, dst) = tp_addrs(&ctx, family, sport, dport, 32, 40);
    if id == 0 {
        id = bpf_get_current_pid_tgid();
    }
    let ev = StateEvent {
        hdr: header(kind::STATE, id, unsafe { bpf_ktime_get_ns() }),
        skaddr,
        oldstate,
        newstate,
        fd,
        _pad: 0,
        src,
        dst,
    };
    emit(&ev);
    0
}

#[tracepoint]
pub fn tb_tcp_retransmit(ctx: TracePointContext) -> u32 {
    let skaddr = unsafe { ctx.read_at::<u64>(16) }.unwrap_or(0);
    if SKS.get_ptr(skaddr).is_none() {
        return 0;
    }
    // SAFETY: offsets of tcp/tcp_retransmit_skb's format.
    let (sport, dport, family) = unsafe {
        (
            ctx.read_at::<u16>(28).unwrap_or(0),
            ctx.read_at::<u16>(30).unwrap_or(0),
            ctx.read_at::<u16>(32).unwrap_or(0),
        )
    };
    let (src, dst) = tp_addrs(&ctx, family, sport, dport, 34, 42);
    let ev = RetransmitEvent {
        hdr: header(kind::RETRANSMIT, bpf_get_current_pid_tgid(), unsafe {
            bpf_ktime_get_ns()
        }),
        skaddr,
        src,
        dst,
    };
    emit(&ev);
    0
}

/// (IP packet length, IP header length, TCP sequence number, TCP data-offset byte) of an IPv4
/// segment without IP options or an IPv6 one with TCP next, read straight from the packet (no
/// helper call: most segments a tracked socket gets are ACKs without payload, which leave
/// here). The context's data starts at the network header.
#[inline(always)]
fn headers_direct(ctx: &SkBuffContext) -> Option<(u32, u32, u32, u8)> {
    // SAFETY: every load is bounds-checked against data_end first (the verifier checks it).
    unsafe {
        let skb = ctx.skb.skb;
        let (data, end) = ((*skb).data as usize, (*skb).data_end as usize);
        if data + 56 <= end && *(data as *const u8) >> 4 == 6 {
            if *((data + 6) as *const u8) != IPPROTO_TCP as u8 {
                return None;
            }
            let len = u16::from_be(*((data + 4) as *const u16));
            let seq = u32::from_be(*((data + 44) as *const u32));
            return Some((u32::from(len) + 40, 40, seq, *((data + 52) as *const u8)));
        }
        if data + 36 > end || *(data as *const u8) != 0x45 {
            return None;
        }
        let len = u16::from_be(*((data + 2) as *const u16));
        let seq = u32::from_be(*((data + 24) as *const u32));
        Some((u32::from(len), 20, seq, *((data + 32) as *const u8)))
    }
}

/// [`headers_direct`]'s figures through `bpf_skb_load_bytes`, for a segment whose headers are
/// not all in the packet's linear part or that carries IP options.
#[inline(always)]
fn headers_loaded(ctx: &SkBuffContext) -> Option<(u32, u32, u32, u8)> {
    let ip: [u8; 8] = ctx.load(0).ok()?;
    let (ip_len, ip_hl) = match ip[0] >> 4 {
        4 => (
            u32::from(u16::from_be_bytes([ip[2], ip[3]])),
            u32::from(ip[0] & 0xf) * 4,
        ),
        // Extension headers before TCP are not followed: such segments are not counted.
        6 if ip[6] == IPPROTO_TCP as u8 => (u32::from(u16::from_be_bytes([ip[4], ip[5]])) + 40, 40),
        _ => return None,
    };
    let tcp: [u8; 16] = ctx.load(ip_hl as usize).ok()?;
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some((ip_len, ip_hl, seq, tcp[12]))
}

/// The sequence number and count of the bytes of a segment's payload that a tracked socket did
/// not have yet, from its IP and TCP headers and the socket's next expected sequence number
/// (a segment past it, which overtook a lost one, is sent whole: tbd holds it until the gap
/// is filled); None when the segment brings
/// nothing new (a pure ACK, a tail-loss probe or a spurious retransmission, frequent on a busy
/// loopback: counting those would shift every later arrival onto the bytes before it).
#[inline(always)]
fn new_payload(ctx: &SkBuffContext, sk: *mut bpf_sock) -> Option<(u32, u32, u32)> {
    let (ip_len, ip_hl, seq, doff) = match headers_direct(ctx) {
        Some(h) => h,
        None => headers_loaded(ctx)?,
    };
    let hl = ip_hl + u32::from(doff >> 4) * 4;
    if ip_len <= hl {
        return None;
    }
    let bytes = ip_len - hl;
    // SAFETY: `sk` is the context's non-null socket; the helper returns a checked pointer.
    let tp = unsafe { generated::bpf_tcp_sock(sk) };
    if tp.is_null() {
        return None;
    }
    let rcv_nxt = unsafe { (*tp).rcv_nxt };
    // Sequence space wraps: how far the segment's end is past what the socket has.
    let end = seq.wrapping_add(bytes);
    let past = end.wrapping_sub(rcv_nxt) as i32;
    if past <= 0 {
        return None;
    }
    // The bytes before rcv_nxt the socket had already; a segment past it is new whole.
    let new = if (past as u32) < bytes {
        past as u32
    } else {
        bytes
    };
    Some((end.wrapping_sub(new), new, rcv_nxt))
}

/// A segment with new payload reaching a tracked socket: its arrival, which the reader's read
/// follows by however long the reader takes. A cgroup_skb ingress program sees each segment
/// as the TCP receive path filters it, before it can wait behind a socket its owner holds,
/// with no tracepoint dispatch; it replaced the `tcp_probe` and `sk_data_ready` pair (two
/// programs per data segment, which missed the bytes of segments that overtook a lost one).
/// It always lets the segment through.
#[cgroup_skb(ingress)]
pub fn tb_arrival(ctx: SkBuffContext) -> i32 {
    // SAFETY: a load of the context's socket field, checked by the verifier.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return 1;
    }
    // The socket's address, as the sock tracepoints name it (tracked sockets are keyed by it).
    let skaddr = sk as u64;
    if SKS.get_ptr(skaddr).is_none() {
        return 1;
    }
    let Some((seq, bytes, rcv_nxt)) = new_payload(&ctx, sk) else {
        return 1;
    };
    let ev = ArrivalEvent {
        hdr: header(kind::ARRIVAL, 0, unsafe { bpf_ktime_get_ns() }),
        skaddr,
        bytes,
        seq,
        rcv_nxt,
        _pad: 0,
    };
    emit(&ev);
    1
}

// ---- processes: children of tracked processes --------------------------------------------
//
// A load generator may run its clients in worker processes (or be started by a shell), so a
// tracked process's children are tracked from their fork on, and a tracked process is
// forgotten when it exits, before its pid can be reused. Threads share their process's tgid
// and need no entry.

const SYS_CLONE: u64 = 56;
const SYS_CLONE3: u64 = 435;
const CLONE_THREAD: u64 = 0x10000;

#[tracepoint]
pub fn tb_fork(ctx: TracePointContext) -> u32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !tgid_tracked(parent) {
        return 0;
    }
    // The parent is inside clone/clone3/fork/vfork: its flags say whether the child is a
    // thread (x86_64: orig_rax holds the syscall number, rdi its first argument).
    let regs = user_regs();
    // SAFETY: loads from the trusted pt_regs pointer, checked by the verifier.
    let (nr, a0) = unsafe { ((*regs).orig_rax, (*regs).rdi) };
    let flags = match nr {
        SYS_CLONE => a0,
        // clone_args.flags leads the struct.
        SYS_CLONE3 => read_user::<u64>(a0).unwrap_or(0),
        _ => 0,
    };
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    // SAFETY: offset of sched/sched_process_fork's child_pid.
    let child = unsafe { ctx.read_at::<i32>(20) }.unwrap_or(0);
    if child <= 0 {
        return 0;
    }
    // SAFETY: plain reads of map values.
    let inserted = if unsafe { TRACKED_PIDS.get(&parent) }.is_some() {
        TRACKED_PIDS.insert(&(child as u32), &1, 0)
    } else {
        // A listener holder's child (or grandchild): it inherited the listening fds.
        let holder = unsafe { SERVER_CHILDREN.get(&parent) }
            .copied()
            .unwrap_or(parent);
        SERVER_CHILDREN.insert(&(child as u32), &holder, 0)
    };
    if inserted.is_err() {
        count_lost(lost::PIDS_FULL);
        return 0;
    }
    set_tgid(child as u32, 1);
    0
}

/// Offset of `group_dead` in sched_process_exit's record, set by tbd at load; 0 where the
/// kernel's tracepoint lacks the field (before 6.15-ish), and the leader's exit is used.
#[no_mangle]
static EXIT_GROUP_DEAD_AT: u32 = 0;

#[tracepoint]
pub fn tb_exit_process(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    if !tgid_tracked(tgid) {
        return 0;
    }
    // The process ends with its last thread (`group_dead`), and its pid may be reused once it
    // is reaped. A leader that calls pthread_exit leaves its other threads running, still
    // tracked. Without the field: the leader's exit, which is the process's end unless it
    // leaves that way.
    // SAFETY: a load of a read-only global set at load time.
    let at = unsafe { core::ptr::read_volatile(&EXIT_GROUP_DEAD_AT) } as usize;
    let ended = if at != 0 {
        // SAFETY: `at` is the field's offset in this kernel's format (read by tbd).
        unsafe { ctx.read_at::<u8>(at) }.unwrap_or(0) != 0
    } else {
        tgid == tid
    };
    if ended {
        set_tgid(tgid, 0);
        let _ = TRACKED_PIDS.remove(&tgid);
        let _ = SERVER_CHILDREN.remove(&tgid);
    }
    0
}

// ---- DNS: getaddrinfo uprobes -------------------------------------------------------------

#[uprobe]
pub fn tb_getaddrinfo(ctx: ProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if !client_tracked((id >> 32) as u32) {
        return 0;
    }
    let mut args = DnsArgs {
        ts: unsafe { bpf_ktime_get_ns() },
        name: [0; DNS_NAME_LEN],
    };
    if let Some(node) = ctx.arg::<*const u8>(0) {
        if !node.is_null() {
            // SAFETY: faults are caught by the helper; a failed read leaves the name empty.
            let _ = unsafe { bpf_probe_read_user_str_bytes(node, &mut args.name) };
        }
    }
    if DNS_INFLIGHT.insert(id, args, 0).is_err() {
        count_lost(lost::INFLIGHT_FULL);
    }
    0
}

#[uretprobe]
pub fn tb_getaddrinfo_ret(ctx: RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let Some(p) = DNS_INFLIGHT.get_ptr(id) else {
        return 0;
    };
    let Some(mut entry) = EVENTS.reserve::<DnsEvent>(0) else {
        let _ = DNS_INFLIGHT.remove(id);
        count_lost(lost::RINGBUF_FULL);
        return 0;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is a reserved record of size_of::<DnsEvent>(); all fields written.
    unsafe {
        addr_of_mut!((*ev).hdr).write(header(kind::DNS, id, bpf_ktime_get_ns()));
        addr_of_mut!((*ev).ts_start_ns).write((*p).ts);
        addr_of_mut!((*ev).ret).write(ctx.ret::<i32>());
        addr_of_mut!((*ev)._pad).write(0);
        core::ptr::copy_nonoverlapping(
            (*p).name.as_ptr(),
            addr_of_mut!((*ev).name) as *mut u8,
            DNS_NAME_LEN,
        );
    }
    entry.submit(NO_WAKEUP);
    let _ = DNS_INFLIGHT.remove(id);
    0
}

const _: () = assert!(size_of::<DataEvent>() % 8 == 0);
