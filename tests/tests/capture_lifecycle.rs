//! tbd for real (root), its captures' life: status while captures start and stop, the store
//! reopened mid-capture, and crashes on either side (kill -9 of tbd, of the client) leaving a
//! readable store and no capture behind.

use std::{sync::Mutex, time::Duration};

use tb_tests::*;

/// One capture at a time on 2 cores, as in kernel_capture.rs.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `tbctl ARGS`; None when it has not finished within `secs` (it is killed).
fn tbctl_within(args: &[&str], secs: u64) -> Option<std::process::Output> {
    let mut c = std::process::Command::new(bin("tbctl"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if c.try_wait().unwrap().is_some() {
            return Some(c.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

/// Status calls while captures start and stop. A status call once held the probes while it
/// waited for the capture state, and a starting capture held them the other way round: both
/// hung for good.
#[test]
fn status_while_captures_start_and_stop_never_hangs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let daemon = format!("unix:{}", sock.display());
    let mut sleeper = std::process::Command::new("sleep")
        .arg("120")
        .spawn()
        .unwrap();
    let pid = sleeper.id().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pollers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, daemon) = (stop.clone(), daemon.clone());
            std::thread::spawn(move || {
                let mut calls = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let o = tbctl_within(&["daemon", "status", "--json", "--daemon", &daemon], 20);
                    assert!(
                        o.is_some_and(|o| o.status.success()),
                        "status hung or failed"
                    );
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    for i in 0..12 {
        let o = tbctl_within(
            &[
                "capture",
                "--pid",
                &pid,
                "--duration",
                "30ms",
                "--daemon",
                &daemon,
            ],
            30,
        );
        let o = o.unwrap_or_else(|| panic!("capture {i} hung"));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pollers {
        assert!(p.join().unwrap() > 0);
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    tbd.stop();
}

/// tbd closes and reopens sled to give its memory back (here after every 0.1 MiB moved; the
/// store compresses, so 8,000 requests store about half a MiB): no
/// record may be lost to it, whether it happens during the capture, while the client records
/// are uploaded, or during the queries.
#[test]
fn reopening_the_store_during_a_capture_loses_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) =
        start_tbd_with("debug", d.path(), &["--store-release-mib", "0.1"]).unwrap();
    let (mut sim, port) = start_sim("debug", d.path(), &["--ttft", "0", "--itl", "0"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let url = format!("http://127.0.0.1:{port}");
    let args = [
        "--url",
        &url,
        "--rate",
        "1000",
        "--duration",
        "8s",
        "--max-tokens",
        "16",
        "--daemon",
        &daemon,
    ];
    let (summary, dir) = std::thread::scope(|s| {
        let run = s.spawn(|| profile(d.path(), &args));
        // Reopens counted while the capture runs, from the daemon's own status.
        let mut during = 0;
        while !run.is_finished() {
            let o = tbctl(&["daemon", "status", "--daemon", &daemon, "--json"]);
            if let Ok(info) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                if info["active_run"] != "" {
                    during = during.max(info["store_reopens"].as_u64().unwrap_or(0));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            during >= 2,
            "sled reopened {during} times during the capture"
        );
        run.join().unwrap()
    });
    sim.stop();
    let k = &summary["kernel"];
    let n = k["requests"].as_u64().unwrap_or_else(|| {
        let log = std::fs::read_to_string(d.path().join("tbd.log")).unwrap_or_default();
        panic!("no kernel summary: {}\ntbd's log:\n{log}", summary["notes"])
    });
    assert!(n > 1000, "{k}");
    assert_eq!(k["seen_client_side"], n, "{k}");
    assert_eq!(k["seen_server_side"], n, "{k}");
    assert_sides_agree(&dir.join("kernel.jsonl"));
    let run_id = summary["run_id"].as_str().unwrap();
    let o = tbctl(&["runs", "show", run_id, "--daemon", &daemon]);
    let run: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        run["client_records"], n,
        "every uploaded client record kept"
    );
    assert!(run["exchanges"].as_u64().unwrap() >= 2 * n, "{run}");
    tbd.stop();
}

#[test]
fn kill_9_mid_run_leaves_a_readable_store() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // Sled is also closed and reopened every 0.1 MiB, so the kill may land in or near a reopen.
    let (mut tbd, sock) =
        start_tbd_with("debug", d.path(), &["--store-release-mib", "0.1"]).unwrap();
    let (mut sim, port) = start_sim("debug", d.path(), &["--ttft", "5ms", "--itl", "2ms"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let out = d.path().join("runs");
    let url = format!("http://127.0.0.1:{port}");
    let mut child = spawn_profile(
        &out,
        &[
            "--url",
            &url,
            "--rate",
            "50",
            "--requests",
            "400",
            "--daemon",
            &daemon,
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    // The arrival program is attached to the cgroup root while tbd captures; the kernel takes
    // it off when tbd dies (its link goes with tbd's file descriptors).
    let attached = cgroup_ingress_programs();
    assert!(
        attached >= 1,
        "tbd's arrival program attached while capturing"
    );
    tbd.child.kill().unwrap();
    tbd.child.wait().unwrap();
    let t0 = std::time::Instant::now();
    while cgroup_ingress_programs() != attached - 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "tbd's arrival program stayed attached after tbd was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    sim.stop();
    // Restart on the same store, the dead tbd's socket file still there (tbd replaces a
    // stale one): the run is closed as interrupted and its counts are what a query returns.
    assert!(sock.exists(), "the killed tbd left its socket behind");
    let (mut tbd2, _) = start_tbd("debug", d.path()).unwrap();
    let t0 = std::time::Instant::now();
    while !tbctl(&["daemon", "status", "--daemon", &daemon])
        .status
        .success()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "tbd did not come back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = tbctl(&["runs", "--daemon", &daemon, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let run = &runs.as_array().unwrap()[0];
    assert!(run["end_ns"].as_u64().unwrap() > 0, "closed: {run}");
    assert!(
        run["end_reason"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{run}"
    );
    let id = run["run_id"].as_str().unwrap();
    let t = trace_json(id, Some(&daemon));
    let queried = t["client_exchanges"].as_u64().unwrap() + t["server_exchanges"].as_u64().unwrap();
    assert!(queried > 0, "{t}");
    assert_eq!(run["exchanges"].as_u64().unwrap(), queried, "{run}");
    tbd2.stop();
    // Retention applies to it: a tbd keeping runs for 1 s deletes it at start.
    let (mut tbd3, _) = start_tbd_with("debug", d.path(), &["--retention-age", "1s"]).unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let o = tbctl(&["runs", "--daemon", &daemon, "--json"]);
        if o.status.success() {
            let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if runs.as_array().unwrap().is_empty() {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "retention kept the run"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    tbd3.stop();
}

fn daemon_info(daemon: &str) -> serde_json::Value {
    let o = tbctl(&["daemon", "status", "--daemon", daemon, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn stored_run(daemon: &str, id: &str) -> serde_json::Value {
    let o = tbctl(&["runs", "show", id, "--daemon", daemon]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A client killed mid-capture stops renewing its lease: tbd ends the capture as abandoned
/// within the lease (10 s), detaches every probe, and the next profile runs. A capture can
/// also be stopped by hand.
#[test]
fn a_killed_client_leaves_no_capture_behind() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).unwrap();
    let (mut sim, port) = start_sim("debug", d.path(), &["--ttft", "5ms", "--itl", "2ms"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let url = format!("http://127.0.0.1:{port}");
    let out = d.path().join("runs");
    let mut child = spawn_profile(
        &out,
        &[
            "--url",
            &url,
            "--rate",
            "20",
            "--duration",
            "60s",
            "--daemon",
            &daemon,
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let run_id = daemon_info(&daemon)["active_run"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!run_id.is_empty(), "the profile is capturing");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = std::time::Instant::now();
    while !daemon_info(&daemon)["active_run"]
        .as_str()
        .unwrap()
        .is_empty()
    {
        assert!(
            killed.elapsed() < Duration::from_secs(14),
            "the capture outlived its 10 s lease by 4 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let info = daemon_info(&daemon);
    let attached: Vec<_> = info["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["attached"] == true)
        .collect();
    assert!(attached.is_empty(), "probes left attached: {attached:?}");
    let run = stored_run(&daemon, &run_id);
    assert!(
        run["end_reason"].as_str().unwrap().starts_with("abandoned"),
        "{run}"
    );
    assert!(run["end_ns"].as_u64().unwrap() > 0);
    assert!(run["exchanges"].as_u64().unwrap() > 0, "{run}");

    // The next profile is not refused.
    let (summary, _) = profile(
        d.path(),
        &["--url", &url, "--requests", "5", "--daemon", &daemon],
    );
    assert_eq!(summary["kernel"]["seen_client_side"], 5, "{summary}");
    sim.stop();

    // By hand: a capture whose client is gone, stopped at once.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut cap = std::process::Command::new(bin("tbctl"))
        .args([
            "capture",
            "--pid",
            &sleeper.id().to_string(),
            "--daemon",
            &daemon,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let id = loop {
        let id = daemon_info(&daemon)["active_run"]
            .as_str()
            .unwrap()
            .to_string();
        if !id.is_empty() {
            break id;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "capture did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    cap.kill().unwrap();
    cap.wait().unwrap();
    let o = tbctl(&["capture", "stop", "--daemon", &daemon]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("stopped run {id}")));
    assert_eq!(stored_run(&daemon, &id)["end_reason"], "stopped");
    let o = tbctl(&["capture", "stop", "--daemon", &daemon]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no capture is running"),
        "{}",
        stderr(&o)
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    tbd.stop();
}

/// A client that connects when `go1` appears, makes one streamed request, creates `done1`,
/// then, when `go2` appears, makes two more on the same connection, closes it and creates
/// `done2`. Its files' directory and the server's port are its arguments.
const PY_OUTLIVES_CAPTURE: &str = r#"
import http.client, json, os, sys, time
d, port = sys.argv[1], int(sys.argv[2])
def wait(name):
    while not os.path.exists(os.path.join(d, name)):
        time.sleep(0.02)
def ask(c):
    body = json.dumps({"model": "sim-model", "stream": True, "max_tokens": 8,
                       "messages": [{"role": "user", "content": "hi"}]})
    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.status
    r.read()
wait("go1")
c = http.client.HTTPConnection("127.0.0.1", port)
ask(c)
open(os.path.join(d, "done1"), "w").close()
wait("go2")
ask(c)
ask(c)
c.close()
open(os.path.join(d, "done2"), "w").close()
"#;

/// A connection tracked by one capture and still open at its end is not tracked by the next:
/// its segments, state changes and close reach no later capture (whose probes would otherwise
/// pay for them, and whose tracker would count them as orphans). Both of the kernel's socket
/// tables (by pid and fd, by socket address) are emptied at a capture's stop.
#[test]
fn a_connection_open_past_its_capture_is_not_tracked_by_the_next() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let (mut sim, port) = start_sim("debug", d.path(), &["--ttft", "2ms", "--itl", "1ms"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let (dir, port_s) = (d.path().to_string_lossy().into_owned(), port.to_string());
    let mut client = std::process::Command::new("python3")
        .args(["-c", PY_OUTLIVES_CAPTURE, &dir, &port_s])
        .spawn()
        .unwrap();
    // Capture 1 tracks the server's side of the client's connection (accepted during it) and
    // ends with the connection open.
    // Step `n` of the client: started by `go{n}`, finished at `done{n}`.
    let step =
        |n: u32| format!("touch {dir}/go{n}; while [ ! -e {dir}/done{n} ]; do sleep 0.02; done");
    let capture = |ports: &str, script: &str| {
        let o = tbctl(&[
            "capture", "--port", ports, "--daemon", &daemon, "--json", "--", "sh", "-c", script,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let first = capture(&port_s, &step(1));
    // Capture 2 follows another port while the client uses and closes the same connection.
    let second = capture("1", &step(2));
    assert!(client.wait().unwrap().success());
    sim.stop();
    tbd.stop();
    assert_eq!(first["exchanges"], 1, "{first}");
    assert_eq!(
        (&second["exchanges"], &second["connections"]),
        (&0.into(), &0.into()),
        "{second}"
    );
    // tbd logs its tracker's counts at each stop: nothing of the old connection reached the
    // second capture.
    let log = std::fs::read_to_string(d.path().join("tbd.log")).unwrap();
    let stops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("capture stopped"))
        .collect();
    assert_eq!(stops.len(), 2, "{log}");
    for orphan in [
        "orphan_arrivals: 0",
        "orphan_retransmits: 0",
        "orphan_data: 0",
    ] {
        assert!(stops[1].contains(orphan), "{orphan} in {}", stops[1]);
    }
}
