//! `tbctl overhead` with tbd for real: interleaved legs without and with capture, the
//! figures from their run directories, and `--validate-only`.

use serde_json::Value;
use tb_tests::*;

#[test]
fn overhead_interleaves_legs_and_reports_each_figure() {
    let d = tempfile::tempdir().unwrap();
    let (mut tbd, sock) = start_tbd("debug", d.path()).unwrap();
    let (mut sim, port) =
        start_sim("debug", d.path(), &["--ttft", "10ms", "--itl", "2ms"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let url = format!("http://127.0.0.1:{port}");
    let out = d.path().join("runs");

    let o = tbctl(&[
        "overhead",
        "--url",
        &url,
        "--daemon",
        &daemon,
        "--validate-only",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(" loaded, 0 attached"), "{text}");
    assert!(text.contains("sensor rapl-perf: absent"), "{text}");
    assert!(text.contains("answers as openai-chat"), "{text}");

    let o = tbctl(&[
        "overhead",
        "--url",
        &url,
        "--daemon",
        &daemon,
        "--rounds",
        "2",
        "--requests",
        "30",
        "--concurrency",
        "4",
        "--max-tokens",
        "6",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", stderr(&o)));
    sim.stop();
    let legs = r["legs"].as_array().unwrap();
    let order: Vec<bool> = legs.iter().map(|l| l["capturing"] == true).collect();
    assert_eq!(order, [false, true, false, true], "A B A B");
    for l in legs {
        let dir = std::path::Path::new(l["dir"].as_str().unwrap());
        assert_eq!(
            l["capturing"] == true,
            dir.join("kernel.jsonl").exists(),
            "{l}"
        );
        assert_eq!(l["capturing"] == true, l["usage"].is_object(), "{l}");
        assert_eq!(l["requests"], 30);
    }
    let level = |name: &str| {
        r["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    assert_eq!(level("dropped events")["level"], "pass");
    assert_eq!(level("coverage")["level"], "pass", "{}", level("coverage"));
    assert!(level("coverage")["value"]
        .as_str()
        .unwrap()
        .starts_with("60 of 60 requests"));
    assert_eq!(
        level("completeness")["level"],
        "pass",
        "{}",
        level("completeness")
    );
    // Every exchange of the capturing legs (2 x 30) measured; each became queryable within a
    // drain (10 ms) and a store write of its last byte, unless it waited for its stop.
    let export = level("export latency");
    let v = export["value"].as_str().unwrap();
    assert!(
        v.starts_with("p95 ") && v.contains(" exchanges"),
        "{export}"
    );
    assert_eq!(export["level"], "pass", "{export}");
    for l in legs.iter().filter(|l| l["capturing"] == true) {
        let run: Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(l["dir"].as_str().unwrap()).join("run.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let e = &run["capture"]["export_latency"];
        assert!(e["exchanges"].as_u64().unwrap() >= 25, "{e}");
        assert!(
            e["p50_us"].as_u64().unwrap() <= e["p95_us"].as_u64().unwrap(),
            "{e}"
        );
        assert!(e["p95_us"].as_u64().unwrap() < 250_000, "{e}");
    }
    assert!(level("overhead latency")["level"].is_string());
    assert_eq!(r["latency"].as_array().unwrap().len(), 2, "TTFT and E2E");
    let any_fail = r["figures"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["level"] == "fail");
    assert_eq!(o.status.code(), Some(if any_fail { 1 } else { 0 }));

    // A target that does not answer fails validation.
    let o = tbctl(&[
        "overhead",
        "--url",
        "http://127.0.0.1:9",
        "--daemon",
        &daemon,
        "--validate-only",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"));
    tbd.stop();
}
