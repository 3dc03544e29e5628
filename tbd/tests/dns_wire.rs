//! DNS on the wire, for real (root): a tracked process sends two queries in one sendmmsg (as
//! glibc's resolver does for A and AAAA) to a UDP socket connected to port 53; the probes see
//! the query and the answers, and the tracker times the lookup from the query's send.

mod common;

use std::{net::UdpSocket, os::fd::AsRawFd, time::Duration};

use tbd::{
    conntrack::{ConnTracker, Output},
    events::Event,
};
use tbd_common::op;

/// Sends `msgs` as one sendmmsg on `fd`; returns how many were sent.
fn sendmmsg(fd: i32, msgs: &[&[u8]]) -> i32 {
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut _,
            iov_len: m.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid mmsghdr (no name, no control data).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: headers and buffers outlive the call.
    unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) }
}

#[test]
fn sendmmsg_queries_to_port_53_time_the_lookup() {
    // Any 127/8 address is loopback; .2 keeps clear of a local resolver on 127.0.0.1/.53.
    let server = UdpSocket::bind("127.0.0.2:53")
        .expect("bind 127.0.0.2:53 for the fake DNS server (run as root, port free)");
    let answers = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..2 {
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let mut reply = buf[..n].to_vec();
            reply.extend_from_slice(&[0u8; 16]);
            server.send_to(&reply, from).unwrap();
        }
    });

    let (mut probes, mut ring) = common::attached(&[
        "tb_enter_connect",
        "tb_exit_connect",
        "tb_enter_sendmmsg",
        "tb_exit_sendmmsg",
        "tb_exit_recvfrom",
        "tb_enter_close",
    ]);
    probes.track_pid(std::process::id()).unwrap();

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect("127.0.0.2:53").unwrap();
    let fd = client.as_raw_fd();
    // A gap between connect and send: a lookup timed from connect() would start too early.
    std::thread::sleep(Duration::from_millis(30));
    let query_a =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03llm\x07example\x00\x00\x01\x00\x01";
    let query_aaaa =
        b"\x12\x35\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03llm\x07example\x00\x00\x1c\x00\x01";
    let t0 = tbd_common::clock::mono_ns();
    assert_eq!(sendmmsg(fd, &[query_a, query_aaaa]), 2);
    let t1 = tbd_common::clock::mono_ns();
    let mut buf = [0u8; 512];
    for _ in 0..2 {
        client.recv(&mut buf).unwrap();
    }
    let t2 = tbd_common::clock::mono_ns();
    drop(client);
    answers.join().unwrap();

    let events = common::drain_until(&mut ring, |evs| {
        evs.iter()
            .any(|e| matches!(e, Event::Close(c) if c.fd == fd))
    });
    probes.detach();

    let query = events
        .iter()
        .find_map(|e| match e {
            Event::Data(d) if d.fd == fd && d.op == op::WRITE => Some(*d),
            _ => None,
        })
        .expect("the sendmmsg was seen");
    assert_eq!(
        query.bytes as usize,
        query_a.len() + query_aaaa.len(),
        "bytes of both messages"
    );
    assert!(query.ts_enter_ns >= t0 && query.hdr.ts_ns <= t1);
    assert_eq!(
        &query.prefix[..query.prefix_len as usize],
        &query_a[..query.prefix_len as usize]
    );

    let mut tracker = ConnTracker::new("dns-wire".into());
    let mut out = Vec::new();
    for ev in &events {
        tracker.on_event(ev, &mut |o| out.push(o));
    }
    tracker.flush(tbd_common::clock::mono_ns(), &mut |o| out.push(o));
    let lookups: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Dns(d) if d.source == "udp53" => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    let l = &lookups[0];
    assert!(
        (t0..=t1).contains(&l.t_start_ns),
        "lookup starts at the query's send: {} not in [{t0}, {t1}]",
        l.t_start_ns
    );
    assert!(
        (t1..=t2).contains(&l.t_end_ns),
        "lookup ends at the last answer read: {} not in [{t1}, {t2}]",
        l.t_end_ns
    );
    assert!(probes.lost().unwrap().iter().all(|(_, n)| *n == 0));
}
