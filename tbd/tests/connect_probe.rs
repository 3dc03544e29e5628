//! The connect probe, for real: needs root (as CI runs), loads the embedded eBPF object.

mod common;

use std::{net::TcpListener, os::unix::process::CommandExt, process::Command, time::Duration};

use tbd::events::Event;

#[test]
fn tracked_connect_arrives_and_untracked_does_not() {
    let (mut probes, mut ring) = common::attached(&["tb_enter_connect", "tb_exit_connect"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    // Untracked: a child process connects to the same listener.
    let mut child = Command::new("bash");
    child.args([
        "-c",
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 0.2"),
    ]);
    // SAFETY: setsid in the child only.
    unsafe {
        child.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = child.spawn().unwrap();
    let child_pid = child.id();

    let me = std::process::id();
    probes.track_pid(me).unwrap();
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(child.wait().unwrap().success());

    let mut events = common::drain_until(&mut ring, |evs| {
        evs.iter()
            .any(|e| matches!(e, Event::Connect(c) if c.hdr.pid == me))
    });
    // Give late events from the child a chance to show up before asserting their absence.
    std::thread::sleep(Duration::from_millis(100));
    events.extend(common::drain(&mut ring));
    let (mine, others): (Vec<_>, Vec<_>) = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Connect(c) => Some(c),
            _ => None,
        })
        .partition(|c| c.hdr.pid == me);
    assert_eq!(mine.len(), 1, "exactly one tracked connect: {mine:?}");
    let c = mine[0];
    let dst = tbd::events::socket_addr(&c.dst).unwrap();
    assert_eq!(dst.to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(c.ret, 0, "blocking connect to a listener succeeds");
    assert!(c.hdr.ts_ns >= c.ts_enter_ns);
    assert_eq!(c.fd, std::os::fd::AsRawFd::as_raw_fd(&conn));
    assert!(
        others.iter().all(|o| o.hdr.pid != child_pid),
        "untracked child's connect leaked through: {others:?}"
    );
    assert!(probes.lost().unwrap().iter().all(|(_, n)| *n == 0));
}
