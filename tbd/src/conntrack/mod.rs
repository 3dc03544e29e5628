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
    op, tcp_state, AcceptEvent, ArrivalEvent, CloseEvent, ConnectEvent, DnsEvent, PeerEvent,
    RetransmitEvent, SockAddr, StateEvent, PREFIX_LEN,
};

use crate::events::{batch_chunks, c_str, socket_addr, Event};
use crate::http_prefix::{request_line, status_line, RequestHead};

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
    /// A completed (or, at flush, still open) HTTP exchange. Boxed: it travels from the
    /// tracker to the store and back as a spare, and moving 500 bytes at each step was a
    /// measurable share of tbd's CPU (perf).
    Exchange(Box<Exchange>),
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
    /// Segment arrivals on a kernel socket tied to no connection.
    pub orphan_arrivals: u64,
    /// Arrivals dropped unread from a connection's queue past [`MAX_ARRIVED`].
    pub dropped_arrivals: u64,
    /// Read bytes with no arrival queued for them (arrived before the capture, or lost).
    pub unarrived_bytes: u64,
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
    open: Option<Box<Exchange>>,
    /// Exchanges started on this connection.
    seq: u32,
    dns: Option<DnsState>,
    /// Exit time of the last data syscall taken, so that a chunk seen twice (a batch read out
    /// of the kernel at stop while the probe was sending it) is taken once.
    last_data_ns: u64,
    /// When its TCP connection reached CLOSE with the fd still open, 0 before.
    tcp_closed_ns: u64,
    /// Bytes that reached the socket and are not yet read, in stream order.
    arrived: arrived::Arrived,
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
    #[allow(clippy::vec_box)] // the boxes travel whole, see `Output::Exchange`
    spare: Vec<Box<Exchange>>,
}

/// Most unread segment arrivals kept per connection.
const MAX_ARRIVED: usize = 4096;

/// Most exchanges kept for reuse: several drains' worth at 17,000 exchanges a second.
const MAX_SPARE: usize = 1024;
/// Largest list (chunks, arrivals, their packed forms) kept with a spare exchange, so that the
/// spares of long responses do not hold megabytes.
const SPARE_CHUNKS: usize = 64;

/// Drops a spare's list whose allocation is past [`SPARE_CHUNKS`] entries.
fn bound<T>(v: &mut Vec<T>) {
    if v.capacity() > SPARE_CHUNKS {
        *v = Vec::new();
    }
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
    pub fn recycle(&mut self, done: impl IntoIterator<Item = Box<Exchange>>) {
        let room = MAX_SPARE.saturating_sub(self.spare.len());
        self.spare.extend(done.into_iter().take(room).map(|mut x| {
            bound(&mut x.chunks);
            bound(&mut x.arrivals);
            bound(&mut x.packed_chunk_gaps_ns);
            bound(&mut x.packed_chunk_bytes);
            bound(&mut x.packed_arrival_gaps_ns);
            bound(&mut x.packed_arrival_bytes);
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
            Event::Arrival(a) => self.on_arrival(a),
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

mod arrived;
mod dns;
mod exchange;
mod link;
#[cfg(test)]
mod tests;
