//! Loading and attaching the eBPF programs, and the kernel-side filters they consult.

use std::{os::fd::OwnedFd, path::Path};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        cgroup_skb::{CgroupSkbAttachType, CgroupSkbLinkId},
        trace_point::TracePointLinkId,
        uprobe::{UProbeLinkId, UProbeScope},
        CgroupAttachMode, CgroupSkb, TracePoint, UProbe,
    },
    Ebpf,
};
use tbd_common::{
    kind, lost, sock_bucket_bits, AcceptArgs, DataBatchEvent, EventHeader, ListenInfo, SockInfo,
    SockKey, SK_TABLE_SCALE, SOCK_SLOTS, SOCK_WAYS,
};

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
    /// A cgroup_skb ingress program on the root of the host's cgroup2 hierarchy.
    CgroupIngress,
}

/// The programs that time chunk arrival: tbd leaves them out with `--no-arrivals`.
pub const ARRIVAL_PROGRAMS: &[&str] = &["tb_arrival"];

/// Every program's name but those in `except`, for [`Probes::load_with`]'s `only`.
pub fn programs_except(except: &[&str]) -> Vec<&'static str> {
    PROGRAMS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !except.contains(name))
        .collect()
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
        "tb_exit_getpeername",
        Attach::Tracepoint("syscalls", "sys_exit_getpeername"),
    ),
    (
        "tb_exit_read",
        Attach::Tracepoint("syscalls", "sys_exit_read"),
    ),
    (
        "tb_exit_readv",
        Attach::Tracepoint("syscalls", "sys_exit_readv"),
    ),
    (
        "tb_exit_recvfrom",
        Attach::Tracepoint("syscalls", "sys_exit_recvfrom"),
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
        "tb_enter_sendmmsg",
        Attach::Tracepoint("syscalls", "sys_enter_sendmmsg"),
    ),
    (
        "tb_exit_sendmmsg",
        Attach::Tracepoint("syscalls", "sys_exit_sendmmsg"),
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
    ("tb_arrival", Attach::CgroupIngress),
    ("tb_fork", Attach::Tracepoint("sched", "sched_process_fork")),
    (
        "tb_exit_process",
        Attach::Tracepoint("sched", "sched_process_exit"),
    ),
    ("tb_getaddrinfo", Attach::Getaddrinfo),
    ("tb_getaddrinfo_ret", Attach::Getaddrinfo),
];

/// Entries of the probes' pid filter: the host's pid_max (pids are below it), at least the
/// kernel's default.
fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
        .max(32768)
}

/// Where glibc usually lives; the first that exists gets the DNS uprobes.
const LIBC_PATHS: &[&str] = &[
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib64/libc.so.6",
];

/// One loaded program and its kernel run-time statistics.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    pub name: String,
    pub attach: String,
    /// Whether it is attached now (only while a capture runs).
    pub attached: bool,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// When the kernel keeps BPF run-time statistics. Keeping them costs two clock reads on every
/// program run, including every filtered-out syscall of every process on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsMode {
    /// During the first second of a capture and one second in every ten after.
    Sampled,
    /// Whenever tbd runs.
    Always,
    /// Never.
    Off,
}

impl StatsMode {
    /// Whether statistics should be on `since_start` into a capture.
    pub fn wanted(self, since_start: std::time::Duration) -> bool {
        match self {
            StatsMode::Always => true,
            StatsMode::Off => false,
            StatsMode::Sampled => since_start.as_millis() % 10_000 < 1_000,
        }
    }

    /// The mode's name, as the CLI spells it.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned())
    }
}

/// Kernel memory per slot of the tracked-socket tables: its tag and state by (pid, fd), and
/// [`SK_TABLE_SCALE`] tags by socket address.
pub const SOCK_SLOT_BYTES: usize =
    std::mem::size_of::<SockInfo>() + (1 + SK_TABLE_SCALE as usize) * std::mem::size_of::<u64>();

/// Largest tracked-socket table: 856 MiB of kernel memory.
pub const MAX_SOCK_SLOTS: u32 = 1 << 20;

/// Whether `slots` can size the tracked-socket table; the reason when not.
pub fn check_sock_slots(slots: u32) -> Result<(), String> {
    if slots.is_power_of_two() && (SOCK_WAYS..=MAX_SOCK_SLOTS).contains(&slots) {
        return Ok(());
    }
    Err(format!(
        "{slots} sockets: the table needs a power of two from {SOCK_WAYS} to {MAX_SOCK_SLOTS} \
         (each slot is {SOCK_SLOT_BYTES} bytes of kernel memory)"
    ))
}

/// The link of an attached program.
enum Link {
    Tracepoint(TracePointLinkId),
    Uprobe(UProbeLinkId),
    CgroupSkb(CgroupSkbLinkId),
}

/// A loaded program: where it attaches, and its link while attached.
struct Loaded {
    name: &'static str,
    at: Attach,
    desc: String,
    link: Option<Link>,
}

/// The loaded programs and handles on their filter maps. Programs pass the verifier at load
/// but are attached only while a capture runs: an attached syscall tracepoint costs every
/// process on the host on every such syscall, even when the filter rejects it.
pub struct Probes {
    ebpf: Ebpf,
    progs: Vec<Loaded>,
    libc: Option<&'static str>,
    /// The host's cgroup2 root, where cgroup_skb programs attach.
    cgroup: Option<std::path::PathBuf>,
    /// Keeps BPF run-time statistics on while held, with when they were turned on.
    stats_on: Option<(OwnedFd, std::time::Instant)>,
    /// How long they were on before that.
    stats_total: std::time::Duration,
    /// Why statistics could not be turned on, once they failed.
    stats_error: Option<String>,
    /// Slots of the tracked-socket table.
    sock_slots: u32,
}

/// Sizes of the kernel's tables, fixed when the programs load. What does not fit is counted
/// lost under its reason, never dropped silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tracked-socket slots: a power of two, at least [`SOCK_WAYS`] (`sockets_full`).
    pub sockets: u32,
    /// Processes a capture follows through forks, each of: tracked clients' descendants and
    /// listener holders' descendants (`pids_full`).
    pub pids: u32,
    /// Threads inside connect(2), accept(2) or getaddrinfo at once, each (`inflight_full`).
    pub inflight: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sockets: SOCK_SLOTS,
            pids: 4096,
            inflight: 4096,
        }
    }
}

impl Probes {
    /// [`Probes::load_with`] tables of the default sizes.
    pub fn load(only: &[&str]) -> Result<Self, TbdError> {
        Self::load_with(only, Limits::default())
    }

    /// Mounts tracefs if needed, checks tracepoint layouts, and loads the programs named in
    /// `only` (all of [`PROGRAMS`] when empty) through the verifier, with tables of the sizes
    /// in `limits`. Nothing is attached yet.
    pub fn load_with(only: &[&str], limits: Limits) -> Result<Self, TbdError> {
        let sock_slots = limits.sockets;
        check_sock_slots(sock_slots).map_err(TbdError::Config)?;
        if limits.pids == 0 || limits.inflight == 0 {
            return Err(TbdError::Config(format!(
                "{limits:?}: every table needs at least one entry"
            )));
        }
        let bucket_bits = sock_bucket_bits(sock_slots);
        let sk_bucket_bits = sock_bucket_bits(sock_slots * SK_TABLE_SCALE);
        tracefs::ensure_mounted()?;
        tracefs::check_formats()?;
        memlock::raise();
        // Where the kernel says a process's last thread exited; 0 (unknown) on kernels whose
        // sched_process_exit lacks it.
        let group_dead_at =
            tracefs::optional_offset("sched/sched_process_exit", "group_dead").unwrap_or(0) as u32;
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries("TRACKED_TGIDS", pid_max())
            .map_max_entries("SOCK_TAGS", sock_slots)
            .map_max_entries("SOCK_VALS", sock_slots)
            .map_max_entries("SK_TAGS", sock_slots * SK_TABLE_SCALE)
            .map_max_entries("TRACKED_PIDS", limits.pids)
            .map_max_entries("SERVER_CHILDREN", limits.pids)
            .map_max_entries("CONNECTS", limits.inflight)
            .map_max_entries("ACCEPTS", limits.inflight)
            .map_max_entries("DNS_INFLIGHT", limits.inflight)
            .override_global("SOCK_BUCKET_BITS", &bucket_bits, true)
            .override_global("SK_BUCKET_BITS", &sk_bucket_bits, true)
            .override_global("EXIT_GROUP_DEAD_AT", &group_dead_at, true)
            .load(EBPF_OBJECT)?;
        let libc = LIBC_PATHS.iter().copied().find(|p| Path::new(p).exists());
        let cgroup = crate::cgroup_root::find();
        let mut progs = Vec::new();
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
            let desc = match at {
                Attach::Tracepoint(cat, tp) => {
                    let p: &mut TracePoint = prog.try_into().map_err(wrap)?;
                    p.load().map_err(wrap)?;
                    format!("tracepoint {cat}/{tp}")
                }
                Attach::Getaddrinfo => {
                    let Some(libc) = libc else {
                        tracing::warn!(
                            "no libc found at {LIBC_PATHS:?}: DNS timing via getaddrinfo is off"
                        );
                        continue;
                    };
                    let p: &mut UProbe = prog.try_into().map_err(wrap)?;
                    p.load().map_err(wrap)?;
                    format!("uprobe {libc}:getaddrinfo")
                }
                Attach::CgroupIngress => {
                    let Some(root) = &cgroup else {
                        tracing::warn!(
                            "no cgroup2 hierarchy mounted: {name} is off (mount one, e.g. \
                             `mount -t cgroup2 none /sys/fs/cgroup/unified`, to time arrivals)"
                        );
                        continue;
                    };
                    let p: &mut CgroupSkb = prog.try_into().map_err(wrap)?;
                    p.load().map_err(wrap)?;
                    format!("cgroup_skb ingress {}", root.display())
                }
            };
            progs.push(Loaded {
                name,
                at: *at,
                desc,
                link: None,
            });
        }
        Ok(Self {
            ebpf,
            progs,
            libc,
            cgroup,
            stats_on: None,
            stats_total: std::time::Duration::ZERO,
            stats_error: None,
            sock_slots,
        })
    }

    /// Attaches every loaded program not yet attached. On failure, what was attached stays
    /// attached until [`Probes::detach`].
    pub fn attach(&mut self) -> Result<(), TbdError> {
        for l in self.progs.iter_mut().filter(|l| l.link.is_none()) {
            let wrap = |source| TbdError::Attach {
                program: l.name.to_string(),
                source,
            };
            let prog = self
                .ebpf
                .program_mut(l.name)
                .ok_or_else(|| TbdError::Layout(format!("program {} missing", l.name)))?;
            l.link = Some(match l.at {
                Attach::Tracepoint(cat, tp) => {
                    let p: &mut TracePoint = prog.try_into().map_err(wrap)?;
                    Link::Tracepoint(p.attach(cat, tp).map_err(wrap)?)
                }
                Attach::CgroupIngress => {
                    let root = self
                        .cgroup
                        .as_ref()
                        .expect("loaded only with a cgroup2 root");
                    let dir = std::fs::File::open(root).map_err(|e| {
                        TbdError::Config(format!("opening cgroup {}: {e}", root.display()))
                    })?;
                    let p: &mut CgroupSkb = prog.try_into().map_err(wrap)?;
                    // A link (aya makes one on kernels from 5.7) runs beside any other
                    // program there, which decides the segment's fate; the kernel refuses
                    // attach flags on links, so the mode is the default.
                    Link::CgroupSkb(
                        p.attach(&dir, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
                            .map_err(wrap)?,
                    )
                }
                Attach::Getaddrinfo => {
                    let libc = self.libc.expect("uprobes are loaded only with a libc");
                    let p: &mut UProbe = prog.try_into().map_err(wrap)?;
                    Link::Uprobe(
                        p.attach("getaddrinfo", libc, UProbeScope::AllProcesses)
                            .map_err(wrap)?,
                    )
                }
            });
        }
        Ok(())
    }

    /// Detaches every attached program; once it returns, no program of ours runs on a new
    /// event.
    pub fn detach(&mut self) {
        for l in &mut self.progs {
            let Some(link) = l.link.take() else { continue };
            let Some(prog) = self.ebpf.program_mut(l.name) else {
                continue;
            };
            let r = match link {
                Link::Tracepoint(id) => {
                    <&mut TracePoint>::try_from(prog).map_or(Ok(()), |p| p.detach(id))
                }
                Link::Uprobe(id) => <&mut UProbe>::try_from(prog).map_or(Ok(()), |p| p.detach(id)),
                Link::CgroupSkb(id) => {
                    <&mut CgroupSkb>::try_from(prog).map_or(Ok(()), |p| p.detach(id))
                }
            };
            if let Err(e) = r {
                tracing::warn!("detaching {}: {e}", l.name);
            }
        }
    }

    /// Turns the kernel's BPF run-time statistics on or off; a kernel that refuses is logged
    /// once and leaves them off.
    pub fn set_stats(&mut self, on: bool) {
        match (on, self.stats_on.take()) {
            (true, None) if self.stats_error.is_none() => {
                match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
                    Ok(fd) => self.stats_on = Some((fd, std::time::Instant::now())),
                    Err(e) => {
                        tracing::warn!("BPF run-time statistics unavailable: {e}");
                        self.stats_error = Some(e.to_string());
                    }
                }
            }
            // Dropping the fd turns them off.
            (false, Some((_, since))) => self.stats_total += since.elapsed(),
            (_, kept) => self.stats_on = kept,
        }
    }

    /// Whether the kernel keeps BPF run-time statistics for us now.
    pub fn stats_enabled(&self) -> bool {
        self.stats_on.is_some()
    }

    /// How long statistics have been on in total: the run times and counts cover only that.
    pub fn stats_seconds(&self) -> f64 {
        let now = self
            .stats_on
            .as_ref()
            .map_or(std::time::Duration::ZERO, |(_, t)| t.elapsed());
        (self.stats_total + now).as_secs_f64()
    }

    fn array<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, V>, TbdError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| TbdError::Layout(format!("map {name} missing from object")))?;
        Array::try_from(map).map_err(|e| TbdError::Map(name, e))
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

    /// Slots of the tracked-socket table: how many sockets the kernel can track at once, at
    /// best (a socket past a full bucket of 8 is lost).
    pub fn sock_slots(&self) -> u32 {
        self.sock_slots
    }

    /// Marks the start of a capture for the probes, before they attach: write starts
    /// stamped earlier belong to writes whose exits went unseen, and are not used.
    pub fn mark_capture_start(&mut self, now_ns: u64) -> Result<(), TbdError> {
        self.array::<u64>("CAPTURE_START")?
            .set(0, now_ns, 0)
            .map_err(|e| TbdError::Map("CAPTURE_START", e))
    }

    /// Tracks a client process: its connect() calls and the sockets they open.
    pub fn track_pid(&mut self, pid: u32) -> Result<(), TbdError> {
        self.hash::<u32, u8>("TRACKED_PIDS")?
            .insert(pid, 1, 0)
            .map_err(|e| TbdError::Map("TRACKED_PIDS", e))?;
        self.set_tgid(pid, 1)
    }

    /// The probes' fast filter, `TRACKED_TGIDS` (byte per pid).
    fn tgids(&mut self) -> Result<Array<&mut MapData, u8>, TbdError> {
        self.array("TRACKED_TGIDS")
    }

    /// Sets or clears `pid` in the probes' fast filter.
    fn set_tgid(&mut self, pid: u32, on: u8) -> Result<(), TbdError> {
        self.tgids()?
            .set(pid, on, 0)
            .map_err(|e| TbdError::Map("TRACKED_TGIDS", e))
    }

    /// Whether `pid` passes the probes' fast filter.
    pub fn tgid_tracked(&mut self, pid: u32) -> Result<bool, TbdError> {
        Ok(self.tgids()?.get(&pid, 0).is_ok_and(|v| v != 0))
    }

    /// The processes tracked now: those a capture named, and their children forked since.
    pub fn tracked_pids(&mut self) -> Result<Vec<u32>, TbdError> {
        let mut v: Vec<u32> = self
            .hash::<u32, u8>("TRACKED_PIDS")?
            .keys()
            .filter_map(Result::ok)
            .collect();
        v.sort_unstable();
        Ok(v)
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
            .map_err(|e| TbdError::Map("LISTENERS", e))?;
        self.set_tgid(pid, 1)
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

    /// Empties every filter and tracked-socket map: nothing is captured afterwards. Returns
    /// the continuation chunks the kernel still held per socket (see [`SockInfo::batch`]),
    /// newer than anything of their socket in the ring buffer, stamped `now_ns`.
    pub fn clear_filters(&mut self, now_ns: u64) -> Result<Vec<DataBatchEvent>, TbdError> {
        fn clear<K: aya::Pod, V: aya::Pod>(mut m: HashMap<&mut MapData, K, V>) {
            let keys: Vec<K> = m.keys().filter_map(Result::ok).collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
        // The fast filter first, then the clients and listeners, so that no new socket is
        // tracked meanwhile.
        let mut holders: Vec<u32> = self
            .hash::<u32, u8>("TRACKED_PIDS")?
            .keys()
            .filter_map(Result::ok)
            .collect();
        holders.extend(
            self.hash::<SockKey, ListenInfo>("LISTENERS")?
                .keys()
                .filter_map(Result::ok)
                .map(|k| k.pid),
        );
        holders.extend(
            self.hash::<u32, u32>("SERVER_CHILDREN")?
                .keys()
                .filter_map(Result::ok),
        );
        for pid in holders {
            self.set_tgid(pid, 0)?;
        }
        clear(self.hash::<u32, u8>("TRACKED_PIDS")?);
        clear(self.hash::<u16, u8>("TRACKED_PORTS")?);
        clear(self.hash::<SockKey, ListenInfo>("LISTENERS")?);
        clear(self.hash::<u32, u32>("SERVER_CHILDREN")?);
        // Untracked first, then read: the capture detached the probes before, and a probe
        // still finishing could send a batch that is read here too (the tracker drops the
        // second copy).
        let held: Vec<(u32, u32)> = self
            .free_tags("SOCK_TAGS", self.sock_slots)?
            .into_iter()
            .map(|(slot, tag)| (slot, (tag >> 32) as u32))
            .collect();
        let vals = self.array::<SockInfo>("SOCK_VALS")?;
        let mut pending = Vec::new();
        for (slot, pid) in held {
            let Ok(info) = vals.get(&slot, 0) else {
                continue;
            };
            if info.batch.n > 0 {
                pending.push(DataBatchEvent {
                    hdr: EventHeader {
                        kind: kind::DATA_BATCH,
                        pid,
                        tid: pid,
                        _pad: 0,
                        ts_ns: now_ns,
                    },
                    op: info.last_op,
                    ..info.batch
                });
            }
        }
        self.free_tags("SK_TAGS", self.sock_slots * SK_TABLE_SCALE)?;
        Ok(pending)
    }

    /// Frees every slot of the tag table `name` (`SOCK_TAGS`, `SK_TAGS`) of `slots` slots;
    /// returns the slots that were taken, with their tags.
    fn free_tags(&mut self, name: &'static str, slots: u32) -> Result<Vec<(u32, u64)>, TbdError> {
        let mut tags = self.array::<u64>(name)?;
        let mut taken = Vec::new();
        for slot in 0..slots {
            let tag = tags.get(&slot, 0).map_err(|e| TbdError::Map(name, e))?;
            if tag != 0 {
                taken.push((slot, tag));
                tags.set(slot, 0, 0).map_err(|e| TbdError::Map(name, e))?;
            }
        }
        Ok(taken)
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

    /// Loaded programs with their run time and run count from the kernel's BPF stats.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.progs
            .iter()
            .map(|l| {
                let info = self.ebpf.program(l.name).and_then(|p| p.info().ok());
                ProgramStats {
                    name: l.name.to_string(),
                    attach: l.desc.clone(),
                    attached: l.link.is_some(),
                    run_time_ns: info.as_ref().map_or(0, |i| i.run_time().as_nanos() as u64),
                    run_count: info.as_ref().map_or(0, |i| i.run_count()),
                }
            })
            .collect()
    }
}
