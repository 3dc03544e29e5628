//! `tbctl sweep` against serve-sim with a fixed number of slots: the saturation point is found
//! where the slots run out, by concurrency and by rate.

use serde_json::Value;
use tb_tests::*;

fn sweep(args: &[&str]) -> (Option<i32>, Value, String) {
    let o = tbctl(&[&["sweep"], args, &["--json", "--no-daemon"]].concat());
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v, stderr(&o))
}

#[test]
fn the_saturation_point_is_where_the_servers_slots_run_out() {
    let d = tempfile::tempdir().unwrap();
    let (mut sim, port) = start_sim(
        "debug",
        d.path(),
        &[
            "--slots", "4", "--ttft", "20ms", "--itl", "2ms", "--jitter", "0.2",
        ],
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let out = d.path().to_str().unwrap();
    let common = [
        "--url",
        &url,
        "--requests",
        "60",
        "--max-tokens",
        "8",
        "--out",
        out,
    ];

    // Concurrency 1, 2, 4, 8: throughput stops rising past the 4 slots, and the sweep stops.
    let (code, s, e) = sweep(&[&common[..], &["--auto", "concurrency"]].concat());
    assert_eq!(code, Some(0), "{e}");
    let loads: Vec<f64> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["load"].as_f64().unwrap())
        .collect();
    assert_eq!(loads, [1.0, 2.0, 4.0, 8.0], "{s}");
    assert_eq!(s["saturation_point"], 4.0, "{s}");
    // Past 4 slots a doubled concurrency adds little throughput, and the extra requests wait
    // for a slot (about 35 ms on a 20 ms TTFT): either rule names the knee.
    let last = s["steps"][3]["saturated"].as_str().unwrap_or_default();
    assert!(
        last.contains("output throughput rose only") || last.contains("requests queue"),
        "{s}"
    );
    // Each step is a run directory of its own.
    for x in s["steps"].as_array().unwrap() {
        assert!(std::path::Path::new(x["dir"].as_str().unwrap())
            .join("summary.json")
            .exists());
    }

    // Open loop: 4 slots of about 35 ms serve about 115 req/s; 400 req/s offered is not served.
    let (code, s, e) = sweep(&[&common[..], &["--rates", "20,400"]].concat());
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(s["saturation_point"], 20.0, "{s}");
    // Queueing (TTFT growth) or the rate served names it, whichever rule comes first.
    let over = &s["steps"][1];
    assert!(over["saturated"].is_string(), "{over}");
    assert!(
        over["request_throughput"].as_f64().unwrap() < 0.9 * 400.0,
        "{over}"
    );
    let dir = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("sweep.md").exists())
        .unwrap();
    assert!(dir.join("plots/sweep.png").exists() && dir.join("sweep.html").exists());
    sim.stop();

    let (code, _, e) = sweep(&["--url", &url, "--auto", "speed"]);
    assert_eq!(code, Some(2));
    assert!(e.contains("bad --auto 'speed'"), "{e}");
}
