//! Finding the processes and fds of TCP sockets listening on a port, from /proc (what
//! `ss -ltnp` does), so the probes can track the connections they accept.

use std::path::Path;

/// A listening socket: the process that holds it and its fd there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    pub fd: u32,
    pub port: u16,
}

const TCP_LISTEN: &str = "0A";

/// Socket inodes listening on `port`, from a /proc/net/tcp{,6} table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *f.get(3)? == TCP_LISTEN)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Every (pid, fd) holding a socket listening on `port`, searched under `proc_root`.
pub fn find(proc_root: &Path, port: u16) -> Vec<Listener> {
    let mut inodes = Vec::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(proc_root.join(table)) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Some(n) = fd.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if targets.iter().any(|t| link.as_os_str() == t.as_str()) {
                    found.push(Listener { pid, fd: n, port });
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0\n\
   2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0\n";

    #[test]
    fn only_listening_sockets_on_the_port() {
        assert_eq!(listening_inodes(TCP, 8080), vec![4242]);
        assert_eq!(listening_inodes(TCP, 80), vec![4444]);
        assert!(listening_inodes(TCP, 443).is_empty());
    }

    #[test]
    fn finds_this_process_listener_in_real_proc() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = find(Path::new("/proc"), port);
        let me = std::process::id();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l) as u32;
        assert!(found.contains(&Listener { pid: me, fd, port }), "{found:?}");
    }
}
