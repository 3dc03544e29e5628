//! Segment arrivals noted in the exchange whose reads take their bytes.

use super::*;

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
        arrival(2_000, SK, 0, 60),
        arrival(2_100, SK, 60, 48),
        arrival(2_200, SK, 108, 48),
        read(CLIENT, 5, 2_300, 2_400, 84, OK_SSE),
        read(CLIENT, 5, 2_500, 2_600, 72, SSE),
        // A segment on a socket tied to no connection.
        arrival(2_700, 0xdead, 0, 10),
        // A read whose bytes have no arrival queued (they came before the capture, or the
        // arrival was lost); the next response's segment, handed over ahead of that read,
        // arrived after it returned, so it is not taken for it.
        write(CLIENT, 5, 2_650, 2_660, req2.len() as u32, &req2),
        arrival(3_500, SK, 204, 60),
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
        arrival(1_100, SK, 7, n - 10),
        arrival(1_150, SK, 7 + n - 10, 10),
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

#[test]
fn a_connection_that_reads_nothing_keeps_only_its_newest_arrivals() {
    const SK: u64 = 0xa11;
    let mut evs = vec![
        syn_sent(900, SK, 5),
        connect(5, 800, 1_000, 0, server_addr()),
    ];
    let n = MAX_ARRIVED as u64 + 1;
    evs.extend((0..n).map(|i| arrival(2_000 + i, SK, i as u32, 1)));
    let req = request("r-0");
    evs.push(write(CLIENT, 5, 1_100, 1_200, req.len() as u32, &req));
    // The read takes the oldest bytes still queued: the first segment was dropped.
    evs.push(read(CLIENT, 5, 9_000, 9_100, 2, b"HT"));
    let mut t = ConnTracker::new("run".into());
    let got = collect(&mut t, &evs, Some(10_000));
    assert_eq!(t.stats().dropped_arrivals, 1);
    assert_eq!(arrived(&got.exchanges[0]), [(2_001, 1), (2_002, 1)]);
}
