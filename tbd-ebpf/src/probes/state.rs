//! TCP state changes and retransmits of tracked sockets.

use super::*;

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
    let tracked = if sk_tracked(skaddr) {
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
        untrack_sk(skaddr);
    } else {
        track_sk(skaddr);
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
    if !sk_tracked(skaddr) {
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
