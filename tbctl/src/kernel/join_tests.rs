//! Unit tests of the join: lines, matching, the TTFT split and the kernel samples.
use super::*;
use tb_proto::v1::Chunk;

fn chunk(t: u64, b: u64) -> Chunk {
    Chunk { t_ns: t, bytes: b }
}

#[test]
fn each_read_gets_the_arrivals_of_its_first_and_last_byte_when_they_are_whole() {
    let mut l = KernelLine {
        side: "client".into(),
        response_bytes: 100,
        // Reads of 30, 50 and 20 bytes over segments of 40, 40 and 20.
        chunks: vec![[1_000, 30], [2_000, 50], [3_000, 20]],
        arrivals: vec![[500, 40], [900, 40], [2_500, 20]],
        ..Default::default()
    };
    assert_eq!(
        l.read_arrivals(),
        Some(vec![[500, 500], [500, 900], [2_500, 2_500]])
    );
    // A segment whose arrival was not seen: no offsets are known.
    l.arrivals.pop();
    assert_eq!(l.read_arrivals(), None);
}

#[test]
fn ttft_splits_into_client_network_and_server_time() {
    let rec = RequestRecord {
        request_id: 7,
        t_sent_ns: Some(1_000_000),
        t_first_token_ns: Some(9_100_000),
        success: true,
        ..Default::default()
    };
    let client = Exchange {
        side: "client".into(),
        request_id: "7".into(),
        t_request_first_ns: 1_010_000,
        t_request_last_ns: 1_020_000,
        t_response_first_ns: 5_100_000,
        // headers (100 B) at 5.1 ms, role prelude (50 B) at 5.2 ms, first token at 9.05 ms
        chunks: vec![
            chunk(5_100_000, 100),
            chunk(5_200_000, 50),
            chunk(9_050_000, 60),
        ],
        ..Default::default()
    };
    let server = Exchange {
        side: "server".into(),
        request_id: "7".into(),
        t_request_first_ns: 1_050_000,
        t_request_last_ns: 1_060_000,
        t_response_first_ns: 5_000_000,
        chunks: vec![
            chunk(5_000_000, 100),
            chunk(5_150_000, 50),
            chunk(9_000_000, 60),
        ],
        ..Default::default()
    };
    let data = KernelData {
        exchanges: vec![
            client,
            server,
            Exchange {
                request_id: "99".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let recs = [rec];
    let j = join(&recs, &data);
    let summary = KernelSummary::of(&j.lines, &recs.iter().collect::<Vec<_>>(), &j.facts);
    assert_eq!(j.lines.len(), 2);
    let c = &j.lines[0];
    assert!((c.client_send_lag_ms.unwrap() - 0.01).abs() < 1e-9);
    assert!((c.client_read_lag_ms.unwrap() - 0.05).abs() < 1e-9);
    assert!((c.network_ms.unwrap() - 0.1).abs() < 1e-9);
    // The first token rode the third server write, 7.94 ms after the request was read.
    assert!((j.lines[1].server_ttft_ms.unwrap() - 7.94).abs() < 1e-9);
    assert_eq!((summary.seen_client_side, summary.seen_server_side), (1, 1));
    assert_eq!(summary.unmatched_exchanges, 1);
    assert_eq!(summary.metrics["server_ttft_ms"].dist.count, 1);
    // Two server write gaps from three writes; kernel TTFB 5.1 - 1.01 ms.
    assert_eq!(summary.metrics["server_chunk_gap_ms"].dist.count, 2);
    assert!((summary.metrics["kernel_ttfb_ms"].dist.p50 - 4.09).abs() < 1e-9);
}

#[test]
fn a_retried_request_joins_its_answered_attempt_else_its_later_one_whatever_the_order() {
    let rec = RequestRecord {
        request_id: 5,
        t_sent_ns: Some(1_000),
        success: true,
        retries: 1,
        ..Default::default()
    };
    // Two attempts of request 5 on connections 1 and 2: (sent, first response byte or 0).
    let attempt = |conn_id, sent, answered| Exchange {
        side: "client".into(),
        request_id: "5".into(),
        conn_id,
        t_request_first_ns: sent,
        t_response_first_ns: answered,
        ..Default::default()
    };
    let cases = [
        // A kept-alive connection the server had closed, no response; the retry answered.
        ((1, 1_000, 0), (2, 2_000, 9_000), 2),
        // Answered, then sent again after its answer stalled: still the answered one.
        ((1, 1_000, 0), (2, 500, 700), 2),
        // Neither or both answered: the later attempt.
        ((1, 1_000, 0), (2, 2_000, 0), 2),
        ((1, 1_000, 1_500), (2, 2_000, 9_000), 2),
    ];
    for ((c1, s1, a1), (c2, s2, a2), want) in cases {
        let (x, y) = (attempt(c1, s1, a1), attempt(c2, s2, a2));
        for exchanges in [vec![x.clone(), y.clone()], vec![y, x]] {
            let data = KernelData {
                exchanges,
                ..Default::default()
            };
            let j = join(std::slice::from_ref(&rec), &data);
            assert_eq!(j.lines.len(), 1);
            assert_eq!(j.lines[0].conn.id, want, "{c1} and {c2}");
            assert_eq!(j.facts.superseded_attempts, 1);
            assert_eq!(j.facts.unmatched_exchanges, 0);
        }
    }
}

#[test]
fn unseen_requests_are_counted() {
    let recs: Vec<RequestRecord> = (0..3)
        .map(|i| RequestRecord {
            request_id: i,
            ..Default::default()
        })
        .collect();
    let data = KernelData {
        exchanges: vec![
            Exchange {
                side: "client".into(),
                request_id: "1".into(),
                ..Default::default()
            },
            Exchange {
                side: "server".into(),
                request_id: "2".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let j = join(&recs, &data);
    let summary = KernelSummary::of(&j.lines, &recs.iter().collect::<Vec<_>>(), &j.facts);
    assert_eq!(
        (summary.unseen_client_side, summary.unseen_server_side),
        (2, 2)
    );
}

fn ep(addr: &str, port: u32) -> Option<tb_proto::v1::Endpoint> {
    Some(tb_proto::v1::Endpoint {
        addr: addr.into(),
        port,
    })
}

fn lookup(pid: u32, name: &str, start: u64, end: u64, source: &str) -> DnsLookup {
    DnsLookup {
        pid,
        name: name.into(),
        t_start_ns: start,
        t_end_ns: end,
        source: source.into(),
        ..Default::default()
    }
}

#[test]
fn a_line_carries_the_exchange_its_connection_and_the_lookup_before_it() {
    let conn = Connection {
        conn_id: 3,
        side: "client".into(),
        pid: 40,
        src: ep("127.0.0.1", 50_000),
        dst: ep("10.1.2.3", 8_000),
        t_connect_start_ns: 10_000,
        t_established_ns: 10_250,
        closed_by: "server".into(),
        ..Default::default()
    };
    let ex = Exchange {
        side: "client".into(),
        pid: 40,
        comm: "tbctl".into(),
        conn_id: 3,
        conn_new: true,
        request_id: "17".into(),
        t_request_first_ns: 11_000,
        t_request_last_ns: 11_500,
        t_response_first_ns: 20_000,
        t_response_last_ns: 30_000,
        chunks: vec![chunk(20_000, 90), chunk(30_000, 10)],
        arrivals: vec![chunk(19_000, 100)],
        http_status: 200,
        request_bytes: 300,
        response_bytes: 100,
        retransmits: 2,
        ..Default::default()
    };
    let dns = [
        // The lookup before the connect: the latest of this pid's getaddrinfo calls that
        // ended by the time connect() began; a wire query inside it means it was not
        // cached.
        lookup(40, "old.example", 1_000, 2_000, "getaddrinfo"),
        lookup(40, "api.example", 5_000, 10_000, "getaddrinfo"),
        lookup(40, "", 6_000, 8_000, "udp53"),
        // Another process's lookup, one ending after connect() began, and a wire query
        // alone are not it.
        lookup(41, "other.example", 9_100, 9_200, "getaddrinfo"),
        lookup(40, "late.example", 9_500, 10_001, "getaddrinfo"),
        lookup(40, "wire.example", 9_300, 9_400, "udp53"),
    ];
    let l = line_for(&ex, Some(&conn), &dns);
    assert_eq!(
        l,
        KernelLine {
            request_id: Some(17),
            side: "client".into(),
            pid: 40,
            comm: "tbctl".into(),
            conn: ConnInfo {
                id: 3,
                src: "127.0.0.1:50000".into(),
                dst: "10.1.2.3:8000".into(),
                new: true,
                connect_ns: Some(250),
                retransmits: 2,
                closed_by: Some("server".into()),
            },
            dns: Some(DnsInfo {
                name: "api.example".into(),
                t_start_ns: 5_000,
                t_end_ns: 10_000,
                cached: false,
            }),
            t_request_first_ns: Some(11_000),
            t_request_last_ns: Some(11_500),
            t_response_first_ns: Some(20_000),
            t_response_last_ns: Some(30_000),
            chunks: vec![[20_000, 90], [30_000, 10]],
            arrivals: vec![[19_000, 100]],
            http_status: Some(200),
            request_bytes: 300,
            response_bytes: 100,
            ..Default::default()
        }
    );

    // A lookup with no wire query inside it was answered from a cache.
    let cached = [lookup(40, "api.example", 5_000, 10_000, "getaddrinfo")];
    assert!(line_for(&ex, Some(&conn), &cached).dns.unwrap().cached);
    // A query that only overlaps the lookup's start or end is another lookup's.
    let around = [
        lookup(40, "api.example", 5_000, 10_000, "getaddrinfo"),
        lookup(40, "", 4_000, 6_000, "udp53"),
        lookup(40, "", 8_000, 10_500, "udp53"),
    ];
    assert!(line_for(&ex, Some(&conn), &around).dns.unwrap().cached);
    // One that spans the lookup exactly is its own.
    let exact = [
        lookup(40, "api.example", 5_000, 10_000, "getaddrinfo"),
        lookup(40, "", 5_000, 10_000, "udp53"),
    ];
    assert!(!line_for(&ex, Some(&conn), &exact).dns.unwrap().cached);

    // A reused connection had no lookup before this exchange; unseen times and an
    // unseen status are absent, not zero.
    let reused = Exchange {
        conn_new: false,
        request_id: "not a number".into(),
        t_request_last_ns: 0,
        t_response_first_ns: 0,
        t_response_last_ns: 0,
        http_status: 0,
        ..ex.clone()
    };
    let unseen = Connection {
        t_established_ns: 0,
        closed_by: String::new(),
        ..conn.clone()
    };
    let l = line_for(&reused, Some(&unseen), &dns);
    assert_eq!(l.dns, None);
    assert_eq!(l.request_id, None);
    assert_eq!(
        (l.t_request_first_ns, l.t_request_last_ns),
        (Some(11_000), None)
    );
    assert_eq!((l.t_response_first_ns, l.t_response_last_ns), (None, None));
    assert_eq!(l.http_status, None);
    assert_eq!((l.conn.connect_ns, l.conn.closed_by), (None, None));
    // Without its connection a line still has the exchange's own facts.
    let l = line_for(&ex, None, &dns);
    assert_eq!((l.conn.src.as_str(), l.conn.dst.as_str()), ("", ""));
    assert_eq!((l.conn.id, l.conn.new, l.dns), (3, true, None));
}

#[test]
fn a_read_ending_on_a_segment_boundary_gets_that_segments_arrival() {
    let l = KernelLine {
        side: "server".into(),
        request_bytes: 100,
        chunks: vec![[1_000, 40], [2_000, 40], [3_000, 20]],
        arrivals: vec![[500, 40], [900, 40], [2_500, 20]],
        ..Default::default()
    };
    assert_eq!(
        l.read_arrivals(),
        Some(vec![[500, 500], [900, 900], [2_500, 2_500]])
    );
    // Reads that claim more bytes than arrived (a record from a tbd that counted them
    // apart) end on the last arrival instead of reading past the list.
    let over = KernelLine {
        chunks: vec![[1_000, 60], [2_000, 60]],
        ..l.clone()
    };
    assert_eq!(over.read_arrivals(), Some(vec![[500, 900], [900, 2_500]]));
    // Nothing read, nothing arrived: no arrivals to speak of.
    let empty = KernelLine {
        side: "client".into(),
        ..Default::default()
    };
    assert_eq!(empty.whole_arrivals(), None);
    assert_eq!(empty.read_arrivals(), None);
}

#[test]
fn a_read_stamped_at_the_first_token_carried_it() {
    let reads = [[100, 10], [200, 20], [300, 30]];
    assert_eq!(first_token_read(&reads, 200), Some((1, 30)));
    assert_eq!(first_token_read(&reads, 299), Some((1, 30)));
    assert_eq!(first_token_read(&reads, 99), None);
    // Byte 29 is the second write's last, byte 30 the third's first.
    assert_eq!(write_carrying(&reads, 29), Some(1));
    assert_eq!(write_carrying(&reads, 30), Some(2));
    assert_eq!(write_carrying(&reads, 60), None);
}

#[test]
fn arrival_gaps_spread_each_chunk_over_its_tokens() {
    let rec = RequestRecord {
        chunks: vec![[1_000, 1], [5_000, 1], [9_000, 2]],
        ..Default::default()
    };
    let line = KernelLine {
        content_arrivals_ns: vec![900, 1_900, 5_900],
        ..Default::default()
    };
    assert_eq!(
        arrival_token_gaps_ns(&line, &rec),
        vec![1_000.0, 2_000.0, 2_000.0]
    );
    // Arrivals that do not match the record's chunks give no gaps.
    let short = KernelLine {
        content_arrivals_ns: vec![900, 1_900],
        ..Default::default()
    };
    assert!(arrival_token_gaps_ns(&short, &rec).is_empty());
}

#[test]
fn samples_are_the_lines_figures_in_their_units() {
    let rec = RequestRecord {
        request_id: 1,
        ttft_ms: Some(4.5),
        chunks: vec![[1_000_000, 1], [3_000_000, 2]],
        ..Default::default()
    };
    let client = KernelLine {
        request_id: Some(1),
        side: "client".into(),
        t_request_first_ns: Some(1_000_000),
        t_response_first_ns: Some(3_500_000),
        client_send_lag_ms: Some(0.01),
        client_read_lag_ms: Some(0.02),
        network_ms: Some(0.03),
        ttft_arrival_ms: Some(4.0),
        content_arrivals_ns: vec![1_000_000, 4_000_000],
        ..Default::default()
    };
    let server = KernelLine {
        request_id: Some(1),
        side: "server".into(),
        server_ttft_ms: Some(3.0),
        chunks: vec![[1_000_000, 10], [1_250_000, 10], [2_000_000, 10]],
        ..Default::default()
    };
    // A line of a request that is not among the records counts nowhere.
    let other = KernelLine {
        request_id: Some(2),
        ..client.clone()
    };
    let s = KernelSamples::of(&[client, server, other], &[&rec]);
    let expect: BTreeMap<&str, Vec<f64>> = [
        ("client_send_lag_ms", vec![0.01]),
        ("client_read_lag_ms", vec![0.02]),
        ("network_ms", vec![0.03]),
        ("ttft_arrival_ms", vec![4.0]),
        ("ttft_late_ms", vec![0.5]),
        ("itl_arrival_ms", vec![1.5, 1.5]),
        ("kernel_ttfb_ms", vec![2.5]),
        ("server_ttft_ms", vec![3.0]),
        ("server_chunk_gap_ms", vec![0.25, 0.75]),
    ]
    .into_iter()
    .collect();
    assert_eq!(s.samples, expect);
    assert_eq!(s.seen, [HashSet::from([1]), HashSet::from([1])]);
}

#[test]
fn the_summary_carries_the_captures_counts() {
    let facts = CaptureFacts {
        unmatched_exchanges: 3,
        connections: 4,
        dns_lookups: 5,
        lost_events: BTreeMap::from([("ringbuf_full".to_string(), 6)]),
        superseded_attempts: 7,
        export_latency: None,
    };
    let s = KernelSummary::of(&[], &[], &facts);
    assert_eq!(
        (
            s.requests,
            s.unmatched_exchanges,
            s.connections,
            s.dns_lookups,
            s.superseded_attempts
        ),
        (0, 3, 4, 5, 7)
    );
    assert_eq!(s.lost_events, facts.lost_events);
    assert!(s.metrics.is_empty());
}
