//! `tbctl report` and `tbctl plot` on a real serve-sim run: the files, their figures against
//! the run's own records, and the HTML in a real headless browser (Debian's chromium).

use std::{path::Path, process::Command};

use serde_json::Value;
use tb_tests::*;

fn chromium(args: &[&str], page: &Path) -> String {
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is not installed: run `cargo xtask setup`");
    assert!(o.status.success(), "chromium {args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn attr(dom: &str, name: &str) -> Option<u64> {
    let at = dom.find(&format!("{name}=\""))? + name.len() + 2;
    dom[at..].split('"').next()?.parse().ok()
}

#[test]
fn a_report_of_a_run_has_every_plot_its_data_allows_and_renders_in_a_browser() {
    let d = tempfile::tempdir().unwrap();
    let (mut sim, port) = start_sim(
        "debug",
        d.path(),
        &[
            "--ttft",
            "20ms",
            "--itl",
            "3ms",
            "--error-rate",
            "0.1",
            "--seed",
            "7",
        ],
    )
    .unwrap();
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--concurrency",
            "4",
            "--requests",
            "60",
            "--max-tokens",
            "8",
            "--slo",
            "ttft=1s",
            "--no-daemon",
        ],
    );
    sim.stop();
    let failed = records(&dir)
        .iter()
        .filter(|r| r["success"] == false)
        .count() as u64;
    assert!(
        failed > 0,
        "serve-sim's error rate gives failures to report"
    );

    let o = tbctl(&["report", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "tbctl report: {}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The report re-summarises the run directory: the same figures profile printed.
    assert_eq!(report["summary"], summary);
    assert_eq!(report["summary"]["requests"]["failed"], failed);
    let plots: Vec<&str> = report["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        plots,
        [
            "latency-percentiles",
            "throughput",
            "latency-over-time",
            "latency-histogram",
            "itl-cdf",
            "dispatch-lag",
            "errors"
        ]
    );
    assert_eq!(report["plots_absent"][0]["kind"], "ttft-split");
    assert!(report["plots_absent"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("without tbd"));
    for p in report["plots"].as_array().unwrap() {
        let png = std::fs::read(dir.join(p["png"].as_str().unwrap())).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{p}");
        assert!(png.len() > 10_000, "{p}: {} bytes", png.len());
        let svg = std::fs::read_to_string(dir.join(p["svg"].as_str().unwrap())).unwrap();
        assert!(svg.starts_with("<svg"), "{p}");
        // Every plot names itself and its axes.
        let title = p["title"].as_str().unwrap();
        assert!(svg.contains(title.split(':').next().unwrap()), "{p}");
        assert!(svg.matches("<text").count() > 10, "{p}: axis labels");
    }
    // Every failure misses the 1 s TTFT objective; the error rate fails above 1%.
    let checks = report["assessment"].as_array().unwrap();
    let ttft = checks
        .iter()
        .find(|c| c["name"] == "ttft <= 1000 ms")
        .unwrap();
    assert_eq!(ttft["value"].as_f64().unwrap(), (60 - failed) as f64 / 60.0);
    let errors = checks.iter().find(|c| c["name"] == "error rate").unwrap();
    assert_eq!(errors["level"], "fail");
    assert_eq!(report["overall"], "fail");
    assert!(report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["topic"] == "errors" && r["text"].as_str().unwrap().contains("HTTP 500")));

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Assessment") && md.contains("| error rate | FAIL |"),
        "{md}"
    );
    assert!(md.contains("| ttft_ms | ms | "), "{md}");
    assert!(md.contains("first chunk with non-empty (or reasoning) content - actual send time"));
    assert!(md.contains("![Throughput over time](plots/throughput.png)"));

    // The page loads offline and the browser renders every plot in it.
    let html = dir.join("report.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http://") || !page.contains("src=\"http"),
        "no remote resources"
    );
    let dom = chromium(&["--virtual-time-budget=3000", "--dump-dom"], &html);
    assert_eq!(
        attr(&dom, "data-plots-expected"),
        Some(7),
        "{}",
        &dom[..200.min(dom.len())]
    );
    assert_eq!(attr(&dom, "data-plots-rendered"), Some(7));
    let shot = d.path().join("report.png");
    chromium(
        &[
            "--window-size=1200,4000",
            &format!("--screenshot={}", shot.display()),
        ],
        &html,
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 50_000);

    // Analyses of the same run, each kept in analysis/<name>.json.
    let o = tbctl(&[
        "analyze",
        dir.to_str().unwrap(),
        "--analysis",
        "regression",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reg: Value = serde_json::from_slice(&o.stdout).unwrap();
    let fit = &reg["data"]["regression-ttft-input"];
    assert_eq!(fit["n"], 60 - failed, "{fit}");
    let (lo, hi) = (
        fit["slope_ci95"][0].as_f64().unwrap(),
        fit["slope_ci95"][1].as_f64().unwrap(),
    );
    assert!(lo <= fit["slope"].as_f64().unwrap() && fit["slope"].as_f64().unwrap() <= hi);
    // serve-sim's TTFT does not depend on the prompt: the interval holds 0.
    assert!(lo < 0.0 && hi > 0.0, "{fit}");
    assert!(dir.join("plots/regression-ttft-input.png").exists());
    assert!(dir.join("analysis/regression.json").exists());
    let o = tbctl(&[
        "analyze",
        dir.to_str().unwrap(),
        "--analysis",
        "steady-state",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        st["data"]["window"]["typical_in_flight"], 4,
        "closed loop of 4: {st}"
    );
    let inside = st["data"]["summary"]["requests"]["total"].as_u64().unwrap();
    assert!(
        inside > 40 && inside < 60,
        "ramp and drain left out: {inside}"
    );
    let o = tbctl(&["analyze", dir.to_str().unwrap(), "--analysis", "network"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no kernel.jsonl"), "{}", stderr(&o));
    let o = tbctl(&["list", "analyses"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("steady-state") && text.contains("regression"),
        "{text}"
    );

    // One plot alone, and bad input.
    std::fs::remove_file(dir.join("plots/throughput.png")).unwrap();
    let o = tbctl(&["plot", dir.to_str().unwrap(), "--kind", "throughput"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("plots/throughput.png").exists());
    let o = tbctl(&["plot", dir.to_str().unwrap(), "--kind", "pie"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("unknown plot kind 'pie'") && e.contains("ttft-split"),
        "{e}"
    );
    let o = tbctl(&["plot", dir.to_str().unwrap(), "--kind", "ttft-split"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no kernel timing"), "{}", stderr(&o));
    let o = tbctl(&["report", d.path().join("nope").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not a run directory"),
        "{}",
        stderr(&o)
    );
}
