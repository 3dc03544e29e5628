//! tracefs: mounted when missing (the project's kernels boot without it), and the tracepoint
//! formats the eBPF programs read by fixed offset are checked against the running kernel.

use std::path::Path;

use crate::error::TbdError;

/// Where tracefs is (or gets) mounted.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at [`TRACEFS`] unless it is already there. Returns whether it mounted it.
pub fn ensure_mounted() -> Result<bool, TbdError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(false);
    }
    let target = std::ffi::CString::new(TRACEFS).expect("no NUL");
    let fstype = std::ffi::CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TbdError::Tracefs(std::io::Error::last_os_error()));
    }
    tracing::info!("mounted tracefs at {TRACEFS}");
    Ok(true)
}

/// (tracepoint, field, offset) that the eBPF programs rely on.
const EXPECTED: &[(&str, &str, usize)] = &[
    ("syscalls/sys_enter_connect", "fd", 16),
    ("syscalls/sys_enter_connect", "uservaddr", 24),
    ("syscalls/sys_exit_connect", "ret", 16),
    ("syscalls/sys_enter_accept4", "upeer_sockaddr", 24),
    ("syscalls/sys_enter_write", "fd", 16),
    ("syscalls/sys_enter_sendmmsg", "fd", 16),
    ("syscalls/sys_enter_sendmmsg", "mmsg", 24),
    ("syscalls/sys_exit_read", "ret", 16),
    ("syscalls/sys_exit_getpeername", "ret", 16),
    ("sock/inet_sock_set_state", "skaddr", 8),
    ("sock/inet_sock_set_state", "newstate", 20),
    ("sock/inet_sock_set_state", "sport", 24),
    ("sock/inet_sock_set_state", "protocol", 30),
    ("sock/inet_sock_set_state", "saddr", 32),
    ("sock/inet_sock_set_state", "saddr_v6", 40),
    ("tcp/tcp_retransmit_skb", "skaddr", 16),
    ("tcp/tcp_retransmit_skb", "saddr", 34),
    ("tcp/tcp_retransmit_skb", "saddr_v6", 42),
    ("sched/sched_process_fork", "child_pid", 20),
];

/// Offset of `field` in a tracepoint's `format` text, if present.
pub fn field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        let name = decl
            .rsplit(' ')
            .next()?
            .split('[')
            .next()?
            .trim_start_matches('*');
        if name != field {
            return None;
        }
        let off = line.split("offset:").nth(1)?.split(';').next()?;
        off.trim().parse().ok()
    })
}

/// A tracepoint's `format` text (`tp` is `category/name`).
fn format_text(tp: &str) -> std::io::Result<String> {
    std::fs::read_to_string(Path::new(TRACEFS).join("events").join(tp).join("format"))
}

/// Offset of a tracepoint's optional field on this kernel, None when the kernel lacks it.
pub fn optional_offset(tp: &str, field: &str) -> Option<usize> {
    field_offset(&format_text(tp).ok()?, field)
}

/// Checks every offset the programs read; a mismatch means this kernel's layout differs.
pub fn check_formats() -> Result<(), TbdError> {
    for (tp, field, want) in EXPECTED {
        let text = format_text(tp).map_err(TbdError::Tracefs)?;
        match field_offset(&text, field) {
            Some(got) if got == *want => {}
            got => {
                return Err(TbdError::Layout(format!(
                    "{tp}: field {field} at {got:?}, programs expect {want}"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FMT: &str = "name: inet_sock_set_state\nformat:\n\
        \tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\
        \tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;\n";

    #[test]
    fn finds_offsets_of_pointer_and_array_fields() {
        assert_eq!(field_offset(FMT, "skaddr"), Some(8));
        assert_eq!(field_offset(FMT, "saddr"), Some(32));
        assert_eq!(field_offset(FMT, "saddr_v6"), Some(40));
        assert_eq!(field_offset(FMT, "daddr"), None);
    }
}
