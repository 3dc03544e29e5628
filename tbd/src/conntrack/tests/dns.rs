//! DNS lookups: getaddrinfo and UDP port 53 sockets.

use super::*;

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

    // A query never answered (the resolver timed out) is still a lookup, with no end.
    let evs = [
        connect(4, 1_000, 1_010, 0, resolver),
        write(CLIENT, 4, 1_100, 1_120, 40, b"\x12\x34\x01\x00\x00\x01"),
        close(CLIENT, 4, 5_000_000),
    ];
    let (got, stats) = run(&evs);
    assert_eq!((got.dns[0].t_start_ns, got.dns[0].t_end_ns), (1_100, 0));
    assert_eq!(stats.dns_lookups, 1);
    // A resolver socket that sent and read nothing is no lookup.
    let (got, stats) = run(&[
        connect(4, 1_000, 1_010, 0, resolver),
        close(CLIENT, 4, 2_000),
    ]);
    assert!(got.dns.is_empty());
    assert_eq!((stats.dns_lookups, got.connections.len()), (0, 1));
}
