//! Exchange building: requests and responses from data syscalls, on both sides.

use super::*;

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
    t.recycle([Box::new(long)]);
    assert_eq!(t.spare[0].chunks.capacity(), 0);
    t.recycle(vec![Box::new(junk); 3]);
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
    t.recycle(got.exchanges.into_iter().map(Box::new));
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
fn orphan_data_counted_and_ignored() {
    let req = request("x");
    let evs = [
        write(CLIENT, 9, 1_000, 1_010, req.len() as u32, &req),
        read(CLIENT, 9, 1_020, 2_000, 60, OK_SSE),
        // Tracked connection, but bytes before any request line are not an exchange.
        connect(5, 100, 200, 0, server_addr()),
        read(CLIENT, 5, 2_100, 2_200, 60, OK_SSE),
        // A batch of three held chunks on an untracked fd: each chunk counts.
        batch(CLIENT, 9, true, &[(2_300, 10), (2_400, 10), (2_500, 10)]),
    ];
    let mut t = ConnTracker::new("r".into());
    let got = collect(&mut t, &evs, Some(5_000));
    assert!(got.exchanges.is_empty());
    assert_eq!(got.connections.len(), 1);
    assert_eq!(t.stats().orphan_data, 5);
    assert_eq!(t.stats().unmatched_data, 1);
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
fn spare_lists_are_kept_up_to_their_bound_and_dropped_past_it() {
    let mut at: Vec<u64> = Vec::with_capacity(SPARE_CHUNKS);
    let cap = at.capacity();
    bound(&mut at);
    assert_eq!(at.capacity(), cap, "a list of {cap} entries is kept");
    let mut past: Vec<u64> = Vec::with_capacity(SPARE_CHUNKS + 1);
    bound(&mut past);
    assert_eq!(past.capacity(), 0);
}
