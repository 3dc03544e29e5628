//! DNS: getaddrinfo uprobes.

use super::*;

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
