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

/// Every (pid, fd) holding a socket listening on `port`, searched under `proc_root`, in every
/// network namespace: an inference server in a container listens in its own, which the
/// host's `/proc/net/tcp` does not show.
pub fn find(proc_root: &Path, port: u16) -> Vec<Listener> {
    let mut inodes = Vec::new();
    for net in namespace_tables(proc_root) {
        for table in ["tcp", "tcp6"] {
            if let Ok(text) = std::fs::read_to_string(net.join(table)) {
                inodes.extend(listening_inodes(&text, port));
            }
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

/// One `net/` directory per network namespace: `proc_root/net` (this process's), then the
/// first process found in each other namespace. Socket inodes are unique across namespaces.
fn namespace_tables(proc_root: &Path) -> Vec<std::path::PathBuf> {
    let mut seen = std::collections::HashSet::new();
    if let Ok(ns) = std::fs::read_link(proc_root.join("self/ns/net")) {
        seen.insert(ns);
    }
    let mut out = vec![proc_root.join("net")];
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_str()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        if let Ok(ns) = std::fs::read_link(p.path().join("ns/net")) {
            if seen.insert(ns) {
                out.push(p.path().join("net"));
            }
        }
    }
    out
}

/// accept and accept4 syscall numbers of this architecture.
#[cfg(target_arch = "x86_64")]
const ACCEPT_NRS: [u64; 2] = [43, 288];
#[cfg(target_arch = "aarch64")]
const ACCEPT_NRS: [u64; 2] = [202, 242];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ACCEPT_NRS: [u64; 2] = [u64::MAX, u64::MAX];

/// A thread blocked in accept() on a listening fd: (tid, the call's peer-address pointer).
pub fn blocked_accepts(proc_root: &Path, l: &Listener) -> Vec<(u32, u64)> {
    let Ok(tasks) = std::fs::read_dir(proc_root.join(l.pid.to_string()).join("task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(t.path().join("syscall")).ok()?;
            parse_blocked_accept(&text, l.fd).map(|peer| (tid, peer))
        })
        .collect()
}

/// The peer pointer of a `/proc/*/task/*/syscall` line that is accept/accept4 on `fd`.
pub fn parse_blocked_accept(line: &str, fd: u32) -> Option<u64> {
    let mut f = line.split_whitespace();
    let nr: u64 = f.next()?.parse().ok()?;
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let arg0 = hex(f.next()?)?;
    let arg1 = hex(f.next()?)?;
    (ACCEPT_NRS.contains(&nr) && arg0 == u64::from(fd)).then_some(arg1)
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
    #[cfg(target_arch = "x86_64")]
    fn recognises_a_thread_blocked_in_accept4_on_the_listener() {
        let line = "288 0x3 0x7ffd5c1e2b40 0x7ffd5c1e2b3c 0x80800 0x0 0x0 0x7ffd5c1e2b20 0x7f0c\n";
        assert_eq!(parse_blocked_accept(line, 3), Some(0x7ffd5c1e2b40));
        assert_eq!(parse_blocked_accept(line, 4), None, "another fd");
        assert_eq!(
            parse_blocked_accept("202 0x3 0x0 0x0 0x0 0x0 0x0 0x0 0x0", 3),
            None,
            "futex"
        );
        assert_eq!(parse_blocked_accept("running", 3), None);
    }

    #[test]
    fn finds_a_real_thread_blocked_in_accept() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l) as u32;
        let t = std::thread::spawn(move || l.accept().map(|_| ()));
        let me = Listener {
            pid: std::process::id(),
            fd,
            port,
        };
        let mut found = Vec::new();
        for _ in 0..100 {
            found = blocked_accepts(Path::new("/proc"), &me);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(found.len(), 1, "the accepting thread");
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn reads_every_network_namespace_once() {
        // A fake /proc: pids 10 and 11 share a namespace with this process (`self`), pid 12
        // is in another whose table lists a listener on 8080.
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mk = |pid: &str, ns: &str, table: Option<&str>| {
            let p = root.join(pid);
            std::fs::create_dir_all(p.join("ns")).unwrap();
            std::fs::create_dir_all(p.join("net")).unwrap();
            std::os::unix::fs::symlink(ns, p.join("ns/net")).unwrap();
            if let Some(t) = table {
                std::fs::write(p.join("net/tcp"), t).unwrap();
            }
        };
        mk("self", "net:[1]", None);
        mk("10", "net:[1]", None);
        mk("11", "net:[1]", None);
        mk("12", "net:[2]", Some(TCP));
        std::fs::create_dir_all(root.join("net")).unwrap();
        let tables = namespace_tables(root);
        assert_eq!(tables, vec![root.join("net"), root.join("12/net")]);
        // The listener's inode (4242) is held by pid 12 on fd 5.
        std::fs::create_dir_all(root.join("12/fd")).unwrap();
        std::os::unix::fs::symlink("socket:[4242]", root.join("12/fd/5")).unwrap();
        assert_eq!(
            find(root, 8080),
            vec![Listener {
                pid: 12,
                fd: 5,
                port: 8080
            }]
        );
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
