//! Losses the kernel side counts, provoked for real (root): a capture whose reader is stopped
//! fills the ring buffer, and the run and `tbctl daemon status` report `ringbuf_full`
//! instead of losing events silently.

use std::{
    io::{Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tb_tests::*;

/// 1-byte ping-pongs: every direction change of the tracked client is one ring buffer event.
const PING_PONG: &str = r#"
import socket, sys, time
port, done = int(sys.argv[1]), sys.argv[2]
time.sleep(1.5)  # the test stops tbd's reader meanwhile
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(40000):
    s.sendall(b"x")
    s.recv(1)
s.close()
open(done, "w").close()
"#;

#[test]
fn a_ring_buffer_filled_while_tbd_stalls_is_counted_as_ringbuf_full() {
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let daemon = format!("unix:{}", sock.display());
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut c, _) = echo.accept().unwrap();
        c.set_nodelay(true).unwrap();
        let mut b = [0u8; 1];
        while c.read_exact(&mut b).is_ok() {
            if c.write_all(&b).is_err() {
                break;
            }
        }
    });
    let done = d.path().join("done");
    let capture = Command::new(bin("tbctl"))
        .args([
            "capture", "--json", "--daemon", &daemon, "--", "python3", "-c", PING_PONG,
        ])
        .arg(port.to_string())
        .arg(&done)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The capture runs before the command starts; stop tbd before the command's traffic.
    std::thread::sleep(Duration::from_millis(800));
    let pid = tbd.child.id() as i32;
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let t0 = Instant::now();
    while !done.exists() && t0.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        done.exists(),
        "the ping-pong did not finish while tbd was stopped"
    );
    let o = capture.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run: Value = serde_json::from_slice(&o.stdout).expect("the run as JSON");
    let lost = |v: &Value| v["ringbuf_full"].as_u64().unwrap_or(0);
    let in_run = lost(&run["lost"]);
    assert!(in_run > 0, "no ringbuf_full in the run: {run}");
    // tbd's own counters say the same, and it went on storing what it could take.
    let o = tbctl(&["daemon", "status", "--json", "--daemon", &daemon]);
    assert!(o.status.success(), "{}", stderr(&o));
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(lost(&status["lost"]) >= in_run, "{status}");
    assert!(status["events_stored"].as_u64().unwrap() > 0, "{status}");
    tbd.stop();
}
