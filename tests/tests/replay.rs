//! An event log (`tbd --record-events`) holds everything a live capture's tracker took, in
//! order: replayed through the same code, it gives back exactly the exchanges and connections
//! the live tbd stored. That is what makes `cargo xtask bench replay` measure the real thing.

use std::sync::Arc;

use tb_proto::v1::{Connection, Exchange};
use tb_tests::*;
use tbd::{replay, store::Store};

#[test]
fn a_recorded_capture_replays_to_what_tbd_stored() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("events.log");
    let log_arg = log.to_string_lossy().into_owned();
    let (mut tbd, sock) = start_tbd_with("debug", d.path(), &["--record-events", &log_arg])
        .expect("start tbd (root)");
    let (mut sim, port, _truth) =
        start_sim_with_truth(d.path(), &["--ttft", "5ms", "--itl", "1ms"]);
    let daemon = format!("unix:{}", sock.display());
    profile(
        d.path(),
        &[
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--concurrency",
            "8",
            "--requests",
            "40",
            "--max-tokens",
            "12",
            "--daemon",
            &daemon,
        ],
    );
    sim.stop();
    tbd.stop();

    let live_x = assert_replay_matches(d.path(), &log);
    assert_eq!(
        live_x.iter().filter(|x| x.side == "client").count(),
        40,
        "every request captured live"
    );
}

/// Replays `log` and asserts it gives exactly the exchanges and connections that the live tbd
/// stored under `dir/data` (one run); returns the live exchanges.
fn assert_replay_matches(dir: &std::path::Path, log: &std::path::Path) -> Vec<Exchange> {
    let live = Store::open(&dir.join("data")).unwrap();
    let runs = live.list_runs().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    let mut live_x: Vec<Exchange> = live.all(&run.run_id).unwrap();
    let mut live_c: Vec<Connection> = live.all(&run.run_id).unwrap();
    let replayed = Arc::new(Store::open(&dir.join("replayed")).unwrap());
    let got = replay::replay(replay::load(log).unwrap(), replayed.clone(), &run.run_id).unwrap();
    assert_eq!(
        (got.exchanges, got.connections),
        (run.exchanges, run.connections)
    );
    let mut re_x: Vec<Exchange> = replayed.all(&run.run_id).unwrap();
    let mut re_c: Vec<Connection> = replayed.all(&run.run_id).unwrap();
    let key = |x: &Exchange| (x.side.clone(), x.conn_id, x.seq);
    live_x.sort_by_key(key);
    re_x.sort_by_key(key);
    live_c.sort_by_key(|c| (c.side.clone(), c.conn_id));
    re_c.sort_by_key(|c| (c.side.clone(), c.conn_id));
    assert!(
        live_x.iter().any(|x| !x.arrivals.is_empty()),
        "arrivals are in the log"
    );
    for (l, r) in live_x.iter().zip(&re_x) {
        assert!(
            l == r,
            "replayed exchange differs:\nlive     {l:?}\nreplayed {r:?}"
        );
    }
    assert_eq!(live_x.len(), re_x.len());
    assert!(
        live_c == re_c,
        "replayed connections differ from the live ones"
    );
    live_x
}

/// Three streamed requests on one keep-alive connection, which is then held open past the
/// capture's end: the chunks after each side's last direction change are still held in the
/// kernel when the capture stops.
const PY_HOLDS_CONNECTION: &str = r#"
import http.client, json, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(3):
    body = json.dumps({"model": "sim-model", "stream": True, "max_tokens": 12,
                       "messages": [{"role": "user", "content": "hi"}]})
    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.status
    while r.read(64):
        pass
time.sleep(4)
"#;

#[test]
fn chunks_held_in_the_kernel_at_the_stop_are_in_the_log() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("events.log");
    let log_arg = log.to_string_lossy().into_owned();
    let (mut tbd, sock) = start_tbd_with("debug", d.path(), &["--record-events", &log_arg])
        .expect("start tbd (root)");
    let (mut sim, port) = start_sim("debug", d.path(), &["--ttft", "2ms", "--itl", "1ms"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let port_s = port.to_string();
    let o = tbctl(&[
        "capture",
        "--port",
        &port_s,
        "--duration",
        "2s",
        "--daemon",
        &daemon,
        "--json",
        "--",
        "python3",
        "-c",
        PY_HOLDS_CONNECTION,
        &port_s,
    ]);
    sim.stop();
    tbd.stop();
    assert!(o.status.success(), "{}", stderr(&o));
    let live_x = assert_replay_matches(d.path(), &log);
    let sides = |s: &str| live_x.iter().filter(|x| x.side == s).count();
    assert_eq!((sides("client"), sides("server")), (3, 3), "{live_x:?}");
    // The last response's chunks, held when the capture stopped, are all there.
    for x in &live_x {
        assert!(x.chunks.len() >= 12, "{x:?}");
    }
}
