//! RLIMIT_MEMLOCK: raised for kernels that charge BPF maps to it. Kernels since 5.11 charge
//! BPF memory to the cgroup instead, and root here lacks CAP_SYS_RESOURCE, so failing is a
//! warning, not an error.

/// Tries to lift RLIMIT_MEMLOCK; returns whether it succeeded.
pub fn raise() -> bool {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    if rc != 0 {
        tracing::warn!(
            "could not raise RLIMIT_MEMLOCK ({}); continuing, as kernels >= 5.11 account BPF memory by cgroup",
            std::io::Error::last_os_error()
        );
        return false;
    }
    true
}
