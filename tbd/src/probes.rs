//! Loading and attaching the eBPF programs, and the kernel-side filters they consult.

use std::{os::fd::OwnedFd, path::Path};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{TracePoint, UProbe},
    Ebpf,
};
use tbd_common::{lost, AcceptArgs, ListenInfo, SockKey};

use crate::{error::TbdError, memlock, tracefs};

/// The object built by build.rs from tbd-ebpf.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tbd-ebpf"));

/// Size of the embedded eBPF object in bytes (reported by `tbd --version`).
pub fn object_size() -> usize {
    EBPF_OBJECT.len()
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// A tracepoint (category, name).
    Tracepoint(&'static str, &'static str),
    /// A uprobe (false) or uretprobe (true) on libc's `getaddrinfo`.
    Getaddrinfo,
}

/// Every program of tbd-ebpf and where it attaches.
pub const PROGRAMS: &[(&str, Attach)] = &[
    (
        "tb_enter_connect",
        Attach::Tracepoint("syscalls", "sys_enter_connect"),
    ),
    (
        "tb_exit_connect",
        Attach::Tracepoint("syscalls", "sys_exit_connect"),
    ),
    (
        "tb_enter_accept",
        Attach::Tracepoint("syscalls", "sys_enter_accept"),
    ),
    (
        "tb_exit_accept",
        Attach::Tracepoint("syscalls", "sys_exit_accept"),
    ),
    (
        "tb_enter_accept4",
        Attach::Tracepoint("syscalls", "sys_enter_accept4"),
    ),
    (
        "tb_exit_accept4",
        Attach::Tracepoint("syscalls", "sys_exit_accept4"),
    ),
    (
        "tb_enter_read",
        Attach::Tracepoint("syscalls", "sys_enter_read"),
    ),
    (
        "tb_exit_read",
        Attach::Tracepoint("syscalls", "sys_exit_read"),
    ),
    (
        "tb_enter_readv",
        Attach::Tracepoint("syscalls", "sys_enter_readv"),
    ),
    (
        "tb_exit_readv",
        Attach::Tracepoint("syscalls", "sys_exit_readv"),
    ),
    (
        "tb_enter_recvfrom",
        Attach::Tracepoint("syscalls", "sys_enter_recvfrom"),
    ),
    (
        "tb_exit_recvfrom",
        Attach::Tracepoint("syscalls", "sys_exit_recvfrom"),
    ),
    (
        "tb_enter_recvmsg",
        Attach::Tracepoint("syscalls", "sys_enter_recvmsg"),
    ),
    (
        "tb_exit_recvmsg",
        Attach::Tracepoint("syscalls", "sys_exit_recvmsg"),
    ),
    (
        "tb_enter_write",
        Attach::Tracepoint("syscalls", "sys_enter_write"),
    ),
    (
        "tb_exit_write",
        Attach::Tracepoint("syscalls", "sys_exit_write"),
    ),
    (
        "tb_enter_writev",
        Attach::Tracepoint("syscalls", "sys_enter_writev"),
    ),
    (
        "tb_exit_writev",
        Attach::Tracepoint("syscalls", "sys_exit_writev"),
    ),
    (
        "tb_enter_sendto",
        Attach::Tracepoint("syscalls", "sys_enter_sendto"),
    ),
    (
        "tb_exit_sendto",
        Attach::Tracepoint("syscalls", "sys_exit_sendto"),
    ),
    (
        "tb_enter_sendmsg",
        Attach::Tracepoint("syscalls", "sys_enter_sendmsg"),
    ),
    (
        "tb_exit_sendmsg",
        Attach::Tracepoint("syscalls", "sys_exit_sendmsg"),
    ),
    (
        "tb_enter_close",
        Attach::Tracepoint("syscalls", "sys_enter_close"),
    ),
    (
        "tb_sock_state",
        Attach::Tracepoint("sock", "inet_sock_set_state"),
    ),
    (
        "tb_tcp_retransmit",
        Attach::Tracepoint("tcp", "tcp_retransmit_skb"),
    ),
    ("tb_getaddrinfo", Attach::Getaddrinfo),
    ("tb_getaddrinfo_ret", Attach::Getaddrinfo),
];

/// Where glibc usually lives; the first that exists gets the DNS uprobes.
const LIBC_PATHS: &[&str] = &[
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib64/libc.so.6",
];

/// One attached program and its kernel run-time statistics.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    pub name: String,
    pub attach: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// The loaded programs and handles on their filter maps.
pub struct Probes {
    ebpf: Ebpf,
    attached: Vec<(&'static str, String)>,
    /// Keeps BPF run-time statistics on while held; None when the kernel refused.
    stats_fd: Option<OwnedFd>,
}

impl Probes {
    /// Mounts tracefs if needed, checks tracepoint layouts, loads the object and attaches
    /// the programs named in `only` (all of [`PROGRAMS`] when empty).
    pub fn load(only: &[&str]) -> Result<Self, TbdError> {
        tracefs::ensure_mounted()?;
        tracefs::check_formats()?;
        memlock::raise();
        let mut ebpf = Ebpf::load(EBPF_OBJECT)?;
        let stats_fd = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!("BPF run-time statistics unavailable: {e}");
                None
            }
        };
        let mut attached = Vec::new();
        let libc = LIBC_PATHS.iter().find(|p| Path::new(p).exists());
        for (name, at) in PROGRAMS {
            if !only.is_empty() && !only.contains(name) {
                continue;
            }
            let wrap = |source| TbdError::Attach {
                program: name.to_string(),
                source,
            };
            let prog = ebpf
                .program_mut(name)
                .ok_or_else(|| TbdError::Layout(format!("program {name} missing from object")))?;
            match at {
                Attach::Tracepoint(cat, tp) => {
                    let tp_prog: &mut TracePoint = prog.try_into().map_err(wrap)?;
                    tp_prog.load().map_err(wrap)?;
                    tp_prog.attach(cat, tp).map_err(wrap)?;
                    attached.push((*name, format!("tracepoint {cat}/{tp}")));
                }
                Attach::Getaddrinfo => {
                    let Some(libc) = libc else {
                        tracing::warn!(
                            "no libc found at {LIBC_PATHS:?}: DNS timing via getaddrinfo is off"
                        );
                        continue;
                    };
                    let up: &mut UProbe = prog.try_into().map_err(wrap)?;
                    up.load().map_err(wrap)?;
                    up.attach(
                        "getaddrinfo",
                        libc,
                        aya::programs::uprobe::UProbeScope::AllProcesses,
                    )
                    .map_err(wrap)?;
                    attached.push((*name, format!("uprobe {libc}:getaddrinfo")));
                }
            }
        }
        Ok(Self {
            ebpf,
            attached,
            stats_fd,
        })
    }

    fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, TbdError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| TbdError::Layout(format!("map {name} missing from object")))?;
        HashMap::try_from(map).map_err(|e| TbdError::Map(name, e))
    }

    /// Tracks a client process: its connect() calls and the sockets they open.
    pub fn track_pid(&mut self, pid: u32) -> Result<(), TbdError> {
        self.hash::<u32, u8>("TRACKED_PIDS")?
            .insert(pid, 1, 0)
            .map_err(|e| TbdError::Map("TRACKED_PIDS", e))
    }

    /// Tracks server-side sockets whose local port is `port` (TCP state events).
    pub fn track_port(&mut self, port: u16) -> Result<(), TbdError> {
        self.hash::<u16, u8>("TRACKED_PORTS")?
            .insert(port, 1, 0)
            .map_err(|e| TbdError::Map("TRACKED_PORTS", e))
    }

    /// Tracks connections accepted on listening socket `fd` of process `pid`.
    pub fn track_listener(&mut self, pid: u32, fd: u32, port: u16) -> Result<(), TbdError> {
        let info = ListenInfo { port, _pad: [0; 6] };
        self.hash::<SockKey, ListenInfo>("LISTENERS")?
            .insert(SockKey { pid, fd }, info, 0)
            .map_err(|e| TbdError::Map("LISTENERS", e))
    }

    /// Records an accept() already in progress (thread `tid` of `pid` blocked in it on the
    /// tracked listener `fd`), so the connection it returns is tracked too.
    pub fn track_inflight_accept(
        &mut self,
        pid: u32,
        tid: u32,
        fd: u32,
        peer_ptr: u64,
        port: u16,
    ) -> Result<(), TbdError> {
        let args = AcceptArgs {
            peer_ptr,
            listen_fd: fd as i32,
            port,
            _pad: 0,
        };
        self.hash::<u64, AcceptArgs>("ACCEPTS")?
            .insert((u64::from(pid) << 32) | u64::from(tid), args, 0)
            .map_err(|e| TbdError::Map("ACCEPTS", e))
    }

    /// Empties every filter and tracked-socket map: nothing is captured afterwards.
    pub fn clear_filters(&mut self) -> Result<(), TbdError> {
        fn clear<K: aya::Pod, V: aya::Pod>(mut m: HashMap<&mut MapData, K, V>) {
            let keys: Vec<K> = m.keys().filter_map(Result::ok).collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
        clear(self.hash::<u32, u8>("TRACKED_PIDS")?);
        clear(self.hash::<u16, u8>("TRACKED_PORTS")?);
        clear(self.hash::<SockKey, ListenInfo>("LISTENERS")?);
        clear(self.hash::<SockKey, tbd_common::SockInfo>("SOCKETS")?);
        clear(self.hash::<u64, u8>("SKS")?);
        Ok(())
    }

    /// Events lost in the kernel so far, per reason, summed over CPUs.
    pub fn lost(&self) -> Result<Vec<(&'static str, u64)>, TbdError> {
        let map = self
            .ebpf
            .map("LOST")
            .ok_or_else(|| TbdError::Layout("map LOST missing".into()))?;
        let arr = PerCpuArray::<_, u64>::try_from(map).map_err(|e| TbdError::Map("LOST", e))?;
        (0..lost::COUNT)
            .map(|i| {
                let per_cpu = arr.get(&i, 0).map_err(|e| TbdError::Map("LOST", e))?;
                Ok((lost::NAMES[i as usize], per_cpu.iter().sum()))
            })
            .collect()
    }

    /// Takes the ring buffer out of the object, for the reader task.
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, TbdError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| TbdError::Layout("map EVENTS missing".into()))?;
        RingBuf::try_from(map).map_err(|e| TbdError::Map("EVENTS", e))
    }

    /// Whether the kernel keeps BPF run-time statistics for us.
    pub fn stats_enabled(&self) -> bool {
        self.stats_fd.is_some()
    }

    /// Attached programs with their run time and run count from the kernel's BPF stats.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.attached
            .iter()
            .map(|(name, attach)| {
                let info = self.ebpf.program(name).and_then(|p| p.info().ok());
                ProgramStats {
                    name: name.to_string(),
                    attach: attach.clone(),
                    run_time_ns: info.as_ref().map_or(0, |i| i.run_time().as_nanos() as u64),
                    run_count: info.as_ref().map_or(0, |i| i.run_count()),
                }
            })
            .collect()
    }
}
