//! The connect probe, for real: needs root (as CI runs), loads the embedded eBPF object.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    process::Command,
    time::{Duration, Instant},
};

use tbd::{events::Event, probes::Probes};

#[test]
fn tracked_connect_arrives_and_untracked_does_not() {
    let mut probes =
        Probes::load(&["tb_enter_connect", "tb_exit_connect"]).expect("load eBPF (run as root)");
    probes.attach().expect("attach");
    let mut ring = probes.take_ring().unwrap();
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

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut mine = Vec::new();
    let mut others = Vec::new();
    while Instant::now() < deadline && mine.is_empty() {
        while let Some(item) = ring.next() {
            if let Some(Event::Connect(c)) = Event::decode(&item) {
                if c.hdr.pid == me {
                    mine.push(c);
                } else {
                    others.push(c);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give late events from the child a chance to show up before asserting their absence.
    std::thread::sleep(Duration::from_millis(100));
    while let Some(item) = ring.next() {
        if let Some(Event::Connect(c)) = Event::decode(&item) {
            others.push(c);
        }
    }
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
