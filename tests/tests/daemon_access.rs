//! tbd as another user meets it: the socket is for root and its group only, a user outside
//! the group gets one line saying which group to join; /healthz and /metrics on loopback.

use std::{io::Read, io::Write, os::unix::fs::MetadataExt, process::Command};

use tb_tests::*;

/// `tbctl daemon status` as uid/gid 65534 (nobody), with `groups` as its supplementary groups.
fn status_as_nobody(daemon: &str, groups: &str) -> std::process::Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.arg(format!("--groups={groups}"));
    }
    c.arg(bin("tbctl"))
        .args(["daemon", "status", "--daemon", daemon])
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn only_root_and_the_sockets_group_may_use_tbd() {
    let d = tempfile::tempdir().unwrap();
    // The directory must be reachable for the other user; the socket's own mode decides.
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (mut tbd, sock) = start_tbd_with("debug", d.path(), &["--socket-group", "adm"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!(m.mode() & 0o777, 0o660, "mode {:o}", m.mode() & 0o777);
    assert_eq!(m.gid(), 4, "group adm");

    let o = status_as_nobody(&daemon, "");
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("permission denied; add yourself to group adm"),
        "{e}"
    );
    let o = status_as_nobody(&daemon, "4");
    assert!(o.status.success(), "a member of adm: {}", stderr(&o));
    tbd.stop();
}

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn healthz_and_metrics_answer_on_loopback_only() {
    let d = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = format!("127.0.0.1:{port}");
    let (mut tbd, sock) = start_tbd_with("debug", d.path(), &["--http", &http]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let h = get(port, "/healthz");
    assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("ok\n"), "{h}");
    let (mut sim, sim_port) =
        start_sim("debug", d.path(), &["--ttft", "1ms", "--itl", "1ms"]).unwrap();
    profile(
        d.path(),
        &[
            "--url",
            &format!("http://127.0.0.1:{sim_port}"),
            "--requests",
            "5",
            "--daemon",
            &daemon,
        ],
    );
    sim.stop();
    let m = get(port, "/metrics");
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {m}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value("tbd_capture_active"), 0.0);
    // Five requests, both sides: at least ten exchanges stored.
    assert!(value("tbd_records_stored_total") >= 10.0, "{m}");
    assert!(value("tbd_events_received_total") > 0.0, "{m}");
    assert!(m.contains("# TYPE tbd_events_lost_total counter"), "{m}");
    tbd.stop();

    // Never beyond loopback.
    let o = Command::new(bin("tbd"))
        .args(["--http", "0.0.0.0:9464", "--socket"])
        .arg(d.path().join("x.sock"))
        .arg("--data-dir")
        .arg(d.path().join("x"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("0.0.0.0"), "{e}");
}
