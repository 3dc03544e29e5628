//! The kernel's tables full, provoked for real (root) on a tbd started with small ones: a
//! tracked client that forks more children than `--max-pids` holds is counted `pids_full`,
//! and one with more threads blocked in connect(2) than `--max-inflight` holds is counted
//! `inflight_full`, in the run and in `tbctl daemon status`, one loss per entry that did not
//! fit.

use std::process::Command;

use serde_json::Value;
use tb_tests::*;

/// Forks 24 children that live a second each, all at once.
const FORKS: &str = r#"
import os, time
kids = []
for _ in range(24):
    pid = os.fork()
    if pid == 0:
        time.sleep(1.0)
        os._exit(0)
    kids.append(pid)
for p in kids:
    os.waitpid(p, 0)
"#;

/// Eight threads connect to a listener whose accept queue is full (backlog 0, never accepted):
/// the first connects, the other seven wait in connect(2) for a SYN-ACK that does not come.
const BLOCKED_CONNECTS: &str = r#"
import os, socket, threading, time
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(0)
port = l.getsockname()[1]
def go():
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        pass
    time.sleep(30)
for _ in range(8):
    threading.Thread(target=go, daemon=True).start()
    time.sleep(0.05)
time.sleep(1.5)
os._exit(0)
"#;

/// Runs `script` under `tbctl capture` on a tbd with `limits`; returns the run's and the
/// daemon's count of losses for `reason`.
fn losses(limits: &[&str], script: &str, reason: &str) -> (u64, u64) {
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd_with("debug", d.path(), limits).expect("start tbd (root)");
    let daemon = format!("unix:{}", sock.display());
    let o = Command::new(bin("tbctl"))
        .args([
            "capture", "--json", "--daemon", &daemon, "--", "python3", "-c", script,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run: Value = serde_json::from_slice(&o.stdout).expect("the run as JSON");
    let status: Value =
        serde_json::from_slice(&tbctl(&["daemon", "status", "--json", "--daemon", &daemon]).stdout)
            .unwrap();
    tbd.stop();
    let n = |v: &Value| v[reason].as_u64().unwrap_or(0);
    let got = (n(&run["lost"]), n(&status["lost"]));
    eprintln!("{limits:?}: {reason} {got:?} (run, daemon)");
    got
}

#[test]
fn children_past_max_pids_are_counted_as_pids_full() {
    let (in_run, in_daemon) = losses(&["--max-pids", "8"], FORKS, "pids_full");
    // The client itself and 7 children fit; each of the other 17 forks is one loss.
    assert!(
        (16..=24).contains(&in_run),
        "{in_run} pids_full for 24 children of a client in a table of 8"
    );
    assert!(
        in_daemon >= in_run,
        "{in_daemon} in the daemon, {in_run} in the run"
    );
    // With the default table nothing is lost.
    let (none, _) = losses(&[], FORKS, "pids_full");
    assert_eq!(none, 0);
}

#[test]
fn connects_past_max_inflight_are_counted_as_inflight_full() {
    let (in_run, in_daemon) = losses(&["--max-inflight", "2"], BLOCKED_CONNECTS, "inflight_full");
    // Seven threads wait in connect(2) at once; two fit.
    assert!(
        (4..=7).contains(&in_run),
        "{in_run} inflight_full for 7 blocked connects in a table of 2"
    );
    assert!(
        in_daemon >= in_run,
        "{in_daemon} in the daemon, {in_run} in the run"
    );
    let (none, _) = losses(&[], BLOCKED_CONNECTS, "inflight_full");
    assert_eq!(none, 0);
}
