//! Energy end to end without the hardware: tbd reads a powercap tree, a GPU fixture and a
//! perf PMU description pointing at a PMU this kernel has, all advanced like meters, and
//! tbctl turns a run's samples into energy per source, per token and per request.

use std::{process::Command, sync::Mutex, time::Duration};

use serde_json::Value;
use tb_tests::*;

/// Two tbds sampling at 20 ms on 2 cores disturb each other's timing.
static SERIAL: Mutex<()> = Mutex::new(());

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `tbctl analyze --analysis KIND --json DIR`, which must succeed.
fn analyze_json(kind: &str, dir: &std::path::Path) -> Value {
    let o = tbctl(&[
        "analyze",
        "--analysis",
        kind,
        "--json",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn near(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: {got} is not within {:.0}% of {want}",
        rel * 100.0
    );
}

#[test]
fn a_runs_energy_per_source_token_and_request_from_fixture_sensors() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let fx = energy_fixture::standard(&d.path().join("fx"), Duration::from_millis(5));
    let args = fx.tbd_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut tbd, sock) = start_tbd_with("debug", d.path(), &args).unwrap();
    let (mut sim, port) =
        start_sim("debug", d.path(), &["--ttft", "20ms", "--itl", "5ms"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--concurrency",
            "4",
            "--requests",
            "40",
            "--max-tokens",
            "60",
            "--daemon",
            &daemon,
            "--idle-baseline",
            "2s",
        ],
    );
    let e = &summary["energy"];
    assert!(e.is_object(), "no energy section: {summary}");
    let window = f(&e["window_s"]);
    // Every domain in the total at its fixture power; cores are inside their package.
    near(
        f(&e["avg_power_w"]),
        energy_fixture::STANDARD_TOTAL_W,
        0.03,
        "host power",
    );
    near(
        f(&e["by_device_j"]["cpu"]) / window,
        100.0,
        0.03,
        "packages",
    );
    near(f(&e["by_device_j"]["dram"]) / window, 6.0, 0.05, "dram");
    near(f(&e["by_device_j"]["gpu"]) / window, 350.0, 0.03, "gpus");
    let domains: Vec<&Value> = e["domains"].as_array().unwrap().iter().collect();
    let by_name = |n: &str| domains.iter().find(|d| d["name"] == n).copied();
    // package-1's counter wraps every second: its power holds only if every wrap is undone.
    near(
        f(&by_name("cpu/package-1").unwrap()["avg_power_w"]),
        40.0,
        0.03,
        "wrapping package",
    );
    assert_eq!(by_name("cpu/package-0/core").unwrap()["in_total"], false);
    assert!(
        by_name("cpu/package-1/core").is_none(),
        "a zone without a counter is left out"
    );
    let v100 = by_name("gpu/1").unwrap();
    assert!(
        v100["method"].as_str().unwrap().contains("power x time"),
        "{v100}"
    );
    near(f(&v100["avg_power_w"]), 100.0, 0.05, "GPU from power");

    // Per token: the total over the successful requests' tokens.
    let records = records(&dir);
    let out_tokens: f64 = records.iter().map(|r| f(&r["output_tokens"])).sum();
    near(
        f(&e["j_per_output_token"]),
        f(&e["energy_j"]) / out_tokens,
        1e-9,
        "J/token",
    );
    // Per request: the requests' shares and the idle intervals add up to the window's energy.
    let req = &e["per_request"]["request_energy_j"];
    assert_eq!(req["count"], 40);
    let shared = f(&req["mean"]) * 40.0 + f(&e["unattributed_energy_j"]);
    near(
        shared,
        f(&e["energy_j"]),
        1e-6,
        "energy conserved across requests",
    );
    let pre = f(&e["per_request"]["prefill_energy_j"]["mean"]);
    let dec = f(&e["per_request"]["decode_energy_j"]["mean"]);
    near(pre + dec, f(&req["mean"]), 1e-9, "prefill + decode");
    assert!(
        pre > 0.0 && dec > pre,
        "60 tokens of decode cost more than one of prefill: {pre} {dec}"
    );
    // The baseline saw the same constant power: nothing is above idle. Within 5%: a 1 s
    // baseline read 473.9 W (3.9% high) once in CI, beside root tests filling both cores;
    // a unit or window mistake would be far off.
    let idle = &e["above_idle"];
    near(
        f(&idle["idle_power_w"]),
        energy_fixture::STANDARD_TOTAL_W,
        0.05,
        "idle power",
    );
    assert!(
        f(&idle["energy_j"]).abs() < 0.05 * f(&e["energy_j"]),
        "{idle}"
    );
    // The samples came every 20 ms while the capture ran.
    let samples = jsonl(&dir.join("energy.jsonl"));
    let mut gaps: Vec<f64> = samples
        .windows(2)
        .map(|w| (f(&w[1]["t_ns"]) - f(&w[0]["t_ns"])) / 1e6)
        .collect();
    let median = quantile(&mut gaps, 0.5);
    assert!(
        (15.0..=30.0).contains(&median),
        "median sample gap {median} ms"
    );

    // tbctl energy RUN: the figures and the series beside token throughput.
    let o = tbctl(&["energy", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("cpu/package-1") && text.contains("J/output token"),
        "{text}"
    );
    let csv = std::fs::read_to_string(dir.join("energy_series.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert!(
        header.contains(&"cpu/package-0_w")
            && header.ends_with(&["total_w", "output_tokens_per_s"]),
        "{header:?}"
    );
    let total_col = header.iter().position(|h| *h == "total_w").unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // The middle half of the 100 ms bins: their mean power is the host total. (A single bin
    // moves with the fixture meter's and the sampler's scheduling on a busy 2-core VM: one was
    // 15% off in five runs.)
    let middle = &rows[rows.len() / 4..rows.len() * 3 / 4];
    let totals: Vec<f64> = middle
        .iter()
        .map(|r| r[total_col].parse().unwrap())
        .collect();
    near(
        totals.iter().sum::<f64>() / totals.len() as f64,
        energy_fixture::STANDARD_TOTAL_W,
        0.03,
        "series total",
    );
    let tokens: f64 = rows
        .iter()
        .map(|r| r[total_col + 1].parse::<f64>().unwrap() * 0.1)
        .sum();
    near(tokens, out_tokens, 0.02, "series tokens");

    // The report has the energy section and the power plot; the regression relates a
    // request's energy to its tokens.
    let o = tbctl(&["report", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Energy") && md.contains("j_per_output_token"),
        "{md}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert!(
        report["plots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "power"),
        "{}",
        report["plots_absent"]
    );
    assert!(dir.join("plots/power.png").is_file());
    // Every request asked for 60 tokens: the regression has the 40 requests' energies but no
    // spread of tokens to fit them against.
    let a = analyze_json("regression", &dir);
    let lines = a["lines"].to_string();
    assert!(
        lines.contains("Request energy against output tokens: no fit (40 points"),
        "{lines}"
    );
    // The energy analysis: the fixture's power is constant, so power does not follow load.
    // (Its intercept extrapolates far below the bins' throughput: too noisy to assert.)
    let a = analyze_json("energy", &dir);
    let fit = &a["data"]["power_against_tokens"];
    assert!(fit["n"].as_u64().unwrap() >= 5, "{fit}");
    assert!(
        f(&fit["r2"]) < 0.8,
        "constant power does not follow load: {fit}"
    );
    near(
        f(&a["data"]["energy"]["avg_power_w"]),
        energy_fixture::STANDARD_TOTAL_W,
        0.03,
        "analysis power",
    );

    // Compare with a run twice as long: the energy figures, the per-request energy split and
    // the kernel's metrics are compared beside the client's, and an energy gate guards it.
    let (_, dir2) = profile(
        d.path(),
        &[
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--concurrency",
            "4",
            "--requests",
            "80",
            "--max-tokens",
            "60",
            "--daemon",
            &daemon,
        ],
    );
    let o = tbctl(&[
        "compare",
        dir.to_str().unwrap(),
        dir2.to_str().unwrap(),
        "--json",
        "--gate",
        "energy_j=+20%",
        "--out",
        d.path().join("cmp").to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "twice the requests, about twice the energy: {}",
        stderr(&o)
    );
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    let cmp = &c["comparisons"][0];
    let scopes: Vec<(&str, &str)> = cmp["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["scope"].as_str().unwrap(), m["metric"].as_str().unwrap()))
        .collect();
    for want in [
        ("client", "ttft_ms"),
        ("kernel", "server_ttft_ms"),
        ("energy", "request_energy_j"),
    ] {
        assert!(scopes.contains(&want), "{want:?} not compared: {scopes:?}");
    }
    let energy = cmp["rates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rate"] == "energy_j")
        .unwrap();
    assert!(f(&energy["change"]["diff_pct"]) > 50.0, "{energy}");
    assert_eq!(cmp["gates"][0]["passed"], false);

    // tbctl energy --live: one JSON line per sample with the host's power.
    let o = tbctl(&[
        "energy", "--live", "--json", "--count", "5", "--daemon", &daemon,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let mean = lines.iter().map(|l| f(&l["total_w"])).sum::<f64>() / 5.0;
    near(
        mean,
        energy_fixture::STANDARD_TOTAL_W,
        0.05,
        "live total, mean",
    );
    for l in &lines {
        near(
            f(&l["total_w"]),
            energy_fixture::STANDARD_TOTAL_W,
            0.15,
            "live total",
        );
    }
    sim.stop();
    tbd.stop();
}

#[test]
fn a_host_without_sensors_says_which_and_why() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("nosys");
    std::fs::create_dir_all(&empty).unwrap();
    let (mut tbd, sock) = start_tbd_with(
        "debug",
        d.path(),
        &["--sysfs-root", empty.to_str().unwrap()],
    )
    .unwrap();
    let (mut sim, port) = start_sim("debug", d.path(), &["--ttft", "5ms", "--itl", "1ms"]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let url = format!("http://127.0.0.1:{port}");
    let base = ["--url", &url, "--requests", "5", "--daemon", &daemon];
    let (summary, dir) = profile(d.path(), &base);
    assert!(summary.get("energy").is_none(), "{summary}");
    let note = summary["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|n| n.starts_with("energy absent"))
        .unwrap_or_else(|| panic!("no energy note: {summary}"))
        .to_string();
    for s in [
        "rapl-perf: no perf power PMU",
        "powercap: no ",
        "nvml: ",
        "amdgpu: ",
    ] {
        assert!(note.contains(s), "{s} missing from: {note}");
    }
    let o = tbctl(&["report", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Energy\n\nenergy absent: no sensor on tbd's host"),
        "{md}"
    );
    // Asking for the figures names the reason; asking for live power too; neither succeeds.
    let o = tbctl(&["energy", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no energy figures: energy absent: no sensor"),
        "{}",
        stderr(&o)
    );
    let o = tbctl(&["analyze", "--analysis", "energy", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("energy absent: no sensor"),
        "{}",
        stderr(&o)
    );
    let o = tbctl(&["energy", "--live", "--daemon", &daemon]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no energy sensor on tbd's host"),
        "{}",
        stderr(&o)
    );
    // An idle baseline cannot be measured without a sensor: refused before any load.
    let o = Command::new(bin("tbctl"))
        .arg("profile")
        .args(base)
        .args(["--idle-baseline", "1s", "--out"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--idle-baseline needs tbd's energy sensors"),
        "{}",
        stderr(&o)
    );
    sim.stop();
    tbd.stop();
}

/// A perf `power` PMU description whose energy-pkg is the software PMU's cpu-clock (type 1,
/// config 0), which counts nanoseconds: with a scale of 2.5e-9 J per count it reads 2.5 W.
fn software_pmu(root: &std::path::Path) {
    let pmu = root.join("sys/bus/event_source/devices/power");
    std::fs::create_dir_all(pmu.join("events")).unwrap();
    std::fs::create_dir_all(pmu.join("format")).unwrap();
    for (f, v) in [
        ("type", "1"),
        ("cpumask", "0"),
        ("format/event", "config:0-63"),
        ("events/energy-pkg", "event=0x00"),
        ("events/energy-pkg.scale", "2.5e-9"),
        ("events/energy-pkg.unit", "Joules"),
    ] {
        std::fs::write(pmu.join(f), v).unwrap();
    }
}

#[test]
fn the_perf_power_pmu_is_read_through_perf_event_open_and_preferred_to_powercap() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // Both a perf PMU and a powercap tree: the PMU is used, powercap reported as not needed.
    let fx = energy_fixture::standard(&d.path().join("fx"), Duration::from_millis(5));
    software_pmu(&fx.root);
    let root = fx.root.to_str().unwrap();
    let o = Command::new(bin("tbd"))
        .args(["--list-sensors", "--sysfs-root", root])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("rapl-perf present: 1 domain(s): cpu/package-0"),
        "{text}"
    );
    assert!(
        text.contains("powercap absent: not used: rapl-perf"),
        "{text}"
    );
    let (mut tbd, sock) = start_tbd_with("debug", d.path(), &["--sysfs-root", root]).unwrap();
    let daemon = format!("unix:{}", sock.display());
    let o = tbctl(&[
        "energy", "--live", "--json", "--count", "8", "--daemon", &daemon,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        near(
            f(&v["power_w"]["cpu/package-0"]),
            2.5,
            0.05,
            "cpu-clock through perf",
        );
    }
    tbd.stop();
}

#[test]
fn a_counter_tbd_may_not_read_is_absent_with_the_permission_error() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let fx = energy_fixture::standard(&d.path().join("fx"), Duration::from_millis(50));
    let zone = fx.root.join("sys/class/powercap/intel-rapl:0/energy_uj");
    std::thread::sleep(Duration::from_millis(120));
    // energy_uj is root-only on real hosts since CVE-2020-8694; the fixture rewrites it with
    // mode 0644, so stop it first and take the mode away.
    drop(fx);
    std::fs::set_permissions(&zone, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("tbd"))
        .args(["--list-sensors", "--sysfs-root"])
        .arg(d.path().join("fx"))
        .output()
        .expect("setpriv (util-linux)");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("powercap absent: permission denied reading")
            && text.contains("run tbd as root"),
        "{text}"
    );
}
