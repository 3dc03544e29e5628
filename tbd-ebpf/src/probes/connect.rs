//! connect(2): the client side of a connection, from its entry to its return.

use super::*;

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
