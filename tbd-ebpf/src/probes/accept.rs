//! accept(2) and accept4(2) on tracked listeners, and getpeername(2): the server side.

use super::*;

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
