//! The server-side peer, for real (root): a server that accepts with a null address, as
//! cpp-httplib (llama-server) does, gets its peer from the getpeername probe, and the
//! connection tracker links the socket's TCP state events to it by that 4-tuple.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
};

use tbd::{
    conntrack::{ConnTracker, Output},
    events::Event,
    probes::Probes,
};

/// accept4(fd, NULL, NULL, 0) then getpeername(), the way cpp-httplib does it.
fn accept_without_address(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    // SAFETY: a valid listening fd; a null address is allowed by accept4.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    assert!(fd >= 0, "accept4: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a freshly accepted socket this function owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let peer = stream.peer_addr().expect("getpeername");
    (stream, peer)
}

#[test]
fn server_peer_from_getpeername_links_the_kernel_socket() {
    let mut probes = Probes::load(&[
        "tb_enter_accept4",
        "tb_exit_accept4",
        "tb_exit_getpeername",
        "tb_exit_read",
        "tb_exit_recvfrom",
        "tb_enter_write",
        "tb_exit_write",
        "tb_enter_sendto",
        "tb_exit_sendto",
        "tb_enter_close",
        "tb_sock_state",
    ])
    .expect("load eBPF (run as root)");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let me = std::process::id();
    probes.track_port(port).unwrap();
    probes
        .track_listener(me, listener.as_raw_fd() as u32, port)
        .unwrap();
    probes.attach().expect("attach");
    let mut ring = probes.take_ring().unwrap();

    // The client is another thread of this (untracked-as-client) process: only the server
    // side is tracked.
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        c.local_addr().unwrap()
    });
    let (mut server, peer) = accept_without_address(&listener);
    let mut buf = [0u8; 256];
    let n = server.read(&mut buf).unwrap();
    assert!(n > 0);
    server
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .unwrap();
    let client_addr = client.join().unwrap();
    assert_eq!(peer, client_addr);
    drop(server);

    let mut events = common::drain_until(&mut ring, |evs| {
        evs.iter().any(|e| matches!(e, Event::Close(_)))
    });
    let peers: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Peer(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(
        peers.len(),
        1,
        "one getpeername on the accepted socket: {peers:?}"
    );
    assert_eq!(
        tbd::events::socket_addr(&peers[0].peer),
        Some(client_addr),
        "the peer as the server saw it"
    );
    let accept = events.iter().find_map(|e| match e {
        Event::Accept(a) => Some(*a),
        _ => None,
    });
    let accept = accept.expect("the accept event");
    assert_eq!(accept.peer.family, 0, "accept4 was given no address");
    assert_eq!(peers[0].fd, accept.fd);

    events.sort_by_key(|e| e.header().ts_ns);
    let mut tracker = ConnTracker::new("t".into());
    let mut conns = Vec::new();
    let mut exchanges = 0;
    let mut sink = |o: Output| match o {
        Output::Connection(c) => conns.push(c),
        Output::Exchange(_) => exchanges += 1,
        Output::Dns(_) => {}
    };
    for ev in &events {
        tracker.on_event(ev, &mut sink);
    }
    tracker.flush(u64::MAX, &mut sink);
    assert_eq!(exchanges, 1);
    assert_eq!(conns.len(), 1, "{conns:?}");
    let c = &conns[0];
    assert_eq!(c.side, "server");
    let src = c.src.as_ref().unwrap();
    assert_eq!(
        (src.addr.as_str(), src.port),
        ("127.0.0.1", u32::from(client_addr.port()))
    );
    let dst = c.dst.as_ref().unwrap();
    assert_eq!(
        (dst.addr.as_str(), dst.port),
        ("127.0.0.1", u32::from(port))
    );
    assert!(
        c.t_established_ns > 0 && c.t_established_ns <= accept.hdr.ts_ns,
        "handshake time from the linked state event: {c:?}"
    );
    assert!(probes.lost().unwrap().iter().all(|(_, n)| *n == 0));
}
