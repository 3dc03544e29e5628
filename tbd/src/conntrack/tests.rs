//! The tracker driven by raw events, as they come out of the ring buffer.

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
        packed_chunk_gaps_ns: vec![11; 40],
        packed_chunk_bytes: vec![12; 40],
        arrivals: vec![
            Chunk {
                t_ns: 13,
                bytes: 14
            };
            40
        ],
        packed_arrival_gaps_ns: vec![15; 40],
        packed_arrival_bytes: vec![16; 40],
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
    // They came from the spares: every list kept its allocation (a streamed response would
    // otherwise regrow each from empty), the chunks room for a batch at least.
    for x in &got.exchanges {
        assert!(x.chunks.capacity() >= tbd_common::BATCH_LEN.max(40));
        for cap in [
            x.arrivals.capacity(),
            x.packed_chunk_gaps_ns.capacity(),
            x.packed_chunk_bytes.capacity(),
            x.packed_arrival_gaps_ns.capacity(),
            x.packed_arrival_bytes.capacity(),
        ] {
            assert!(cap >= 40, "{cap}");
        }
    }
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

/// `events` on client fd 5: connected to the server first, closed last.
fn on_client_conn(events: &[Event]) -> Vec<Event> {
    let mut evs = vec![connect(5, 1_000, 1_100, 0, server_addr())];
    evs.extend_from_slice(events);
    evs.push(close(CLIENT, 5, 4_000));
    evs
}

#[test]
fn a_request_written_in_parts_counts_every_part() {
    // Head, then body in a second write (as after `Expect: 100-continue`), then the answer.
    let req = request("r-0");
    let evs = on_client_conn(&[
        write(CLIENT, 5, 2_000, 2_010, req.len() as u32, &req),
        write(CLIENT, 5, 2_500, 2_520, 700, b"{\"model\":\"m\"}"),
        read(CLIENT, 5, 3_000, 3_100, 60, OK_SSE),
    ]);
    let (got, _) = run(&evs);
    assert_eq!(got.exchanges.len(), 1);
    let x = &got.exchanges[0];
    assert_eq!(x.request_bytes, req.len() as u64 + 700);
    assert_eq!((x.t_request_first_ns, x.t_request_last_ns), (2_000, 2_520));
}

#[test]
fn bytes_sent_before_any_request_are_counted_unmatched() {
    // A client that writes something other than an HTTP request first (a TLS hello, a
    // protocol tbd does not parse): no exchange, counted once.
    let evs = on_client_conn(&[write(CLIENT, 5, 2_000, 2_010, 5, b"\x16\x03\x01\x02\x00")]);
    let (got, stats) = run(&evs);
    assert!(got.exchanges.is_empty());
    assert_eq!(stats.unmatched_data, 1);
}

#[test]
fn a_final_status_is_not_taken_back_by_a_body_that_looks_like_one() {
    // A read of the body that starts with what reads as a status line (a proxied page, a
    // model quoting HTTP) after the 200 was read.
    let req = request("r-0");
    let evs = on_client_conn(&[
        write(CLIENT, 5, 2_000, 2_010, req.len() as u32, &req),
        read(CLIENT, 5, 3_000, 3_100, 60, OK_SSE),
        read(CLIENT, 5, 3_200, 3_300, 40, b"HTTP/1.1 404 Not Found\r\n"),
    ]);
    let (got, _) = run(&evs);
    assert_eq!(got.exchanges[0].http_status, 200);
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
    let (got, _) = run(&[0, 1, 4, 5, 8].map(|i| evs[i].clone()));
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

fn arrival(ts: u64, skaddr: u64, bytes: u32) -> Event {
    decode(tbd_common::ArrivalEvent {
        hdr: hdr(kind::ARRIVAL, 0, ts),
        skaddr,
        bytes,
        _pad: 0,
    })
}

fn arrived(x: &Exchange) -> Vec<(u64, u64)> {
    x.arrivals.iter().map(|c| (c.t_ns, c.bytes)).collect()
}

#[test]
fn arrivals_are_noted_in_the_exchange_whose_reads_take_their_bytes() {
    const SK: u64 = 0xc0ffee;
    let req = request("r-0");
    let req2 = request("r-1");
    let evs = vec![
        syn_sent(900, SK, 5),
        connect(5, 800, 1_000, 0, server_addr()),
        write(CLIENT, 5, 1_100, 1_200, req.len() as u32, &req),
        // The head and two events arrive before the client's first read, which takes the head
        // and half of the first event's segment; the next read takes the rest of both.
        arrival(2_000, SK, 60),
        arrival(2_100, SK, 48),
        arrival(2_200, SK, 48),
        read(CLIENT, 5, 2_300, 2_400, 84, OK_SSE),
        read(CLIENT, 5, 2_500, 2_600, 72, SSE),
        // A segment on a socket tied to no connection.
        arrival(2_700, 0xdead, 10),
        // A read whose bytes have no arrival queued (they came before the capture, or the
        // arrival was lost); the next response's segment, handed over ahead of that read,
        // arrived after it returned, so it is not taken for it.
        write(CLIENT, 5, 2_650, 2_660, req2.len() as u32, &req2),
        arrival(3_500, SK, 60),
        read(CLIENT, 5, 2_800, 2_900, 48, SSE),
        read(CLIENT, 5, 3_600, 3_700, 60, OK_SSE),
        close(CLIENT, 5, 4_000),
    ];
    let mut t = ConnTracker::new("run".into());
    let got = collect(&mut t, &evs, Some(5_000));
    assert_eq!(got.exchanges.len(), 2);
    assert_eq!(
        arrived(&got.exchanges[0]),
        [(2_000, 60), (2_100, 48), (2_200, 48)],
        "three segments, one split between two reads and noted once"
    );
    assert_eq!(arrived(&got.exchanges[1]), [(3_500, 60)]);
    let stats = t.stats();
    assert_eq!(stats.unarrived_bytes, 48);
    assert_eq!(stats.orphan_arrivals, 1);
}

#[test]
fn a_servers_request_reads_take_the_requests_arrivals() {
    const SK: u64 = 0xbeef;
    let req = request("r-0");
    let n = req.len() as u32;
    let evs = vec![
        accept(7, 1_000, client_addr(), 8000),
        server_state(1_050, SK, SYN_RECV, ESTABLISHED),
        arrival(1_100, SK, n - 10),
        arrival(1_150, SK, 10),
        read(SERVER, 7, 1_300, 1_400, n, &req),
        write(SERVER, 7, 1_500, 1_600, 60, OK_SSE),
        close(SERVER, 7, 2_000),
    ];
    let mut t = ConnTracker::new("run".into());
    let got = collect(&mut t, &evs, Some(3_000));
    assert_eq!(got.exchanges.len(), 1);
    assert_eq!(
        arrived(&got.exchanges[0]),
        [(1_100, u64::from(n) - 10), (1_150, 10)]
    );
    assert_eq!(t.stats().unarrived_bytes, 0);
}
