//! A server that forks a worker during the capture (a respawned or added worker sharing the
//! listening socket): the worker's accepts on the inherited fd are tracked (real kernel, root).

mod common;

use std::{
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
};

use tbd::{events::Event, probes::Probes};

#[test]
fn a_worker_forked_by_the_listener_holder_is_tracked() {
    let mut probes = Probes::load(&[
        "tb_enter_accept4",
        "tb_exit_accept4",
        "tb_fork",
        "tb_exit_process",
    ])
    .expect("load eBPF (run as root)");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    let me = std::process::id();
    // As tbd does at capture start: the port, and this process as its listener's holder.
    probes.track_port(port).unwrap();
    probes.track_listener(me, fd as u32, port).unwrap();
    probes.attach().expect("attach");
    let mut ring = probes.take_ring().unwrap();

    // SAFETY: the child makes raw syscalls only and never returns into the test harness.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        unsafe {
            let c = libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0);
            libc::_exit(if c >= 0 { 0 } else { 1 });
        }
    }
    let child = child as u32;
    assert!(
        probes.tgid_tracked(child).unwrap(),
        "the worker passes the filter"
    );
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut status = 0;
    // SAFETY: waiting for this test's own child.
    assert_eq!(
        unsafe { libc::waitpid(child as i32, &mut status, 0) },
        child as i32
    );
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    drop(conn);

    let accepts: Vec<_> = common::drain_until(&mut ring, |evs| {
        evs.iter().any(|e| matches!(e, Event::Accept(_)))
    })
    .into_iter()
    .filter_map(|e| match e {
        Event::Accept(a) => Some(a),
        _ => None,
    })
    .collect();
    assert_eq!(accepts.len(), 1, "the worker's accept");
    let a = accepts[0];
    assert_eq!((a.hdr.pid, a.listen_fd, a.local_port), (child, fd, port));
    // The worker has exited: forgotten; clearing the filters leaves nothing.
    assert!(!probes.tgid_tracked(child).unwrap());
    probes.clear_filters(0).unwrap();
    assert!(!probes.tgid_tracked(me).unwrap());
    assert!(probes.lost().unwrap().iter().all(|(_, n)| *n == 0));
}
