//! Connection tracking: turns socket events into HTTP/1.1 exchanges, connections and DNS lookups.
//!
//! [`ConnTracker`] consumes the probes' events in time order. Open connections are keyed by
//! (pid, fd); TCP state and retransmit events name a kernel socket by its `struct sock` address
//! (`skaddr`), which is linked to a connection through the SYN_SENT event inside connect() (client
//! side) or through the 4-tuple (server side). Everything is emitted through a callback so that the
//! hot path (one data event) costs one hash lookup and no allocation unless an exchange starts.

// Fx: keys are small integers from the kernel, hashed on every event; SipHash's DoS resistance
// buys nothing here and cost 8% of tbd's CPU.
use rustc_hash::FxHashMap as HashMap;

use tb_proto::v1::{Chunk, Connection, DnsLookup, Endpoint, Exchange};
use tbd_common::{
    op, tcp_state, AcceptEvent, CloseEvent, ConnectEvent, DnsEvent, PeerEvent, RetransmitEvent,
    SockAddr, StateEvent, PREFIX_LEN,
};

use crate::events::{batch_chunks, c_str, socket_addr, Event};
use crate::http_prefix::{request_line, status_line};

/// connect()'s return for a non-blocking socket whose handshake is under way.
const EINPROGRESS: i32 = -115;
/// Destination port that makes a connection a DNS socket.
const DNS_PORT: u16 = 53;
/// Bound on kernel sockets seen in state events but not (yet) tied to a connection, so that a
/// lost connect or accept event cannot grow memory without limit (the kernel's map of TCP
/// sockets holds 65536 entries).
const MAX_PENDING: usize = 65536;

/// What the tracker produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A completed (or, at flush, still open) HTTP exchange.
    Exchange(Exchange),
    /// A connection, emitted once when it closes, fails, or at flush.
    Connection(Connection),
    /// A DNS lookup: a `getaddrinfo` call, or the traffic of a socket to port 53.
    Dns(DnsLookup),
}

/// Counters of what the tracker saw, for the daemon's info and loss reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Events consumed.
    pub events: u64,
    /// Exchanges emitted.
    pub exchanges: u64,
    /// Connections emitted (failed connects included).
    pub connections: u64,
    /// DNS lookups emitted (both sources).
    pub dns_lookups: u64,
    /// connect() calls that failed outright (not 0, not EINPROGRESS).
    pub failed_connects: u64,
    /// Data events on a (pid, fd) with no connect or accept seen: ignored.
    pub orphan_data: u64,
    /// Data events on a tracked connection outside any exchange (before the first request line,
    /// or traffic that is not HTTP/1.x, e.g. TLS): ignored.
    pub unmatched_data: u64,
    /// Retransmissions seen.
    pub retransmits: u64,
    /// Retransmissions on a kernel socket tied to no connection.
    pub orphan_retransmits: u64,
    /// Connections whose fd was reused by a new connect or accept before their close was seen.
    pub missed_closes: u64,
    /// State events not kept because too many unlinked kernel sockets were already held.
    pub pending_dropped: u64,
    /// Batched chunks already taken (read out at stop while the probe sent them): skipped.
    pub duplicate_chunks: u64,
}

/// One data syscall as the tracker takes it: from a [`tbd_common::DataEvent`] or one chunk of a
/// batch.
struct Syscall<'a> {
    pid: u32,
    fd: u32,
    is_write: bool,
    bytes: u64,
    /// Entry (writes) and exit of the syscall.
    t_enter: u64,
    t_exit: u64,
    /// Payload prefix, empty for batched chunks.
    prefix: &'a [u8],
    /// From a batch: may repeat a chunk already taken (see `duplicate_chunks`).
    batched: bool,
}

/// (pid, fd) of an open connection.
type FdKey = (u32, u32);

/// A server-side connection as the TCP state tracepoint names it: local port and peer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct TupleKey {
    local_port: u16,
    peer_port: u16,
    /// The peer address in IPv6 form (IPv4 as `::ffff:a.b.c.d`), so that an IPv4 peer matches
    /// whether a dual-stack socket reports it mapped or not.
    peer: [u8; 16],
}

impl TupleKey {
    fn new(local_port: u16, peer: &SockAddr) -> Option<Self> {
        let addr = match peer.family {
            2 => {
                let mut a = [0u8; 16];
                a[10] = 0xff;
                a[11] = 0xff;
                a[12..].copy_from_slice(&peer.addr[..4]);
                a
            }
            10 => peer.addr,
            _ => return None,
        };
        Some(TupleKey {
            local_port,
            peer_port: peer.port,
            peer: addr,
        })
    }
}

/// Where an unlinked kernel socket will be claimed from.
#[derive(Clone, Copy, Debug)]
enum Claim {
    /// By the ConnectEvent of this (pid, fd).
    Connect(FdKey),
    /// By the AcceptEvent of this 4-tuple.
    Accept(TupleKey),
}

/// A kernel socket seen in state events before its connect() returned or accept() ran: the
/// SYN_SENT (and for blocking connects, ESTABLISHED) events come before connect's exit event, and
/// a server socket is established before accept() hands it out.
#[derive(Clone, Copy, Debug)]
struct Pending {
    claim: Claim,
    /// Local address; its port may still be 0 at SYN_SENT.
    local: SockAddr,
    t_established_ns: u64,
    retransmits: u32,
}

/// Lookup state of a DNS socket (a connection to port 53).
#[derive(Clone, Copy, Debug, Default)]
struct DnsState {
    /// Entry of the first write (the query).
    t_first_write_ns: u64,
    /// Exit of the last read (the answer).
    t_last_read_ns: u64,
}

/// One open connection.
#[derive(Debug)]
struct Conn {
    /// The record emitted at close; filled in as events arrive.
    msg: Connection,
    is_client: bool,
    /// Linked kernel socket, 0 when none.
    skaddr: u64,
    /// Server side, not yet linked: the 4-tuple a state event will claim it by.
    tuple: Option<TupleKey>,
    /// The exchange in progress.
    open: Option<Exchange>,
    /// Exchanges started on this connection.
    seq: u32,
    dns: Option<DnsState>,
    /// Exit time of the last data syscall taken, so that a chunk seen twice (a batch read out
    /// of the kernel at stop while the probe was sending it) is taken once.
    last_data_ns: u64,
    /// When its TCP connection reached CLOSE with the fd still open, 0 before.
    tcp_closed_ns: u64,
}

/// Turns probe events into exchanges, connections and DNS lookups; see the module docs.
#[derive(Debug)]
pub struct ConnTracker {
    run_id: String,
    next_conn_id: u64,
    conns: HashMap<FdKey, Conn>,
    by_sk: HashMap<u64, FdKey>,
    by_tuple: HashMap<TupleKey, FdKey>,
    pending: HashMap<u64, Pending>,
    pending_by_fd: HashMap<FdKey, u64>,
    pending_by_tuple: HashMap<TupleKey, u64>,
    stats: TrackerStats,
    /// Stored exchanges handed back by [`ConnTracker::recycle`]: new exchanges reuse their
    /// strings and chunk vectors. Seven allocations and frees per exchange were a fifth of
    /// tbd's CPU under a saturated capture.
    spare: Vec<Exchange>,
}

/// Most exchanges kept for reuse: several drains' worth at 17,000 exchanges a second.
const MAX_SPARE: usize = 1024;
/// Largest chunk vector kept with a spare exchange, so that the spares of long responses do
/// not hold megabytes: at most 1024 × 64 × 16 bytes in all.
const SPARE_CHUNKS: usize = 64;

/// `from` in `buf`'s allocation, which is taken out of it.
fn reuse(buf: &mut String, from: &str) -> String {
    let mut s = std::mem::take(buf);
    s.clear();
    s.push_str(from);
    s
}

impl ConnTracker {
    /// A tracker whose outputs all carry `run_id`.
    pub fn new(run_id: String) -> Self {
        ConnTracker {
            run_id,
            next_conn_id: 1,
            conns: HashMap::default(),
            by_sk: HashMap::default(),
            by_tuple: HashMap::default(),
            pending: HashMap::default(),
            pending_by_fd: HashMap::default(),
            pending_by_tuple: HashMap::default(),
            stats: TrackerStats::default(),
            spare: Vec::new(),
        }
    }

    /// Takes back exchanges that were emitted and stored, to reuse their buffers.
    pub fn recycle(&mut self, done: impl IntoIterator<Item = Exchange>) {
        let room = MAX_SPARE.saturating_sub(self.spare.len());
        self.spare.extend(done.into_iter().take(room).map(|mut x| {
            if x.chunks.capacity() > SPARE_CHUNKS {
                x.chunks = Vec::new();
            }
            x
        }));
    }

    /// Counters so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Connections currently open (tracked and not yet emitted).
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Consumes one event, in time order, and passes whatever it completes to `out`.
    pub fn on_event(&mut self, ev: &Event, out: &mut impl FnMut(Output)) {
        self.stats.events += 1;
        match ev {
            Event::Data(d) => {
                let s = Syscall {
                    pid: d.hdr.pid,
                    fd: d.fd as u32,
                    is_write: d.op == op::WRITE,
                    bytes: u64::from(d.bytes),
                    t_enter: d.ts_enter_ns,
                    t_exit: d.hdr.ts_ns,
                    prefix: &d.prefix[..usize::from(d.prefix_len).min(PREFIX_LEN)],
                    batched: false,
                };
                self.on_data(&s, out)
            }
            Event::Batch(b) => {
                let chunks = batch_chunks(b);
                let Some(conn) = self.conns.get_mut(&(b.hdr.pid, b.fd as u32)) else {
                    self.stats.orphan_data += chunks.len() as u64;
                    return;
                };
                for c in chunks {
                    let s = Syscall {
                        pid: b.hdr.pid,
                        fd: b.fd as u32,
                        is_write: b.op == u32::from(op::WRITE),
                        bytes: c.bytes,
                        t_enter: c.ts_enter_ns,
                        t_exit: c.ts_ns,
                        prefix: &[],
                        batched: true,
                    };
                    Self::take_data(conn, &mut self.spare, &mut self.stats, &s, out);
                }
            }
            Event::Connect(c) => self.on_connect(c, out),
            Event::Accept(a) => self.on_accept(a, out),
            Event::Peer(p) => self.on_peer(p),
            Event::Close(c) => self.on_close(c, out),
            Event::State(s) => self.on_state(s),
            Event::Retransmit(r) => self.on_retransmit(r),
            Event::Dns(d) => self.on_dns(d, out),
        }
    }

    /// Emits everything still open, at capture stop: open exchanges as they stand, then open
    /// connections with `t_closed_ns` 0. `now_ns` is the stop time, logged with what was open.
    pub fn flush(&mut self, now_ns: u64, out: &mut impl FnMut(Output)) {
        let mut keys: Vec<(u64, FdKey)> = self
            .conns
            .iter()
            .map(|(k, c)| (c.msg.conn_id, *k))
            .collect();
        // Oldest connection first, so that a flush's output order does not depend on hashing.
        keys.sort_unstable();
        tracing::debug!(
            at_ns = now_ns,
            open_connections = keys.len(),
            unlinked_sockets = self.pending.len(),
            "conntrack flush"
        );
        for (_, key) in keys {
            self.finish(key, 0, out);
        }
        self.pending.clear();
        self.pending_by_fd.clear();
        self.pending_by_tuple.clear();
    }

    fn on_data(&mut self, d: &Syscall, out: &mut impl FnMut(Output)) {
        let Some(conn) = self.conns.get_mut(&(d.pid, d.fd)) else {
            self.stats.orphan_data += 1;
            return;
        };
        Self::take_data(conn, &mut self.spare, &mut self.stats, d, out);
    }

    /// One data syscall of `conn`. An associated function, so that a batch's chunks, all of
    /// one connection, share one lookup of it.
    fn take_data(
        conn: &mut Conn,
        spare: &mut Vec<Exchange>,
        stats: &mut TrackerStats,
        d: &Syscall,
        out: &mut impl FnMut(Output),
    ) {
        if d.batched && d.t_exit <= conn.last_data_ns {
            stats.duplicate_chunks += 1;
            return;
        }
        conn.last_data_ns = conn.last_data_ns.max(d.t_exit);
        let bytes = d.bytes;
        let is_write = d.is_write;
        if let Some(dns) = conn.dns.as_mut() {
            if is_write {
                if dns.t_first_write_ns == 0 {
                    dns.t_first_write_ns = d.t_enter;
                }
            } else {
                dns.t_last_read_ns = d.t_exit;
            }
            return;
        }
        let prefix = d.prefix;
        if is_write == conn.is_client {
            // Request direction: write on the client, read on the server.
            if let Some(head) = request_line(prefix) {
                if let Some(done) = conn.open.take() {
                    stats.exchanges += 1;
                    out(Output::Exchange(done));
                }
                // The client's request leaves when its write is entered; the server has the
                // request once its read returns.
                let t_first = if conn.is_client { d.t_enter } else { d.t_exit };
                let mut old = spare.pop().unwrap_or_default();
                let mut chunks = std::mem::take(&mut old.chunks);
                chunks.clear();
                // A streamed response is dozens of chunks: growing from empty would
                // reallocate several times per exchange.
                chunks.reserve(tbd_common::BATCH_LEN);
                conn.open = Some(Exchange {
                    run_id: reuse(&mut old.run_id, &conn.msg.run_id),
                    side: reuse(&mut old.side, &conn.msg.side),
                    pid: conn.msg.pid,
                    comm: reuse(&mut old.comm, &conn.msg.comm),
                    conn_id: conn.msg.conn_id,
                    conn_new: conn.seq == 0,
                    request_id: reuse(&mut old.request_id, head.request_id.unwrap_or_default()),
                    method: reuse(&mut old.method, head.method),
                    path: reuse(&mut old.path, head.path),
                    t_request_first_ns: t_first,
                    t_request_last_ns: d.t_exit,
                    request_bytes: bytes,
                    seq: conn.seq,
                    chunks,
                    // Every other field as new, whatever the reused exchange held.
                    ..Default::default()
                });
                conn.seq += 1;
            } else if let Some(x) = conn.open.as_mut() {
                // Rest of the request (headers and body in further syscalls, or a body sent
                // after `100 Continue`).
                x.t_request_last_ns = d.t_exit;
                x.request_bytes += bytes;
            } else {
                stats.unmatched_data += 1;
            }
        } else {
            // Response direction: read on the client (when the bytes arrived), write on the
            // server (when the server emitted them, i.e. entered the write).
            let Some(x) = conn.open.as_mut() else {
                stats.unmatched_data += 1;
                return;
            };
            let t = if conn.is_client { d.t_exit } else { d.t_enter };
            if x.t_response_first_ns == 0 {
                x.t_response_first_ns = t;
            }
            // Checked again after an interim 1xx so that the final status wins.
            if x.http_status < 200 {
                if let Some(s) = status_line(prefix) {
                    x.http_status = u32::from(s);
                }
            }
            x.chunks.push(Chunk { t_ns: t, bytes });
            x.t_response_last_ns = t;
            x.response_bytes += bytes;
        }
    }

    fn on_connect(&mut self, c: &ConnectEvent, out: &mut impl FnMut(Output)) {
        let key = (c.hdr.pid, c.fd as u32);
        let ok = c.ret == 0 || c.ret == EINPROGRESS;
        if !ok && self.conns.contains_key(&key) {
            // connect() again on a socket already connecting or connected (EALREADY, EISCONN):
            // a completion check, not a new connection.
            return;
        }
        let pending = self
            .pending_by_fd
            .remove(&key)
            .and_then(|sk| self.pending.remove(&sk).map(|p| (sk, p)));
        if self.conns.contains_key(&key) {
            self.stats.missed_closes += 1;
            self.finish(key, c.hdr.ts_ns, out);
        }
        let id = self.next_id();
        let mut msg = Connection {
            run_id: self.run_id.clone(),
            conn_id: id,
            side: "client".to_owned(),
            pid: c.hdr.pid,
            comm: c_str(&c.comm),
            src: None,
            dst: Some(endpoint(&c.dst)),
            t_connect_start_ns: c.ts_enter_ns,
            connect_ret: c.ret,
            is_dns: c.dst.port == DNS_PORT,
            ..Default::default()
        };
        if let Some((_, p)) = &pending {
            msg.src = Some(endpoint(&p.local));
            msg.t_established_ns = p.t_established_ns;
            msg.retransmits = p.retransmits;
        }
        if !ok {
            // The attempt ended when connect() returned.
            msg.t_closed_ns = c.hdr.ts_ns;
            self.stats.failed_connects += 1;
            self.stats.connections += 1;
            out(Output::Connection(msg));
            return;
        }
        let mut conn = Conn {
            is_client: true,
            skaddr: 0,
            tuple: None,
            open: None,
            seq: 0,
            dns: msg.is_dns.then(DnsState::default),
            last_data_ns: 0,
            tcp_closed_ns: 0,
            msg,
        };
        if let Some((sk, _)) = pending {
            conn.skaddr = sk;
            self.by_sk.insert(sk, key);
        }
        self.conns.insert(key, conn);
    }

    fn on_accept(&mut self, a: &AcceptEvent, out: &mut impl FnMut(Output)) {
        let key = (a.hdr.pid, a.fd as u32);
        if self.conns.contains_key(&key) {
            self.stats.missed_closes += 1;
            self.finish(key, a.hdr.ts_ns, out);
        }
        let id = self.next_id();
        let conn = Conn {
            msg: Connection {
                run_id: self.run_id.clone(),
                conn_id: id,
                side: "server".to_owned(),
                pid: a.hdr.pid,
                comm: c_str(&a.comm),
                src: Some(endpoint(&a.peer)),
                // accept() names only the port; the address comes from a linked state event.
                dst: Some(Endpoint {
                    addr: String::new(),
                    port: u32::from(a.local_port),
                }),
                t_connect_start_ns: a.hdr.ts_ns,
                ..Default::default()
            },
            is_client: false,
            last_data_ns: 0,
            tcp_closed_ns: 0,
            skaddr: 0,
            tuple: None,
            open: None,
            seq: 0,
            dns: None,
        };
        self.conns.insert(key, conn);
        self.link_server(key, a.local_port, &a.peer);
    }

    /// A server socket's peer from getpeername(), for servers that accepted it with a null
    /// address: the connection gets its source and is linked to its kernel socket.
    fn on_peer(&mut self, p: &PeerEvent) {
        let key = (p.hdr.pid, p.fd as u32);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.is_client || conn.skaddr != 0 || conn.tuple.is_some() {
            return;
        }
        conn.msg.src = Some(endpoint(&p.peer));
        let local_port = conn.msg.dst.as_ref().map_or(0, |e| e.port as u16);
        self.link_server(key, local_port, &p.peer);
    }

    /// Links server connection `key` to its kernel socket by 4-tuple: now, when the socket's
    /// handshake was seen before accept() handed it out, or when a later state event names it.
    fn link_server(&mut self, key: FdKey, local_port: u16, peer: &SockAddr) {
        let Some(tuple) = TupleKey::new(local_port, peer) else {
            return;
        };
        let pending = self
            .pending_by_tuple
            .remove(&tuple)
            .and_then(|sk| self.pending.remove(&sk).map(|p| (sk, p)));
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        match pending {
            Some((sk, p)) => {
                conn.skaddr = sk;
                set_local_addr(&mut conn.msg.dst, &p.local);
                conn.msg.t_established_ns = p.t_established_ns;
                conn.msg.retransmits = p.retransmits;
                self.by_sk.insert(sk, key);
            }
            None => {
                conn.tuple = Some(tuple);
                self.by_tuple.insert(tuple, key);
            }
        }
    }

    fn on_close(&mut self, c: &CloseEvent, out: &mut impl FnMut(Output)) {
        let key = (c.hdr.pid, c.fd as u32);
        if let Some(conn) = self.conns.get_mut(&key) {
            // close() of an established socket whose peer has sent no FIN (nor a reset) sends
            // this side's FIN first. Its own FIN_WAIT1 comes after the connection is emitted.
            if conn.msg.closed_by.is_empty()
                && conn.msg.t_established_ns != 0
                && conn.tcp_closed_ns == 0
                && !conn.msg.is_dns
            {
                conn.msg.closed_by = side_name(conn.is_client).to_owned();
            }
        }
        self.finish(key, c.hdr.ts_ns, out);
    }

    fn on_state(&mut self, s: &StateEvent) {
        if s.skaddr == 0 {
            return;
        }
        if s.newstate == tcp_state::SYN_SENT && s.fd >= 0 {
            let key = (s.hdr.pid, s.fd as u32);
            if let Some(old) = self.pending_by_fd.remove(&key) {
                self.pending.remove(&old);
            }
            // A new socket at the address of one whose TCP_CLOSE was lost: unlink the old one.
            if let Some(stale) = self.by_sk.remove(&s.skaddr) {
                if let Some(conn) = self.conns.get_mut(&stale) {
                    conn.skaddr = 0;
                }
            }
            self.add_pending(
                s.skaddr,
                Pending {
                    claim: Claim::Connect(key),
                    local: s.src,
                    t_established_ns: 0,
                    retransmits: 0,
                },
            );
            return;
        }
        if let Some(key) = self.resolve(s.skaddr, &s.src, &s.dst) {
            if let Some(conn) = self.conns.get_mut(&key) {
                if conn.is_client {
                    set_local_port(&mut conn.msg.src, &s.src);
                } else {
                    set_local_addr(&mut conn.msg.dst, &s.src);
                }
                if s.newstate == tcp_state::ESTABLISHED && conn.msg.t_established_ns == 0 {
                    conn.msg.t_established_ns = s.hdr.ts_ns;
                }
                if conn.msg.closed_by.is_empty() {
                    if let Some(who) = closer(conn.is_client, s.oldstate, s.newstate) {
                        conn.msg.closed_by = who.to_owned();
                    }
                }
            }
            if s.newstate == tcp_state::CLOSE {
                // The TCP connection is over (a reset, a shutdown() answered, a failed
                // handshake), but the fd may still be open: reads taken before it may still be
                // held in the kernel's batch, sent at close(), and a write into a reset
                // connection returns after this event. So the connection ends at close(), at
                // the fd's reuse or at capture stop; only the socket's address is released
                // now, since the kernel may reuse it.
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.tcp_closed_ns = s.hdr.ts_ns;
                    conn.skaddr = 0;
                }
                if self.by_sk.get(&s.skaddr) == Some(&key) {
                    self.by_sk.remove(&s.skaddr);
                }
            }
            return;
        }
        if let Some(p) = self.pending.get_mut(&s.skaddr) {
            if s.newstate == tcp_state::CLOSE {
                let claim = p.claim;
                self.pending.remove(&s.skaddr);
                self.unindex_pending(s.skaddr, claim);
                return;
            }
            if s.src.port != 0 {
                p.local = s.src;
            }
            if s.newstate == tcp_state::ESTABLISHED && p.t_established_ns == 0 {
                p.t_established_ns = s.hdr.ts_ns;
            }
            return;
        }
        if s.newstate == tcp_state::ESTABLISHED && s.fd < 0 {
            // A server-side socket finishing its handshake before accept() hands it out.
            if let Some(tuple) = TupleKey::new(s.src.port, &s.dst) {
                if let Some(old) = self.pending_by_tuple.remove(&tuple) {
                    self.pending.remove(&old);
                }
                self.add_pending(
                    s.skaddr,
                    Pending {
                        claim: Claim::Accept(tuple),
                        local: s.src,
                        t_established_ns: s.hdr.ts_ns,
                        retransmits: 0,
                    },
                );
            }
        }
    }

    fn on_retransmit(&mut self, r: &RetransmitEvent) {
        self.stats.retransmits += 1;
        if let Some(key) = self.resolve(r.skaddr, &r.src, &r.dst) {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.msg.retransmits += 1;
                if let Some(x) = conn.open.as_mut() {
                    x.retransmits += 1;
                }
                return;
            }
        }
        // A SYN retransmitted while a blocking connect() waits belongs to the connection it
        // will become.
        match self.pending.get_mut(&r.skaddr) {
            Some(p) => p.retransmits += 1,
            None => self.stats.orphan_retransmits += 1,
        }
    }

    fn on_dns(&mut self, d: &DnsEvent, out: &mut impl FnMut(Output)) {
        self.stats.dns_lookups += 1;
        out(Output::Dns(DnsLookup {
            run_id: self.run_id.clone(),
            pid: d.hdr.pid,
            name: c_str(&d.name),
            t_start_ns: d.ts_start_ns,
            t_end_ns: d.hdr.ts_ns,
            ret: d.ret,
            source: "getaddrinfo".to_owned(),
        }));
    }

    /// The open connection a kernel socket belongs to: linked already, or a server connection
    /// claimed now by its 4-tuple.
    fn resolve(&mut self, skaddr: u64, local: &SockAddr, peer: &SockAddr) -> Option<FdKey> {
        if let Some(key) = self.by_sk.get(&skaddr) {
            return Some(*key);
        }
        if self.by_tuple.is_empty() {
            return None;
        }
        let tuple = TupleKey::new(local.port, peer)?;
        let key = self.by_tuple.remove(&tuple)?;
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.skaddr = skaddr;
            conn.tuple = None;
        }
        self.by_sk.insert(skaddr, key);
        Some(key)
    }

    fn add_pending(&mut self, skaddr: u64, p: Pending) {
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&skaddr) {
            self.stats.pending_dropped += 1;
            return;
        }
        if let Some(old) = self.pending.insert(skaddr, p) {
            // The kernel reused the address of a socket whose TCP_CLOSE was lost.
            self.unindex_pending(skaddr, old.claim);
        }
        match p.claim {
            Claim::Connect(k) => self.pending_by_fd.insert(k, skaddr),
            Claim::Accept(t) => self.pending_by_tuple.insert(t, skaddr),
        };
    }

    fn unindex_pending(&mut self, skaddr: u64, claim: Claim) {
        match claim {
            Claim::Connect(k) => {
                if self.pending_by_fd.get(&k) == Some(&skaddr) {
                    self.pending_by_fd.remove(&k);
                }
            }
            Claim::Accept(t) => {
                if self.pending_by_tuple.get(&t) == Some(&skaddr) {
                    self.pending_by_tuple.remove(&t);
                }
            }
        }
    }

    /// Emits a connection's open exchange (or DNS lookup) and the connection itself, and forgets
    /// it. `t_closed_ns` 0 means it is still open (flush).
    fn finish(&mut self, key: FdKey, t_closed_ns: u64, out: &mut impl FnMut(Output)) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        // Only this connection's own links: a reused socket address may already name another.
        if conn.skaddr != 0 && self.by_sk.get(&conn.skaddr) == Some(&key) {
            self.by_sk.remove(&conn.skaddr);
        }
        if let Some(t) = conn.tuple {
            if self.by_tuple.get(&t) == Some(&key) {
                self.by_tuple.remove(&t);
            }
        }
        if let Some(x) = conn.open.take() {
            self.stats.exchanges += 1;
            out(Output::Exchange(x));
        }
        if let Some(d) = conn.dns {
            if d.t_first_write_ns != 0 || d.t_last_read_ns != 0 {
                self.stats.dns_lookups += 1;
                out(Output::Dns(DnsLookup {
                    run_id: conn.msg.run_id.clone(),
                    pid: conn.msg.pid,
                    name: String::new(),
                    // No query write seen (sent by a call that is not probed): the resolver's
                    // connect(), made just before it sends, starts the lookup.
                    t_start_ns: if d.t_first_write_ns != 0 {
                        d.t_first_write_ns
                    } else {
                        conn.msg.t_connect_start_ns
                    },
                    // 0 when no answer was read.
                    t_end_ns: d.t_last_read_ns,
                    ret: 0,
                    source: "udp53".to_owned(),
                }));
            }
        }
        // The connection ended when TCP did, if before close() (or before the capture
        // stopped with the fd still open).
        conn.msg.t_closed_ns = if conn.tcp_closed_ns != 0 {
            conn.tcp_closed_ns
        } else {
            t_closed_ns
        };
        conn.msg.exchanges = conn.seq;
        self.stats.connections += 1;
        out(Output::Connection(conn.msg));
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        id
    }
}

/// A socket address as an API endpoint; the address is empty when the family is unknown.
fn endpoint(a: &SockAddr) -> Endpoint {
    Endpoint {
        addr: socket_addr(a)
            .map(|s| s.ip().to_canonical().to_string())
            .unwrap_or_default(),
        port: u32::from(a.port),
    }
}

fn side_name(is_client: bool) -> &'static str {
    if is_client {
        "client"
    } else {
        "server"
    }
}

/// Who ended an established connection, from a state change of one side's socket: its own
/// FIN first (FIN_WAIT1), the peer's (CLOSE_WAIT), or a reset (straight to CLOSE).
fn closer(is_client: bool, old: i32, new: i32) -> Option<&'static str> {
    match new {
        tcp_state::FIN_WAIT1 => Some(side_name(is_client)),
        tcp_state::CLOSE_WAIT => Some(side_name(!is_client)),
        tcp_state::CLOSE if old == tcp_state::ESTABLISHED => Some("reset"),
        _ => None,
    }
}

/// Fills in a client's local port (unknown at SYN_SENT) from a later state event.
fn set_local_port(src: &mut Option<Endpoint>, local: &SockAddr) {
    if local.port == 0 {
        return;
    }
    match src {
        Some(e) if e.port != 0 => {}
        _ => *src = Some(endpoint(local)),
    }
}

/// Fills in a server's local address (accept() gives only the port) from a state event.
fn set_local_addr(dst: &mut Option<Endpoint>, local: &SockAddr) {
    if let Some(e) = dst {
        if e.addr.is_empty() {
            if let Some(s) = socket_addr(local) {
                e.addr = s.ip().to_canonical().to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::as_bytes;
    use tbd_common::{kind, DataBatchEvent, DataEvent, EventHeader, COMM_LEN, DNS_NAME_LEN};

    const CLIENT: u32 = 100;
    const SERVER: u32 = 200;
    const ESTABLISHED: i32 = tcp_state::ESTABLISHED;
    const SYN_SENT: i32 = tcp_state::SYN_SENT;
    const SYN_RECV: i32 = tcp_state::SYN_RECV;
    const CLOSE: i32 = tcp_state::CLOSE;

    /// Every event goes through its raw bytes and `Event::decode`, as it does from the ring buffer.
    fn decode<T: Copy>(ev: T) -> Event {
        Event::decode(as_bytes(&ev)).expect("decodable")
    }

    fn hdr(kind: u32, pid: u32, ts_ns: u64) -> EventHeader {
        EventHeader {
            kind,
            pid,
            tid: pid,
            _pad: 0,
            ts_ns,
        }
    }

    fn v4(a: [u8; 4], port: u16) -> SockAddr {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&a);
        SockAddr {
            family: 2,
            port,
            addr,
        }
    }

    fn comm(name: &str) -> [u8; COMM_LEN] {
        let mut c = [0u8; COMM_LEN];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    fn server_addr() -> SockAddr {
        v4([10, 0, 0, 2], 8000)
    }

    fn client_addr() -> SockAddr {
        v4([10, 0, 0, 1], 40000)
    }

    fn connect(fd: i32, t_enter: u64, t_exit: u64, ret: i32, dst: SockAddr) -> Event {
        decode(ConnectEvent {
            hdr: hdr(kind::CONNECT, CLIENT, t_exit),
            ts_enter_ns: t_enter,
            fd,
            ret,
            dst,
            comm: comm("tbctl"),
        })
    }

    fn accept(fd: i32, ts: u64, peer: SockAddr, local_port: u16) -> Event {
        decode(AcceptEvent {
            hdr: hdr(kind::ACCEPT, SERVER, ts),
            listen_fd: 3,
            fd,
            peer,
            local_port,
            _pad: [0; 6],
            comm: comm("vllm"),
        })
    }

    fn peer(pid: u32, fd: i32, ts: u64, peer: SockAddr) -> Event {
        decode(PeerEvent {
            hdr: hdr(kind::PEER, pid, ts),
            fd,
            _pad: 0,
            peer,
        })
    }

    fn data(pid: u32, fd: i32, op: u8, t_enter: u64, t_exit: u64, bytes: u32, p: &[u8]) -> Event {
        let mut prefix = [0u8; PREFIX_LEN];
        let n = p.len().min(PREFIX_LEN).min(bytes as usize);
        prefix[..n].copy_from_slice(&p[..n]);
        decode(DataEvent {
            hdr: hdr(kind::DATA, pid, t_exit),
            ts_enter_ns: t_enter,
            fd,
            bytes,
            op,
            _pad: 0,
            prefix_len: n as u16,
            _pad2: 0,
            prefix,
        })
    }

    fn write(pid: u32, fd: i32, t_enter: u64, t_exit: u64, bytes: u32, p: &[u8]) -> Event {
        data(pid, fd, op::WRITE, t_enter, t_exit, bytes, p)
    }

    fn read(pid: u32, fd: i32, t_enter: u64, t_exit: u64, bytes: u32, p: &[u8]) -> Event {
        data(pid, fd, op::READ, t_enter, t_exit, bytes, p)
    }

    fn close(pid: u32, fd: i32, ts: u64) -> Event {
        decode(CloseEvent {
            hdr: hdr(kind::CLOSE, pid, ts),
            fd,
            _pad: 0,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn state(
        pid: u32,
        ts: u64,
        skaddr: u64,
        old: i32,
        new: i32,
        fd: i32,
        src: SockAddr,
        dst: SockAddr,
    ) -> Event {
        decode(StateEvent {
            hdr: hdr(kind::STATE, pid, ts),
            skaddr,
            oldstate: old,
            newstate: new,
            fd,
            _pad: 0,
            src,
            dst,
        })
    }

    fn retransmit(ts: u64, skaddr: u64, src: SockAddr, dst: SockAddr) -> Event {
        decode(RetransmitEvent {
            hdr: hdr(kind::RETRANSMIT, 0, ts),
            skaddr,
            src,
            dst,
        })
    }

    fn dns(pid: u32, t_start: u64, t_end: u64, ret: i32, name: &str) -> Event {
        let mut n = [0u8; DNS_NAME_LEN];
        n[..name.len()].copy_from_slice(name.as_bytes());
        decode(DnsEvent {
            hdr: hdr(kind::DNS, pid, t_end),
            ts_start_ns: t_start,
            ret,
            _pad: 0,
            name: n,
        })
    }

    fn request(rid: &str) -> Vec<u8> {
        format!("POST /v1/chat/completions HTTP/1.1\r\nx-tb-rid: {rid}\r\nhost: h\r\n\r\n")
            .into_bytes()
    }

    const OK_SSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
    const SSE: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";

    /// Outputs of a sequence, split by kind.
    #[derive(Default, Debug)]
    struct Got {
        exchanges: Vec<Exchange>,
        connections: Vec<Connection>,
        dns: Vec<DnsLookup>,
        order: Vec<&'static str>,
    }

    fn collect(t: &mut ConnTracker, events: &[Event], flush_at: Option<u64>) -> Got {
        let mut got = Got::default();
        let mut sink = |o: Output| match o {
            Output::Exchange(x) => {
                got.order.push("exchange");
                got.exchanges.push(x)
            }
            Output::Connection(c) => {
                got.order.push("connection");
                got.connections.push(c)
            }
            Output::Dns(d) => {
                got.order.push("dns");
                got.dns.push(d)
            }
        };
        for ev in events {
            t.on_event(ev, &mut sink);
        }
        if let Some(now) = flush_at {
            t.flush(now, &mut sink);
        }
        got
    }

    /// The client socket `sk` entering SYN_SENT inside connect() on `fd`.
    fn syn_sent(ts: u64, sk: u64, fd: i32) -> Event {
        state(
            CLIENT,
            ts,
            sk,
            CLOSE,
            SYN_SENT,
            fd,
            client_addr(),
            server_addr(),
        )
    }

    /// A state change of the server socket `sk` (softirq context, no fd): the connection
    /// from `client_addr()` to `server_addr()`.
    fn server_state(ts: u64, sk: u64, old: i32, new: i32) -> Event {
        state(0, ts, sk, old, new, -1, server_addr(), client_addr())
    }

    /// A later state change of the client socket `sk`, seen from `pid` (softirq context).
    fn client_state(pid: u32, ts: u64, sk: u64, old: i32, new: i32) -> Event {
        state(pid, ts, sk, old, new, -1, client_addr(), server_addr())
    }

    /// A batch of held chunks as the kernel sends it: (exit time, bytes), entered 5 ns
    /// before; stamped with the last chunk's time.
    fn batch(pid: u32, fd: i32, write: bool, chunks: &[(u64, u64)]) -> Event {
        let mut b = DataBatchEvent {
            hdr: hdr(kind::DATA_BATCH, pid, chunks.last().map_or(0, |c| c.0)),
            fd,
            n: chunks.len() as u32,
            op: u32::from(if write { op::WRITE } else { op::READ }),
            _pad: 0,
            chunks: [tbd_common::Chunk::default(); tbd_common::BATCH_LEN],
        };
        for (i, &(t, bytes)) in chunks.iter().enumerate() {
            b.chunks[i] = tbd_common::Chunk {
                ts_ns: t,
                ts_enter_ns: t - 5,
                bytes,
            };
        }
        decode(b)
    }

    fn run(events: &[Event]) -> (Got, TrackerStats) {
        let mut t = ConnTracker::new("run-1".to_owned());
        let got = collect(&mut t, events, None);
        (got, t.stats())
    }

    fn chunks(x: &Exchange) -> Vec<(u64, u64)> {
        x.chunks.iter().map(|c| (c.t_ns, c.bytes)).collect()
    }

    /// A client connection with three streamed exchanges (request ids r-0 to r-2), closed.
    fn keep_alive_events() -> Vec<Event> {
        let mut evs = vec![connect(5, 1_000, 1_100, 0, server_addr())];
        for i in 0..3u64 {
            let base = 10_000 * (i + 1);
            let req = request(&format!("r-{i}"));
            evs.push(write(CLIENT, 5, base, base + 10, req.len() as u32, &req));
            evs.push(read(CLIENT, 5, base + 20, base + 100, 60, OK_SSE));
            for k in 1..=3u64 {
                evs.push(read(
                    CLIENT,
                    5,
                    base + 100 * k,
                    base + 100 * k + 50,
                    48,
                    SSE,
                ));
            }
        }
        evs.push(close(CLIENT, 5, 50_000));
        evs
    }

    #[test]
    fn reused_exchanges_carry_nothing_of_what_they_held() {
        let evs = keep_alive_events();
        let (want, _) = run(&evs);
        let mut t = ConnTracker::new("run-1".to_owned());
        // Spares holding every field set, longer strings and more chunks than the new ones.
        let junk = Exchange {
            run_id: "an-older-run-with-a-long-id".into(),
            side: "server-side-junk".into(),
            pid: 99,
            comm: "some-other-comm".into(),
            conn_id: 77,
            conn_new: true,
            request_id: "a-much-longer-request-id".into(),
            method: "OPTIONS".into(),
            path: "/a/longer/path/than/any/here".into(),
            t_request_first_ns: 1,
            t_request_last_ns: 2,
            t_response_first_ns: 3,
            t_response_last_ns: 4,
            chunks: vec![Chunk { t_ns: 5, bytes: 6 }; 40],
            http_status: 503,
            request_bytes: 7,
            response_bytes: 8,
            retransmits: 9,
            seq: 10,
        };
        // A long response's chunk vector is not kept with its spare.
        let long = Exchange {
            chunks: vec![Chunk::default(); 1000],
            ..junk.clone()
        };
        t.recycle([long]);
        assert_eq!(t.spare[0].chunks.capacity(), 0);
        t.recycle(vec![junk; 3]);
        let got = collect(&mut t, &evs, None);
        assert_eq!(got.exchanges, want.exchanges);
        assert_eq!(got.connections, want.connections);
        // What the store hands back is reused the same way.
        t.recycle(got.exchanges);
        let mut again = keep_alive_events();
        for ev in again.iter_mut() {
            if let Event::Connect(c) = ev {
                c.fd = 6;
            } else if let Event::Data(d) = ev {
                d.fd = 6;
            } else if let Event::Close(c) = ev {
                c.fd = 6;
            }
        }
        let got = collect(&mut t, &again, None);
        assert_eq!(got.exchanges.len(), 3);
        for (x, w) in got.exchanges.iter().zip(&want.exchanges) {
            assert_eq!(x.conn_id, 2);
            assert_eq!(
                Exchange {
                    conn_id: w.conn_id,
                    ..x.clone()
                },
                *w
            );
        }
    }

    #[test]
    fn client_keep_alive_three_exchanges_with_sse_chunks() {
        let evs = keep_alive_events();
        let (got, stats) = run(&evs);
        assert_eq!(got.exchanges.len(), 3);
        for (i, x) in got.exchanges.iter().enumerate() {
            let base = 10_000 * (i as u64 + 1);
            assert_eq!(x.run_id, "run-1");
            assert_eq!(x.side, "client");
            assert_eq!(x.pid, CLIENT);
            assert_eq!(x.comm, "tbctl");
            assert_eq!(x.conn_id, 1);
            assert_eq!(x.conn_new, i == 0);
            assert_eq!(x.seq, i as u32);
            assert_eq!(x.request_id, format!("r-{i}"));
            assert_eq!(x.method, "POST");
            assert_eq!(x.path, "/v1/chat/completions");
            assert_eq!(x.t_request_first_ns, base);
            assert_eq!(x.t_request_last_ns, base + 10);
            assert_eq!(x.t_response_first_ns, base + 100);
            assert_eq!(x.t_response_last_ns, base + 350);
            assert_eq!(
                chunks(x),
                vec![
                    (base + 100, 60),
                    (base + 150, 48),
                    (base + 250, 48),
                    (base + 350, 48)
                ]
            );
            assert_eq!(x.http_status, 200);
            assert_eq!(x.request_bytes, request("r-0").len() as u64);
            assert_eq!(x.response_bytes, 60 + 3 * 48);
            assert_eq!(x.retransmits, 0);
        }
        assert_eq!(got.connections.len(), 1);
        let c = &got.connections[0];
        assert_eq!(
            (c.exchanges, c.t_closed_ns, c.side.as_str()),
            (3, 50_000, "client")
        );
        assert_eq!(
            c.dst,
            Some(Endpoint {
                addr: "10.0.0.2".into(),
                port: 8000
            })
        );
        assert_eq!(stats.exchanges, 3);
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.events, evs.len() as u64);
        assert_eq!(stats.unmatched_data, 0);
    }

    #[test]
    fn who_closed_first_from_state_changes_and_close() {
        const FIN_WAIT1: i32 = tcp_state::FIN_WAIT1;
        const CLOSE_WAIT: i32 = tcp_state::CLOSE_WAIT;
        let req = request("c");
        // Each side's socket, linked: the client's by SYN_SENT, the server's by its 4-tuple.
        let client = |tail: &[Event]| {
            let mut evs = vec![
                syn_sent(1_000, 0xa0, 5),
                connect(5, 1_000, 1_100, 0, server_addr()),
                client_state(0, 1_200, 0xa0, SYN_SENT, ESTABLISHED),
                write(CLIENT, 5, 2_000, 2_010, req.len() as u32, &req),
                read(CLIENT, 5, 2_100, 2_200, 60, OK_SSE),
            ];
            evs.extend_from_slice(tail);
            run(&evs).0.connections[0].closed_by.clone()
        };
        // The server's FIN arrives while the client is idle (llama-server after a stream).
        let by_server = client(&[
            client_state(0, 3_000, 0xa0, ESTABLISHED, CLOSE_WAIT),
            close(CLIENT, 5, 3_100),
        ]);
        assert_eq!(by_server, "server");
        // The client closes an established connection: its own FIN_WAIT1 comes after close().
        let by_client = client(&[
            close(CLIENT, 5, 3_000),
            client_state(CLIENT, 3_001, 0xa0, ESTABLISHED, FIN_WAIT1),
        ]);
        assert_eq!(by_client, "client");
        // shutdown(SHUT_WR) first: FIN_WAIT1 while the fd is open.
        let shut = client(&[
            client_state(CLIENT, 3_000, 0xa0, ESTABLISHED, FIN_WAIT1),
            client_state(0, 3_050, 0xa0, FIN_WAIT1, 5),
            close(CLIENT, 5, 3_100),
        ]);
        assert_eq!(shut, "client");
        let reset = client(&[
            client_state(0, 3_000, 0xa0, ESTABLISHED, CLOSE),
            close(CLIENT, 5, 3_100),
        ]);
        assert_eq!(reset, "reset");
        // Open at capture stop: nobody closed it.
        let mut t = ConnTracker::new("run-1".into());
        let evs = [
            syn_sent(1_000, 0xa0, 5),
            connect(5, 1_000, 1_100, 0, server_addr()),
            client_state(0, 1_200, 0xa0, SYN_SENT, ESTABLISHED),
        ];
        let got = collect(&mut t, &evs, Some(9_000));
        assert_eq!(got.connections[0].closed_by, "");
        // A socket never seen established (unlinked) gets no guess at close().
        let (got, _) = run(&[
            connect(5, 1_000, 1_100, 0, server_addr()),
            close(CLIENT, 5, 3_000),
        ]);
        assert_eq!(got.connections[0].closed_by, "");
        // Server side: the client's FIN (CLOSE_WAIT on the server's socket), then close().
        let evs = [
            server_state(900, 0xb0, SYN_RECV, ESTABLISHED),
            accept(7, 1_000, client_addr(), 8000),
            server_state(2_000, 0xb0, ESTABLISHED, CLOSE_WAIT),
            close(SERVER, 7, 2_100),
        ];
        assert_eq!(run(&evs).0.connections[0].closed_by, "client");
        let evs = [
            server_state(900, 0xb0, SYN_RECV, ESTABLISHED),
            accept(7, 1_000, client_addr(), 8000),
            close(SERVER, 7, 2_100),
        ];
        assert_eq!(run(&evs).0.connections[0].closed_by, "server");
    }

    #[test]
    fn handshake_time_from_syn_sent_and_established() {
        // Non-blocking: SYN_SENT inside connect(), connect returns EINPROGRESS, then ESTABLISHED.
        // The local port is still 0 at SYN_SENT; ESTABLISHED carries it.
        let syn_src = v4([10, 0, 0, 1], 0);
        let evs = [
            state(
                CLIENT,
                1_050,
                0xa0,
                CLOSE,
                SYN_SENT,
                5,
                syn_src,
                server_addr(),
            ),
            connect(5, 1_000, 1_100, EINPROGRESS, server_addr()),
            client_state(9, 1_900, 0xa0, SYN_SENT, ESTABLISHED),
            close(CLIENT, 5, 5_000),
        ];
        let (got, _) = run(&evs);
        let c = &got.connections[0];
        assert_eq!(c.t_connect_start_ns, 1_000);
        assert_eq!(c.t_established_ns, 1_900);
        assert_eq!(c.t_established_ns - c.t_connect_start_ns, 900);
        assert_eq!(c.connect_ret, EINPROGRESS);
        assert_eq!(
            c.src,
            Some(Endpoint {
                addr: "10.0.0.1".into(),
                port: 40000
            })
        );

        // Blocking: both state changes happen before connect() returns.
        let evs = [
            state(
                CLIENT,
                1_050,
                0xa1,
                CLOSE,
                SYN_SENT,
                6,
                syn_src,
                server_addr(),
            ),
            client_state(9, 1_700, 0xa1, SYN_SENT, ESTABLISHED),
            connect(6, 1_000, 1_750, 0, server_addr()),
        ];
        let mut t = ConnTracker::new("r".into());
        let got = collect(&mut t, &evs, Some(9_000));
        let c = &got.connections[0];
        assert_eq!(c.t_established_ns - c.t_connect_start_ns, 700);
        assert_eq!(c.src.as_ref().unwrap().port, 40000);
        assert_eq!(c.t_closed_ns, 0);
    }

    #[test]
    fn server_side_request_read_and_five_response_writes() {
        let req = request("r-9");
        let mut evs = vec![
            // The child socket is established before accept() returns it.
            server_state(500, 0xb0, SYN_RECV, ESTABLISHED),
            accept(7, 1_000, client_addr(), 8000),
            read(SERVER, 7, 1_100, 2_000, req.len() as u32, &req),
            write(SERVER, 7, 3_000, 3_010, 60, OK_SSE),
        ];
        // The continuation writes come as the kernel sends them: held and batched.
        let held: Vec<(u64, u64)> = (1..=4u64).map(|k| (3_005 + 1_000 * k, 48)).collect();
        evs.push(batch(SERVER, 7, true, &held));
        // The same chunks again, as when tbd reads a socket's batch out of the kernel at stop
        // while the probe was sending it: taken once.
        evs.push(batch(SERVER, 7, true, &held));
        evs.push(close(SERVER, 7, 9_000));
        let (got, stats) = run(&evs);
        assert_eq!(stats.duplicate_chunks, 4);
        assert_eq!(got.exchanges.len(), 1);
        let x = &got.exchanges[0];
        assert_eq!(
            (x.side.as_str(), x.pid, x.comm.as_str()),
            ("server", SERVER, "vllm")
        );
        assert_eq!(x.request_id, "r-9");
        assert_eq!(x.t_request_first_ns, 2_000);
        assert_eq!(x.t_request_last_ns, 2_000);
        assert_eq!(x.t_response_first_ns, 3_000);
        assert_eq!(x.t_response_last_ns, 7_000);
        assert_eq!(
            chunks(x),
            vec![
                (3_000, 60),
                (4_000, 48),
                (5_000, 48),
                (6_000, 48),
                (7_000, 48)
            ]
        );
        assert_eq!(x.http_status, 200);
        assert!(x.conn_new);
        let c = &got.connections[0];
        assert_eq!(c.side, "server");
        assert_eq!(c.t_connect_start_ns, 1_000);
        assert_eq!(c.t_established_ns, 500);
        assert_eq!(
            c.src,
            Some(Endpoint {
                addr: "10.0.0.1".into(),
                port: 40000
            })
        );
        assert_eq!(
            c.dst,
            Some(Endpoint {
                addr: "10.0.0.2".into(),
                port: 8000
            })
        );
    }

    #[test]
    fn request_split_over_two_writes() {
        let head = b"POST /api/chat HTTP/1.1\r\nX-TB-RID: split-1\r\ncontent-length: 900\r\n\r\n";
        let evs = [
            connect(5, 100, 200, 0, server_addr()),
            write(CLIENT, 5, 1_000, 1_010, head.len() as u32, head),
            write(
                CLIENT,
                5,
                1_020,
                1_080,
                900,
                b"{\"model\":\"llama3\",\"messages\":[{",
            ),
            read(CLIENT, 5, 1_100, 2_000, 200, b"HTTP/1.1 200 OK\r\n\r\n{}"),
            close(CLIENT, 5, 3_000),
        ];
        let (got, _) = run(&evs);
        assert_eq!(got.exchanges.len(), 1);
        let x = &got.exchanges[0];
        assert_eq!((x.method.as_str(), x.path.as_str()), ("POST", "/api/chat"));
        assert_eq!(x.request_id, "split-1");
        assert_eq!(x.t_request_first_ns, 1_000);
        assert_eq!(x.t_request_last_ns, 1_080);
        assert_eq!(x.request_bytes, head.len() as u64 + 900);
        assert_eq!(x.response_bytes, 200);
    }

    #[test]
    fn response_split_across_many_reads() {
        let req = request("big");
        let mut evs = vec![
            connect(5, 100, 200, 0, server_addr()),
            write(CLIENT, 5, 1_000, 1_010, req.len() as u32, &req),
            read(
                CLIENT,
                5,
                1_020,
                2_000,
                4096,
                b"HTTP/1.1 201 Created\r\ncontent-length: 40000\r\n\r\n{\"a\":",
            ),
        ];
        for k in 1..10u64 {
            evs.push(read(
                CLIENT,
                5,
                2_000 + k * 10,
                2_005 + k * 10,
                4096,
                b"aaaaaaaaaaaaaaaa",
            ));
        }
        let mut t = ConnTracker::new("r".into());
        let got = collect(&mut t, &evs, Some(10_000));
        let x = &got.exchanges[0];
        assert_eq!(x.http_status, 201);
        assert_eq!(x.chunks.len(), 10);
        assert_eq!(x.t_response_first_ns, 2_000);
        assert_eq!(x.t_response_last_ns, 2_095);
        assert_eq!(x.response_bytes, 10 * 4096);
        assert!(x.chunks.windows(2).all(|w| w[0].t_ns < w[1].t_ns));
    }

    #[test]
    fn close_emits_last_exchange_then_connection() {
        let req = request("last");
        let evs = [
            connect(5, 100, 200, 0, server_addr()),
            write(CLIENT, 5, 1_000, 1_010, req.len() as u32, &req),
            read(CLIENT, 5, 1_020, 2_000, 60, OK_SSE),
        ];
        let mut t = ConnTracker::new("r".into());
        let before = collect(&mut t, &evs, None);
        assert!(before.exchanges.is_empty() && before.connections.is_empty());
        assert_eq!(t.open_connections(), 1);
        let after = collect(&mut t, &[close(CLIENT, 5, 3_000)], None);
        assert_eq!(after.order, vec!["exchange", "connection"]);
        assert_eq!(after.exchanges[0].request_id, "last");
        assert_eq!(after.connections[0].t_closed_ns, 3_000);
        assert_eq!(after.connections[0].exchanges, 1);
        assert_eq!(t.open_connections(), 0);
        // A second close of the same fd, or data after it, finds nothing.
        let late = collect(
            &mut t,
            &[
                close(CLIENT, 5, 3_100),
                read(CLIENT, 5, 3_200, 3_300, 10, SSE),
            ],
            None,
        );
        assert!(late.order.is_empty());
        assert_eq!(t.stats().orphan_data, 1);
    }

    #[test]
    fn failed_connect() {
        let evs = [
            syn_sent(1_050, 0xc0, 5),
            client_state(9, 1_400, 0xc0, SYN_SENT, CLOSE),
            connect(5, 1_000, 1_500, -111, server_addr()),
            write(CLIENT, 5, 1_600, 1_610, 10, b"GET / HTTP/1.1\r\n"),
        ];
        let (got, stats) = run(&evs);
        assert!(got.exchanges.is_empty());
        assert_eq!(got.connections.len(), 1);
        let c = &got.connections[0];
        assert_eq!(c.connect_ret, -111);
        assert_eq!(c.exchanges, 0);
        assert_eq!(c.t_established_ns, 0);
        assert_eq!(c.t_closed_ns, 1_500);
        assert_eq!(stats.failed_connects, 1);
        assert_eq!(stats.orphan_data, 1);
    }

    #[test]
    fn non_blocking_connect_refused_closes_on_tcp_close() {
        let evs = [
            syn_sent(1_050, 0xc1, 5),
            connect(5, 1_000, 1_100, EINPROGRESS, server_addr()),
            client_state(9, 1_400, 0xc1, SYN_SENT, CLOSE),
            // The application's own close() of the fd ends the record; it closed when TCP did.
            close(CLIENT, 5, 1_500),
        ];
        let (got, stats) = run(&evs);
        assert_eq!(got.connections.len(), 1);
        let c = &got.connections[0];
        assert_eq!(
            (c.connect_ret, c.t_established_ns, c.t_closed_ns),
            (EINPROGRESS, 0, 1_400)
        );
        assert_eq!(stats.connections, 1);
    }

    #[test]
    fn eisconn_recheck_is_not_a_new_connection() {
        let evs = [
            connect(5, 1_000, 1_100, EINPROGRESS, server_addr()),
            connect(5, 1_200, 1_210, -106, server_addr()),
            close(CLIENT, 5, 2_000),
        ];
        let (got, stats) = run(&evs);
        assert_eq!(got.connections.len(), 1);
        assert_eq!(got.connections[0].connect_ret, EINPROGRESS);
        assert_eq!(stats.failed_connects, 0);
    }

    #[test]
    fn orphan_data_counted_and_ignored() {
        let req = request("x");
        let evs = [
            write(CLIENT, 9, 1_000, 1_010, req.len() as u32, &req),
            read(CLIENT, 9, 1_020, 2_000, 60, OK_SSE),
            // Tracked connection, but bytes before any request line are not an exchange.
            connect(5, 100, 200, 0, server_addr()),
            read(CLIENT, 5, 2_100, 2_200, 60, OK_SSE),
        ];
        let mut t = ConnTracker::new("r".into());
        let got = collect(&mut t, &evs, Some(5_000));
        assert!(got.exchanges.is_empty());
        assert_eq!(got.connections.len(), 1);
        assert_eq!(t.stats().orphan_data, 2);
        assert_eq!(t.stats().unmatched_data, 1);
    }

    #[test]
    fn dns_lookup_from_getaddrinfo() {
        let (got, stats) = run(&[dns(CLIENT, 1_000, 4_000, 0, "llm.example.com")]);
        assert_eq!(
            got.dns,
            vec![DnsLookup {
                run_id: "run-1".into(),
                pid: CLIENT,
                name: "llm.example.com".into(),
                t_start_ns: 1_000,
                t_end_ns: 4_000,
                ret: 0,
                source: "getaddrinfo".into(),
            }]
        );
        assert_eq!(stats.dns_lookups, 1);
    }

    #[test]
    fn udp53_socket_is_a_dns_lookup_not_an_exchange() {
        let resolver = v4([127, 0, 0, 53], 53);
        let evs = [
            connect(4, 1_000, 1_010, 0, resolver),
            write(CLIENT, 4, 1_100, 1_120, 40, b"\x12\x34\x01\x00\x00\x01"),
            write(CLIENT, 4, 1_130, 1_140, 40, b"\x12\x35\x01\x00\x00\x01"),
            read(CLIENT, 4, 1_150, 3_000, 80, b"\x12\x34\x81\x80"),
            read(CLIENT, 4, 3_010, 3_500, 96, b"\x12\x35\x81\x80"),
            close(CLIENT, 4, 3_600),
        ];
        let (got, _) = run(&evs);
        assert!(got.exchanges.is_empty());
        assert_eq!(got.order, vec!["dns", "connection"]);
        let d = &got.dns[0];
        assert_eq!((d.source.as_str(), d.name.as_str()), ("udp53", ""));
        assert_eq!((d.t_start_ns, d.t_end_ns, d.pid), (1_100, 3_500, CLIENT));
        let c = &got.connections[0];
        assert!(c.is_dns);
        assert_eq!(c.exchanges, 0);

        // Queries sent with sendmmsg (not probed): the lookup starts at the resolver's connect().
        let evs = [
            connect(4, 1_000, 1_010, 0, resolver),
            read(CLIENT, 4, 1_150, 3_000, 80, b"\x12\x34\x81\x80"),
            close(CLIENT, 4, 3_600),
        ];
        let (got, _) = run(&evs);
        assert_eq!((got.dns[0].t_start_ns, got.dns[0].t_end_ns), (1_000, 3_000));
    }

    #[test]
    fn retransmit_counted_on_the_right_exchange() {
        let sk = 0xd0;
        let mut evs = vec![
            syn_sent(150, sk, 5),
            // A SYN retransmitted while connect() blocks.
            retransmit(170, sk, client_addr(), server_addr()),
            client_state(9, 190, sk, SYN_SENT, ESTABLISHED),
            connect(5, 100, 200, 0, server_addr()),
        ];
        for i in 0..3u64 {
            let base = 10_000 * (i + 1);
            let req = request(&format!("r-{i}"));
            evs.push(write(CLIENT, 5, base, base + 10, req.len() as u32, &req));
            if i == 1 {
                evs.push(retransmit(base + 15, sk, client_addr(), server_addr()));
                evs.push(retransmit(base + 16, sk, client_addr(), server_addr()));
            }
            evs.push(read(CLIENT, 5, base + 20, base + 100, 60, OK_SSE));
        }
        evs.push(retransmit(40_000, 0xdead, client_addr(), server_addr()));
        evs.push(close(CLIENT, 5, 50_000));
        let (got, stats) = run(&evs);
        let per_exchange: Vec<u32> = got.exchanges.iter().map(|x| x.retransmits).collect();
        assert_eq!(per_exchange, vec![0, 2, 0]);
        assert_eq!(got.connections[0].retransmits, 3);
        assert_eq!(stats.retransmits, 4);
        assert_eq!(stats.orphan_retransmits, 1);
    }

    #[test]
    fn tcp_close_before_close_call_keeps_held_chunks_and_a_late_write() {
        // As seen with llama-server: the client's TCP connection reaches CLOSE (after its
        // shutdown() is answered, or a write into a reset connection) while the fd is still
        // open. The reads held in the kernel's batch arrive after that state event, at
        // close(); so does a write that returned after it. None of it is orphaned.
        let sk = 0xc5;
        let req = request("late");
        let mut evs = vec![
            syn_sent(900, sk, 5),
            connect(5, 800, 1_000, 0, server_addr()),
            client_state(CLIENT, 950, sk, SYN_SENT, ESTABLISHED),
            write(CLIENT, 5, 1_100, 1_110, req.len() as u32, &req),
            read(CLIENT, 5, 2_000, 2_010, 60, OK_SSE),
            state(0, 5_000, sk, 9, CLOSE, -1, client_addr(), server_addr()),
        ];
        evs.push(batch(
            CLIENT,
            5,
            false,
            &[(3_000, 10), (4_000, 20), (4_500, 30)],
        ));
        evs.push(close(CLIENT, 5, 6_000));
        let (got, stats) = run(&evs);
        assert_eq!(stats.orphan_data, 0);
        let x = &got.exchanges[0];
        assert_eq!(x.response_bytes, 60 + 10 + 20 + 30);
        assert_eq!(x.t_response_last_ns, 4_500);
        assert_eq!(got.connections[0].t_closed_ns, 5_000);
        // The socket's address is free: a new socket there is not taken for this one.
        assert_eq!(stats.connections, 1);
    }

    #[test]
    fn server_linked_by_tuple_after_accept() {
        // No state event before accept (e.g. the port was not yet tracked): the first event
        // naming the socket's 4-tuple, here a retransmit, links it; then its later retransmits
        // and its TCP_CLOSE count.
        let local = v4([10, 0, 0, 2], 8000);
        let req = request("s");
        let evs = [
            accept(7, 1_000, client_addr(), 8000),
            read(SERVER, 7, 1_100, 2_000, req.len() as u32, &req),
            retransmit(2_500, 0xe0, local, client_addr()),
            write(SERVER, 7, 3_000, 3_010, 60, OK_SSE),
            server_state(4_000, 0xe0, ESTABLISHED, 8),
            retransmit(4_500, 0xe0, local, client_addr()),
            server_state(5_000, 0xe0, 9, CLOSE),
            // The fd's close() ends the connection record; it closed when TCP did.
            close(SERVER, 7, 5_100),
        ];
        let (got, stats) = run(&evs);
        assert_eq!(stats.orphan_retransmits, 0);
        assert_eq!(got.exchanges[0].retransmits, 2);
        let c = &got.connections[0];
        assert_eq!((c.retransmits, c.t_closed_ns), (2, 5_000));
        // A socket of another peer is not claimed.
        let evs = [
            accept(7, 1_000, client_addr(), 8000),
            retransmit(2_500, 0xe1, local, v4([10, 0, 0, 9], 40000)),
            close(SERVER, 7, 3_000),
        ];
        let (got, stats) = run(&evs);
        assert_eq!(stats.orphan_retransmits, 1);
        assert_eq!(got.connections[0].retransmits, 0);
        assert_eq!(c.dst.as_ref().unwrap().addr, "10.0.0.2");
    }

    #[test]
    fn server_accepted_without_address_is_linked_by_getpeername() {
        // llama-server (cpp-httplib): accept4(fd, NULL, NULL) after the handshake finished,
        // then getpeername() on a worker thread.
        let local = v4([127, 0, 0, 1], 8000);
        let unknown = SockAddr {
            family: 0,
            port: 0,
            addr: [0; 16],
        };
        let req = request("p");
        let evs = [
            state(
                0,
                900,
                0xf0,
                SYN_RECV,
                ESTABLISHED,
                -1,
                local,
                client_addr(),
            ),
            accept(7, 1_000, unknown, 8000),
            peer(SERVER, 7, 1_050, client_addr()),
            // A second call on the same socket changes nothing.
            peer(SERVER, 7, 1_060, client_addr()),
            read(SERVER, 7, 1_100, 2_000, req.len() as u32, &req),
            retransmit(2_500, 0xf0, local, client_addr()),
            write(SERVER, 7, 3_000, 3_010, 60, OK_SSE),
            state(0, 5_000, 0xf0, 9, CLOSE, -1, local, client_addr()),
            close(SERVER, 7, 5_100),
        ];
        let (got, stats) = run(&evs);
        assert_eq!(stats.orphan_retransmits, 0);
        let c = &got.connections[0];
        let src = c.src.as_ref().unwrap();
        assert_eq!((src.addr.as_str(), src.port), ("10.0.0.1", 40000));
        let dst = c.dst.as_ref().unwrap();
        assert_eq!((dst.addr.as_str(), dst.port), ("127.0.0.1", 8000));
        assert_eq!(
            (c.t_established_ns, c.retransmits, c.t_closed_ns),
            (900, 1, 5_000)
        );
        assert_eq!(got.exchanges[0].retransmits, 1);
        // Without the getpeername event the socket stays unlinked: no peer, handshake time or
        // retransmit on the connection.
        let (got, _) = run(&[evs[0], evs[1], evs[4], evs[5], evs[8]]);
        let c = &got.connections[0];
        assert_eq!(c.src.as_ref().unwrap().port, 0);
        assert_eq!((c.t_established_ns, c.retransmits), (0, 0));
        // A client socket's getpeername is not a server peer.
        let evs = [
            connect(5, 100, 200, 0, server_addr()),
            peer(CLIENT, 5, 300, v4([10, 9, 9, 9], 1)),
            close(CLIENT, 5, 400),
        ];
        let (got, _) = run(&evs);
        assert_eq!(got.connections[0].dst.as_ref().unwrap().addr, "10.0.0.2");
    }

    #[test]
    fn server_keep_alive_split_request_and_pipelined_next() {
        let head = b"POST /v1/completions HTTP/1.1\r\nx-tb-rid: a\r\n";
        let evs = [
            accept(7, 1_000, client_addr(), 8000),
            read(SERVER, 7, 1_100, 1_200, head.len() as u32, head),
            read(
                SERVER,
                7,
                1_300,
                1_400,
                500,
                b"content-length: 400\r\n\r\n{",
            ),
            write(SERVER, 7, 2_000, 2_050, 100, b"HTTP/1.1 200 OK\r\n\r\n{}"),
            read(SERVER, 7, 3_000, 3_100, 40, b"GET /health HTTP/1.1\r\n\r\n"),
            write(
                SERVER,
                7,
                3_200,
                3_250,
                30,
                b"HTTP/1.1 503 Service Unavailable\r\n",
            ),
        ];
        let mut t = ConnTracker::new("r".into());
        let got = collect(&mut t, &evs, Some(9_000));
        assert_eq!(got.exchanges.len(), 2);
        let (a, b) = (&got.exchanges[0], &got.exchanges[1]);
        assert_eq!((a.t_request_first_ns, a.t_request_last_ns), (1_200, 1_400));
        assert_eq!(a.request_bytes, head.len() as u64 + 500);
        assert_eq!((a.http_status, b.http_status), (200, 503));
        assert_eq!((a.seq, b.seq, a.conn_new, b.conn_new), (0, 1, true, false));
        assert_eq!(
            (b.method.as_str(), b.path.as_str(), b.request_id.as_str()),
            ("GET", "/health", "")
        );
        assert_eq!(got.connections[0].exchanges, 2);
    }

    #[test]
    fn interim_100_continue_then_final_status() {
        let evs = [
            connect(5, 100, 200, 0, server_addr()),
            write(
                CLIENT,
                5,
                1_000,
                1_010,
                80,
                b"POST /up HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            ),
            read(
                CLIENT,
                5,
                1_020,
                1_100,
                25,
                b"HTTP/1.1 100 Continue\r\n\r\n",
            ),
            write(CLIENT, 5, 1_200, 1_300, 5_000, b"{\"prompt\":"),
            read(CLIENT, 5, 1_400, 2_000, 40, b"HTTP/1.1 200 OK\r\n\r\n"),
        ];
        let mut t = ConnTracker::new("r".into());
        let got = collect(&mut t, &evs, Some(3_000));
        let x = &got.exchanges[0];
        assert_eq!(x.http_status, 200);
        assert_eq!(x.t_response_first_ns, 1_100);
        assert_eq!(x.t_request_last_ns, 1_300);
        assert_eq!(x.request_bytes, 5_080);
    }

    #[test]
    fn fd_reused_without_close_finishes_the_old_connection() {
        let evs = [
            connect(5, 100, 200, 0, server_addr()),
            connect(5, 1_000, 1_100, 0, server_addr()),
            close(CLIENT, 5, 2_000),
        ];
        let (got, stats) = run(&evs);
        let ids: Vec<(u64, u64)> = got
            .connections
            .iter()
            .map(|c| (c.conn_id, c.t_closed_ns))
            .collect();
        assert_eq!(ids, vec![(1, 1_100), (2, 2_000)]);
        assert_eq!(stats.missed_closes, 1);
    }

    #[test]
    fn socket_address_reused_after_a_lost_tcp_close() {
        let sk = 0xf0;
        let evs = [
            syn_sent(150, sk, 5),
            connect(5, 100, 200, 0, server_addr()),
            // Socket 5's TCP_CLOSE was lost; the kernel hands its address to fd 6's socket.
            syn_sent(1_050, sk, 6),
            client_state(9, 1_060, sk, SYN_SENT, ESTABLISHED),
            connect(6, 1_000, 1_100, 0, server_addr()),
            close(CLIENT, 5, 2_000),
            retransmit(2_500, sk, client_addr(), server_addr()),
            close(CLIENT, 6, 3_000),
        ];
        let (got, stats) = run(&evs);
        let conns: Vec<(u64, u64, u32)> = got
            .connections
            .iter()
            .map(|c| (c.conn_id, c.t_established_ns, c.retransmits))
            .collect();
        assert_eq!(conns, vec![(1, 0, 0), (2, 1_060, 1)]);
        assert_eq!(stats.orphan_retransmits, 0);
    }

    #[test]
    fn flush_emits_open_ones() {
        let req = request("open");
        let evs = [
            connect(5, 100, 200, 0, server_addr()),
            write(CLIENT, 5, 1_000, 1_010, req.len() as u32, &req),
            read(CLIENT, 5, 1_020, 2_000, 60, OK_SSE),
            read(CLIENT, 5, 2_100, 2_200, 48, SSE),
            accept(7, 1_000, client_addr(), 8000),
            connect(6, 300, 400, 0, server_addr()),
        ];
        let mut t = ConnTracker::new("run-9".into());
        let got = collect(&mut t, &evs, Some(10_000));
        assert_eq!(got.exchanges.len(), 1);
        assert_eq!(got.exchanges[0].t_response_last_ns, 2_200);
        assert_eq!(got.exchanges[0].run_id, "run-9");
        let conns: Vec<(u64, u64, &str)> = got
            .connections
            .iter()
            .map(|c| (c.conn_id, c.t_closed_ns, c.run_id.as_str()))
            .collect();
        assert_eq!(
            conns,
            vec![(1, 0, "run-9"), (2, 0, "run-9"), (3, 0, "run-9")]
        );
        assert_eq!(t.open_connections(), 0);
        // Nothing is emitted twice.
        let again = collect(&mut t, &[], Some(11_000));
        assert!(again.order.is_empty());
    }
}
