//! Processes: children of tracked processes are followed, exited ones forgotten.
//!
//! A load generator may run its clients in worker processes (or be started by a shell), so a
//! tracked process's children are tracked from their fork on, and a tracked process is
//! forgotten when it exits, before its pid can be reused. Threads share their process's tgid
//! and need no entry.

use super::*;

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
