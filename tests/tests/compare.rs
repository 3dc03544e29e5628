//! `tbctl compare` on real serve-sim runs: no difference between two runs of one server, a
//! significant one against a slower server, gates that exit 1, and the comparability check.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tb_tests::*;

/// One run against a fresh serve-sim with TTFT `ttft`: every server draws the same jitter
/// sequence (its seed is fixed), so two runs of one server differ by scheduling noise only,
/// far below what a significant change needs.
fn run(out: &Path, ttft: &str, seed: &str) -> PathBuf {
    let (mut sim, port) = start_sim("debug", out, &["--ttft", ttft, "--itl", "2ms"]).unwrap();
    let dir = profile(
        out,
        &[
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--concurrency",
            "8",
            "--requests",
            "80",
            "--max-tokens",
            "8",
            "--seed",
            seed,
            "--no-daemon",
        ],
    )
    .1;
    sim.stop();
    dir
}

fn compare(runs: &[&Path], extra: &[&str], out: &Path) -> (Option<i32>, Value, String) {
    let mut args = vec!["compare"];
    let paths: Vec<String> = runs.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    args.extend(extra);
    let out = out.display().to_string();
    args.extend(["--out", &out, "--json"]);
    let o = tbctl(&args);
    let json = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), json, stderr(&o))
}

fn metric<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap()
}

#[test]
fn a_slower_server_is_a_significant_change_and_fails_its_gate() {
    let d = tempfile::tempdir().unwrap();
    let a1 = run(d.path(), "20ms", "1");
    let a2 = run(d.path(), "20ms", "1");
    let b = run(d.path(), "35ms", "1");
    let other_seed = run(d.path(), "20ms", "2");

    // The same server twice: no significant TTFT change, a loose gate passes.
    let (code, r, e) = compare(
        &[&a1, &a2],
        &["--gate", "ttft_p50=+40%"],
        &d.path().join("c1"),
    );
    assert_eq!(code, Some(0), "{e}");
    let c = &r["comparisons"][0];
    assert_eq!(c["comparability"], serde_json::json!([]));
    // Only scheduling noise differs (CI saw Mann-Whitney p 0.39 on a busy machine): not a
    // significant change.
    let ttft = metric(c, "ttft_ms");
    assert_eq!(ttft["significant"], false, "{ttft}");
    assert_eq!(c["gates"][0]["passed"], true);

    // 15 ms more TTFT: significant, the interval of the median's change holds about 15 ms,
    // the p99 gate fails with exit status 1; TPOT is unchanged.
    let out = d.path().join("c2");
    let (code, r, e) = compare(
        &[&a1, &b],
        &["--gate", "ttft_p99=+5%", "--gate", "tpot_p50=+50%"],
        &out,
    );
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("gate ttft_p99=+5% failed"), "{e}");
    let c = &r["comparisons"][0];
    let ttft = metric(c, "ttft_ms");
    assert_eq!(ttft["significant"], true, "{ttft}");
    assert!(
        ttft["mann_whitney"]["p"].as_f64().unwrap() < 0.001,
        "{ttft}"
    );
    let (lo, hi) = (
        ttft["p50"]["ci95"][0].as_f64().unwrap(),
        ttft["p50"]["ci95"][1].as_f64().unwrap(),
    );
    assert!(lo > 5.0 && hi < 25.0 && lo < 15.0 && hi > 10.0, "{ttft}");
    assert_eq!(c["gates"][0]["passed"], false);
    assert_eq!(c["gates"][1]["passed"], true);
    for f in [
        "compare.md",
        "compare.html",
        "compare.json",
        "plots/cdf-overlay.png",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        md.contains("| ttft_p99=+5% |") && md.contains("| FAIL |"),
        "{md}"
    );

    // Another seed sent other prompts: the comparison says so.
    let (code, r, _) = compare(&[&a1, &other_seed], &[], &d.path().join("c3"));
    assert_eq!(code, Some(0));
    let warnings = r["comparisons"][0]["comparability"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("seed differs")),
        "{warnings:?}"
    );

    // Bad input: one line, exit 2.
    let (code, _, e) = compare(
        &[&a1, &a2],
        &["--gate", "ttft_p99=5%"],
        &d.path().join("c4"),
    );
    assert_eq!(code, Some(2));
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("bad --gate 'ttft_p99=5%'"), "{e}");
}
