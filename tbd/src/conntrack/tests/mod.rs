//! The tracker driven by raw events, as they come out of the ring buffer.

use super::*;
use crate::events::as_bytes;
use tbd_common::{kind, DataBatchEvent, DataEvent, EventHeader, COMM_LEN, DNS_NAME_LEN};

mod arrival;
mod dns;
mod exchange;
mod link;

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
    format!("POST /v1/chat/completions HTTP/1.1\r\nx-tb-rid: {rid}\r\nhost: h\r\n\r\n").into_bytes()
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
            got.exchanges.push(*x)
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

fn arrival(ts: u64, skaddr: u64, seq: u32, bytes: u32) -> Event {
    decode(tbd_common::ArrivalEvent {
        hdr: hdr(kind::ARRIVAL, 0, ts),
        skaddr,
        bytes,
        seq,
        rcv_nxt: seq,
        _pad: 0,
    })
}

fn arrived(x: &Exchange) -> Vec<(u64, u64)> {
    x.arrivals.iter().map(|c| (c.t_ns, c.bytes)).collect()
}
