//! The read / write family: data syscalls on tracked sockets, batched per socket.
//!
//! Reads have only an exit probe and writes an enter probe that stamps the thread's slot in
//! WRITE_STARTS with the time and the fd. A write's exit takes its fd from that stamp; a read's
//! exit (or a write's without a stamp) finds the syscall's arguments in the task's saved user
//! registers (x86_64: rdi, rsi, rdx, r10 hold arguments 1-4 and are not changed by the
//! syscall), so no per-call map entry is written and deleted. Continuation chunks are held in
//! the socket's slot of the table and sent in batches; only a direction change sends a record
//! with a payload prefix.

use super::*;

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
