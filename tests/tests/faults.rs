//! tbctl against a server that misbehaves as servers do (tests/src/faults.rs): each record's
//! error class, HTTP status and retry count, and exact record counts.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use tb_tests::{
    faults::{Fault, FaultServer},
    *,
};

/// `tbctl profile` one request at a time; returns its exit code and the records by id.
fn run(out: &Path, url: &str, requests: &str, extra: &[&str]) -> (Option<i32>, Vec<Value>) {
    let o = Command::new(bin("tbctl"))
        .args([
            "profile",
            "--url",
            url,
            "--requests",
            requests,
            "--concurrency",
            "1",
        ])
        .args(["--max-tokens", "4", "--no-daemon", "--json", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let dir = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
        .unwrap();
    let mut recs = records(&dir);
    recs.sort_by_key(|r| r["request_id"].as_u64().unwrap());
    (o.status.code(), recs)
}

fn class(r: &Value) -> &str {
    r["error_class"].as_str().unwrap_or("ok")
}

#[test]
fn each_fault_is_its_own_error_class() {
    let d = tempfile::tempdir().unwrap();
    let plan = |n: u64| match n % 5 {
        0 => Fault::Ok,
        1 => Fault::CutMidEvent,
        2 => Fault::BadJson,
        3 => Fault::Status(429),
        _ => Fault::NoDone,
    };
    let s = FaultServer::start(plan);
    let (code, recs) = run(d.path(), &s.url(), "10", &[]);
    assert_eq!(code, Some(0));
    assert_eq!(recs.len(), 10);
    let classes: Vec<&str> = recs.iter().map(class).collect();
    assert_eq!(
        classes,
        [
            "ok",
            "stream_cut",
            "malformed",
            "http",
            "stream_cut",
            "ok",
            "stream_cut",
            "malformed",
            "http",
            "stream_cut"
        ]
    );
    // A body that ends cleanly without [DONE] is cut: the server never said it was done.
    assert!(recs[4]["error"]
        .as_str()
        .unwrap()
        .contains("no end-of-stream marker"));
    for r in &recs {
        match class(r) {
            "http" => assert_eq!(r["http_status"], 429, "{r}"),
            "ok" => {
                assert_eq!(r["output_tokens"], 4, "{r}");
                assert_eq!(r["token_source"], "usage", "{r}");
            }
            _ => assert_eq!(r["success"], false),
        }
    }
    assert_eq!(s.generations.load(std::sync::atomic::Ordering::SeqCst), 10);
}

#[test]
fn a_stall_past_the_timeout_is_a_timeout_at_the_timeout() {
    let d = tempfile::tempdir().unwrap();
    let s = FaultServer::start(|n| {
        if n == 1 {
            Fault::Stall(Duration::from_secs(3))
        } else {
            Fault::Ok
        }
    });
    let (code, recs) = run(d.path(), &s.url(), "3", &["--timeout", "500ms"]);
    assert_eq!(code, Some(0));
    let classes: Vec<&str> = recs.iter().map(class).collect();
    assert_eq!(classes, ["ok", "timeout", "ok"]);
    let r = &recs[1];
    let waited = (r["t_end_ns"].as_u64().unwrap() - r["t_sent_ns"].as_u64().unwrap()) as f64 / 1e6;
    assert!(
        (500.0..1500.0).contains(&waited),
        "gave up after {waited} ms"
    );
    assert_eq!(
        r["chunks"].as_array().unwrap().len(),
        1,
        "the token before the stall is kept"
    );
}

#[test]
fn a_request_on_a_connection_closed_under_it_is_sent_once_more() {
    let d = tempfile::tempdir().unwrap();
    // Every answer closes its connection under the next request, before any response byte.
    let s = FaultServer::start(|_| Fault::DropNext);
    let (code, recs) = run(d.path(), &s.url(), "4", &[]);
    assert_eq!(code, Some(0));
    assert!(recs.iter().all(|r| r["success"] == true), "{recs:?}");
    let retries: Vec<u64> = recs
        .iter()
        .map(|r| r["retries"].as_u64().unwrap_or(0))
        .collect();
    // The first request has a fresh connection; each later one meets the closed one first.
    assert_eq!(retries, [0, 1, 1, 1]);
    assert_eq!(s.generations.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[test]
fn a_server_that_dies_mid_run_fails_the_rest_as_connect_errors() {
    let d = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(FaultServer::start(|_| Fault::Ok));
    let killer = {
        let s = s.clone();
        std::thread::spawn(move || {
            while s.generations.load(std::sync::atomic::Ordering::SeqCst) < 5 {
                std::thread::sleep(Duration::from_millis(1));
            }
            s.die();
        })
    };
    // 50 requests/s: the server dies after the 5th, well before the 20th is due.
    let (code, recs) = run(d.path(), &s.url(), "20", &["--rate", "50"]);
    killer.join().unwrap();
    assert_eq!(code, Some(0), "some requests succeeded");
    assert_eq!(recs.len(), 20, "every request has a record");
    let ok = recs.iter().filter(|r| r["success"] == true).count();
    assert!((5..=7).contains(&ok), "{ok} succeeded");
    for r in recs.iter().rev().take(10) {
        assert_eq!(class(r), "connect", "{r}");
    }
}

#[test]
fn a_retried_request_joins_the_kernel_exchange_that_was_answered() {
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).expect("start tbd (root)");
    let daemon = format!("unix:{}", sock.display());
    let s = FaultServer::start(|_| Fault::DropNext);
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &s.url(),
            "--requests",
            "4",
            "--concurrency",
            "1",
            "--max-tokens",
            "4",
            "--daemon",
            &daemon,
        ],
    );
    tbd.stop();
    let k = &summary["kernel"];
    assert_eq!(k["seen_client_side"], 4, "{k}");
    // Requests 1-3 each went out twice with one request id: the dropped attempt is counted,
    // and the answered one is the request's. (The fault server runs in this test's own
    // process; only the client side is asserted.)
    let sides = 1 + u64::from(k["seen_server_side"] == 4);
    assert_eq!(k["superseded_attempts"], 3 * sides, "{k}");
    assert_eq!(k["unmatched_exchanges"], 0, "{k}");
    let lines = jsonl(&dir.join("kernel.jsonl"));
    assert_eq!(lines.len() as u64, 4 * sides);
    for l in &lines {
        assert!(
            l["t_response_first_ns"].as_u64().unwrap_or(0) > 0,
            "a joined exchange without a response: {l}"
        );
    }
}
