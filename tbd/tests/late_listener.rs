//! A server that starts listening on a tracked port after the capture started (started or
//! restarted during it) is tracked from its listen() (real kernel, root).

mod common;

use std::{net::TcpStream, time::Duration};

use tbd::{events::Event, probes::Probes};

/// A bound, not yet listening, IPv4 socket on a free loopback port: (fd, port).
fn bound_socket() -> (i32, u16) {
    // SAFETY: plain socket calls on a fd this function owns; the address structs are local.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        let p = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
        assert_eq!(libc::bind(fd, p, len), 0);
        assert_eq!(libc::getsockname(fd, p, &mut len), 0);
        (fd, u16::from_be(addr.sin_port))
    }
}

#[test]
fn listen_after_capture_start_is_tracked() {
    let mut probes = Probes::load(&[
        "tb_sock_state",
        "tb_enter_accept4",
        "tb_exit_accept4",
        "tb_enter_close",
    ])
    .expect("load eBPF (run as root)");
    let (fd, port) = bound_socket();
    // The capture names the port; nothing listens on it yet, so tbd finds no listener.
    probes.track_port(port).unwrap();
    probes.attach().expect("attach");
    let mut ring = probes.take_ring().unwrap();
    let me = std::process::id();
    assert!(!probes.tgid_tracked(me).unwrap());

    // SAFETY: listen and accept4 on the socket this test owns.
    assert_eq!(unsafe { libc::listen(fd, 16) }, 0);
    assert!(
        probes.tgid_tracked(me).unwrap(),
        "the listening process passes the filter"
    );
    let client = std::thread::spawn(move || TcpStream::connect(("127.0.0.1", port)).unwrap());
    let conn = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0) };
    assert!(conn >= 0);
    drop(client.join().unwrap());

    let events = common::drain_until(&mut ring, |evs| {
        evs.iter().any(|e| matches!(e, Event::Accept(_)))
    });
    let (mut accepts, mut listens) = (Vec::new(), Vec::new());
    for e in events {
        match e {
            Event::Accept(a) => accepts.push(a),
            Event::State(st) if st.newstate == 10 => listens.push(st),
            _ => {}
        }
    }
    assert_eq!(accepts.len(), 1, "the accepted connection is tracked");
    // Announced to user space, for the run's list of listeners.
    assert_eq!(listens.len(), 1, "{listens:?}");
    let l = listens[0];
    assert_eq!((l.hdr.pid, l.fd, l.src.port), (me, fd, port));
    let a = accepts[0];
    assert_eq!(
        (a.hdr.pid, a.listen_fd, a.fd, a.local_port),
        (me, fd, conn, port)
    );
    // SAFETY: closing this test's fds.
    unsafe {
        libc::close(conn);
        libc::close(fd);
    }
    // The closed listener is forgotten: its fd number is free for another socket.
    let (fd2, port2) = bound_socket();
    assert_eq!(fd2, fd, "the listener's fd number is reused");
    let _ = port2;
    // SAFETY: as above, on the new socket.
    assert_eq!(unsafe { libc::listen(fd2, 16) }, 0);
    // Connected only once the socket listens: a client started before listen() was refused
    // when it ran first, and accept4 then waited for good (CI hung on it once).
    let client = std::thread::spawn(move || TcpStream::connect(("127.0.0.1", port2)).is_ok());
    // SAFETY: as above.
    unsafe {
        let c = libc::accept4(fd2, std::ptr::null_mut(), std::ptr::null_mut(), 0);
        assert!(c >= 0);
        libc::close(c);
        libc::close(fd2);
    }
    assert!(client.join().unwrap());
    std::thread::sleep(Duration::from_millis(200));
    for e in common::drain(&mut ring) {
        if let Event::Accept(a) = e {
            panic!("an untracked port's accept on the reused fd: {a:?}");
        }
    }
    assert!(probes.lost().unwrap().iter().all(|(_, n)| *n == 0));
}
