//! Connection linking: connect and accept, TCP states, retransmits, close and flush.

use super::*;

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
    // The same connection still open when the capture stops (flush), after `tail`.
    let at_stop = |tail: &[Event]| {
        let mut evs = vec![
            syn_sent(1_000, 0xa0, 5),
            connect(5, 1_000, 1_100, 0, server_addr()),
            client_state(0, 1_200, 0xa0, SYN_SENT, ESTABLISHED),
        ];
        evs.extend_from_slice(tail);
        let mut t = ConnTracker::new("run-1".into());
        collect(&mut t, &evs, Some(9_000)).connections[0]
            .closed_by
            .clone()
    };
    // shutdown(SHUT_WR) and the capture stops before close(): FIN_WAIT1 alone says who.
    let shut_at_stop = at_stop(&[client_state(CLIENT, 3_000, 0xa0, ESTABLISHED, FIN_WAIT1)]);
    assert_eq!(shut_at_stop, "client");
    let reset = client(&[
        client_state(0, 3_000, 0xa0, ESTABLISHED, CLOSE),
        close(CLIENT, 5, 3_100),
    ]);
    assert_eq!(reset, "reset");
    // Open at capture stop: nobody closed it.
    assert_eq!(at_stop(&[]), "");
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
    // Non-blocking: SYN_SENT inside connect(), connect returns -libc::EINPROGRESS, then ESTABLISHED.
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
        connect(5, 1_000, 1_100, -libc::EINPROGRESS, server_addr()),
        client_state(9, 1_900, 0xa0, SYN_SENT, ESTABLISHED),
        close(CLIENT, 5, 5_000),
    ];
    let (got, _) = run(&evs);
    let c = &got.connections[0];
    assert_eq!(c.t_connect_start_ns, 1_000);
    assert_eq!(c.t_established_ns, 1_900);
    assert_eq!(c.t_established_ns - c.t_connect_start_ns, 900);
    assert_eq!(c.connect_ret, -libc::EINPROGRESS);
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
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.orphan_data, 1);
}

#[test]
fn non_blocking_connect_refused_closes_on_tcp_close() {
    let evs = [
        syn_sent(1_050, 0xc1, 5),
        connect(5, 1_000, 1_100, -libc::EINPROGRESS, server_addr()),
        client_state(9, 1_400, 0xc1, SYN_SENT, CLOSE),
        // The application's own close() of the fd ends the record; it closed when TCP did.
        close(CLIENT, 5, 1_500),
    ];
    let (got, stats) = run(&evs);
    assert_eq!(got.connections.len(), 1);
    let c = &got.connections[0];
    assert_eq!(
        (c.connect_ret, c.t_established_ns, c.t_closed_ns),
        (-libc::EINPROGRESS, 0, 1_400)
    );
    // Refused during the handshake: never established, so nobody ended it (not a reset).
    assert_eq!(c.closed_by, "");
    assert_eq!(stats.connections, 1);
}

#[test]
fn eisconn_recheck_is_not_a_new_connection() {
    let evs = [
        connect(5, 1_000, 1_100, -libc::EINPROGRESS, server_addr()),
        connect(5, 1_200, 1_210, -106, server_addr()),
        close(CLIENT, 5, 2_000),
    ];
    let (got, stats) = run(&evs);
    assert_eq!(got.connections.len(), 1);
    assert_eq!(got.connections[0].connect_ret, -libc::EINPROGRESS);
    assert_eq!(stats.failed_connects, 0);
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
    assert_eq!(got.connections[0].src, None, "its own end is not the peer");
    // Nor does getpeername relink a server socket already linked to its kernel socket.
    let mut t = ConnTracker::new("run-1".into());
    let evs = [
        server_state(900, 0xb0, SYN_RECV, ESTABLISHED),
        accept(7, 1_000, client_addr(), 8000),
        peer(SERVER, 7, 1_050, client_addr()),
    ];
    collect(&mut t, &evs, None);
    assert_eq!(t.by_sk.get(&0xb0), Some(&(SERVER, 7)));
    assert!(t.by_tuple.is_empty());
}

#[test]
fn fd_reused_without_close_finishes_the_old_connection() {
    // (connection id, closed at) of each connection, and the closes counted as missed.
    let closes = |evs: &[Event]| {
        let (got, stats) = run(evs);
        let ids: Vec<(u64, u64)> = got
            .connections
            .iter()
            .map(|c| (c.conn_id, c.t_closed_ns))
            .collect();
        (ids, stats.missed_closes)
    };
    let client = closes(&[
        connect(5, 100, 200, 0, server_addr()),
        connect(5, 1_000, 1_100, 0, server_addr()),
        close(CLIENT, 5, 2_000),
    ]);
    assert_eq!(client, (vec![(1, 1_100), (2, 2_000)], 1));
    // The same on a server: accept() hands out an fd whose close() was never seen.
    let server = closes(&[
        accept(7, 100, client_addr(), 8000),
        accept(7, 1_000, client_addr(), 8000),
        close(SERVER, 7, 2_000),
    ]);
    assert_eq!(server, (vec![(1, 1_000), (2, 2_000)], 1));
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
fn a_finished_connection_takes_only_its_own_links_and_leaves_none() {
    // As above: fd 5's socket address passes to fd 6 before fd 5 is closed. Closing fd 5
    // must leave fd 6's links (by socket and by 4-tuple) alone, and once both are closed no
    // link is left behind (a leak here grows with every connection of a long capture).
    let sk = 0xf0;
    let mut t = ConnTracker::new("run-1".into());
    let evs = [
        syn_sent(150, sk, 5),
        connect(5, 100, 200, 0, server_addr()),
        syn_sent(1_050, sk, 6),
        client_state(9, 1_060, sk, SYN_SENT, ESTABLISHED),
        connect(6, 1_000, 1_100, 0, server_addr()),
        close(CLIENT, 5, 2_000),
    ];
    collect(&mut t, &evs, None);
    assert_eq!(t.by_sk.get(&sk), Some(&(CLIENT, 6)));
    collect(&mut t, &[close(CLIENT, 6, 3_000)], None);
    assert!(t.by_sk.is_empty() && t.by_tuple.is_empty());
    // fd 5's TCP_CLOSE came (its address freed) and fd 6's socket took the address before
    // fd 5's close(): that close must not unlink fd 6.
    let evs = [
        syn_sent(10_000, sk, 5),
        connect(5, 10_000, 10_100, 0, server_addr()),
        client_state(CLIENT, 10_050, sk, SYN_SENT, ESTABLISHED),
        state(0, 11_000, sk, 9, CLOSE, -1, client_addr(), server_addr()),
        syn_sent(12_000, sk, 6),
        connect(6, 12_000, 12_100, 0, server_addr()),
        close(CLIENT, 5, 13_000),
    ];
    collect(&mut t, &evs[..4], None);
    assert!(!t.by_sk.contains_key(&sk), "TCP_CLOSE frees the address");
    collect(&mut t, &evs[4..], None);
    assert_eq!(t.by_sk.get(&sk), Some(&(CLIENT, 6)));
    collect(&mut t, &[close(CLIENT, 6, 14_000)], None);
    assert!(t.by_sk.is_empty() && t.by_tuple.is_empty());
    // The same for a server socket, linked by its 4-tuple until an event names its socket.
    collect(&mut t, &[accept(7, 1_000, client_addr(), 8000)], None);
    assert_eq!(t.by_tuple.values().collect::<Vec<_>>(), vec![&(SERVER, 7)]);
    collect(&mut t, &[close(SERVER, 7, 2_000)], None);
    assert!(t.by_sk.is_empty() && t.by_tuple.is_empty());
    let local = v4([10, 0, 0, 2], 8000);
    let evs = [
        accept(7, 3_000, client_addr(), 8000),
        retransmit(3_500, 0xe0, local, client_addr()),
    ];
    collect(&mut t, &evs, None);
    assert_eq!(t.by_sk.get(&0xe0), Some(&(SERVER, 7)));
    collect(&mut t, &[close(SERVER, 7, 4_000)], None);
    assert!(t.by_sk.is_empty() && t.by_tuple.is_empty());
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

#[test]
fn a_server_socket_is_established_when_its_handshake_ends_not_when_it_appears() {
    // The kernel's child socket appears in SYN_RECV (850) and is established at 900; accept()
    // takes it later.
    let evs = [
        server_state(850, 0xb1, 10, SYN_RECV),
        server_state(900, 0xb1, SYN_RECV, ESTABLISHED),
        accept(7, 1_000, client_addr(), 8000),
        close(SERVER, 7, 2_000),
    ];
    let (got, _) = run(&evs);
    assert_eq!(got.connections[0].t_established_ns, 900);
}

#[test]
fn a_socket_closed_before_connect_or_accept_returns_leaves_nothing_pending() {
    // A refused connect (SYN_SENT, then CLOSE inside connect()) and a handshake the client
    // reset before accept(): neither socket is waited for any more, by fd or by 4-tuple, so
    // a long capture of failing connections does not grow the tables.
    let mut t = ConnTracker::new("run-1".into());
    let evs = [
        syn_sent(1_000, 0xd0, 5),
        client_state(CLIENT, 1_100, 0xd0, SYN_SENT, CLOSE),
        server_state(2_000, 0xd1, SYN_RECV, ESTABLISHED),
        server_state(2_100, 0xd1, ESTABLISHED, CLOSE),
    ];
    collect(&mut t, &evs[..1], None);
    assert_eq!(t.pending_by_fd.len(), 1);
    collect(&mut t, &evs[1..3], None);
    assert_eq!(t.pending_by_tuple.len(), 1);
    collect(&mut t, &evs[3..], None);
    assert!(t.pending.is_empty());
    assert!(t.pending_by_fd.is_empty() && t.pending_by_tuple.is_empty());
}

#[test]
fn unlinked_sockets_are_bounded_and_those_past_the_bound_counted() {
    // Sockets seen connecting whose connect() never comes (lost events) fill the pending
    // table up to its bound; one more is counted and dropped; a known socket is still updated.
    let mut t = ConnTracker::new("run-1".into());
    let base = 0x10_0000u64;
    let evs: Vec<Event> = (0..MAX_PENDING as u64)
        .map(|i| syn_sent(1_000 + i, base + i, i as i32))
        .collect();
    collect(&mut t, &evs, None);
    assert_eq!(
        (t.pending.len(), t.stats().pending_dropped),
        (MAX_PENDING, 0)
    );
    collect(&mut t, &[syn_sent(900_000, 0xfeed, 900_000)], None);
    assert_eq!(
        (t.pending.len(), t.stats().pending_dropped),
        (MAX_PENDING, 1)
    );
    assert!(!t.pending.contains_key(&0xfeed));
    // A socket already pending, its address reused by a new connect: taken, not dropped.
    collect(&mut t, &[syn_sent(900_100, base, 900_001)], None);
    assert_eq!(t.stats().pending_dropped, 1);
    assert_eq!(t.pending_by_fd.get(&(CLIENT, 900_001)), Some(&base));
}
