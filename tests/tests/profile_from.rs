//! `tbctl profile --from RUN` sends a run's workload again, and `--repeat N` runs it N times
//! with confidence intervals across the runs.

use std::process::Command;

use serde_json::Value;
use tb_tests::*;

fn config(dir: &std::path::Path) -> serde_json::Map<String, Value> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    v["config"].as_object().unwrap().clone()
}

#[test]
fn from_repeats_the_workload_elsewhere_and_repeat_gives_intervals() {
    let d = tempfile::tempdir().unwrap();
    let (mut a, pa) = start_sim("debug", d.path(), &["--ttft", "5ms", "--itl", "1ms"]).unwrap();
    let (mut b, pb) = start_sim("debug", d.path(), &["--ttft", "15ms", "--itl", "1ms"]).unwrap();
    let (_, first) = profile(
        d.path(),
        &[
            "--url",
            &format!("http://127.0.0.1:{pa}"),
            "--rate",
            "200",
            "--pattern",
            "uniform",
            "--requests",
            "30",
            "--seed",
            "5",
            "--span-size",
            "small",
            "--max-tokens",
            "6",
            "--timeout",
            "20s",
            "--no-daemon",
        ],
    );
    let url_b = format!("http://127.0.0.1:{pb}");
    let (again, second) = profile(
        d.path(),
        &[
            "--from",
            first.to_str().unwrap(),
            "--url",
            &url_b,
            "--no-daemon",
        ],
    );
    assert_eq!(again["target"], url_b.as_str());
    let (mut c1, c2) = (config(&first), config(&second));
    assert_ne!(c1.remove("url"), c2.get("url").cloned());
    for (k, v) in &c1 {
        assert_eq!(Some(v), c2.get(k), "{k} differs");
    }
    assert_eq!(c2["timeout"], serde_json::json!({"secs": 20, "nanos": 0}));
    // The same prompts for the same request ids (records are written as they complete).
    let inputs = |dir| {
        let mut v: Vec<(u64, u64)> = records(dir)
            .iter()
            .map(|r| {
                (
                    r["request_id"].as_u64().unwrap(),
                    r["input_tokens"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(inputs(&first), inputs(&second));
    let o = tbctl(&[
        "compare",
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        "--out",
        d.path().join("cmp").to_str().unwrap(),
        "--json",
    ]);
    let cmp: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        cmp["comparisons"][0]["comparability"],
        serde_json::json!([])
    );

    let out = d.path().join("rep");
    let o = Command::new(bin("tbctl"))
        .args([
            "profile",
            "--from",
            first.to_str().unwrap(),
            "--repeat",
            "3",
            "--json",
        ])
        .args(["--no-daemon", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    a.stop();
    b.stop();
    let rep: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["runs"].as_array().unwrap().len(), 3);
    let ttft = rep["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "ttft_ms")
        .unwrap();
    let vals: Vec<f64> = ttft["p50"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mean = vals.iter().sum::<f64>() / 3.0;
    assert!((ttft["p50"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    let (lo, hi) = (
        ttft["p50"]["ci95"][0].as_f64().unwrap(),
        ttft["p50"]["ci95"][1].as_f64().unwrap(),
    );
    assert!(lo <= mean && mean <= hi, "{ttft}");
    let dirs = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("run.json").exists())
        .count();
    assert_eq!(dirs, 3);

    let o = tbctl(&["profile", "--from", d.path().join("nope").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a run directory"), "{}", stderr(&o));
}
