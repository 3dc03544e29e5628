//! `tbctl profile` against a real serve-sim process, checked against the server's own log.

use std::{process::Command, time::Duration};

use tb_tests::*;
use tbctl::workload::{Pattern, SpanSize};

fn sim(dir: &std::path::Path, args: &[&str]) -> (Bg, String) {
    let (bg, port) = start_sim("debug", dir, args).expect("start serve-sim");
    (bg, format!("http://127.0.0.1:{port}"))
}

#[test]
fn streamed_records_match_the_servers_ground_truth() {
    let d = tempfile::tempdir().unwrap();
    let truth = d.path().join("truth.jsonl");
    let t = truth.to_str().unwrap();
    let (mut s, url) = sim(
        d.path(),
        &[
            "--ttft", "30ms", "--itl", "5ms", "--jitter", "0.5", "--truth", t,
        ],
    );
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &url,
            "--concurrency",
            "8",
            "--requests",
            "40",
            "--max-tokens",
            "12",
            "--no-daemon",
        ],
    );
    s.stop();
    assert_eq!(summary["requests"]["succeeded"], 40);
    assert_eq!(summary["api"], "openai-chat", "detected from /v1/models");
    assert_eq!(summary["model"], "sim-model", "first model of /v1/models");
    assert!(summary["metrics"]["tpot_ms"]["formula"]
        .as_str()
        .unwrap()
        .contains("output_tokens - 1"));
    let truth = truth_by_id(&truth);
    let recs = records(&dir);
    assert_eq!(recs.len(), 40);
    let (mut ttft_err, mut gap_err) = (Vec::new(), Vec::new());
    for r in &recs {
        assert_eq!(r["output_tokens"], 12, "from usage");
        assert_eq!(r["token_source"], "usage");
        let id = r["request_id"].as_u64().unwrap();
        let t = &truth[&id];
        let (c, tc) = (chunk_times(r), chunk_times(t));
        assert_eq!(
            c.len(),
            tc.len(),
            "one record chunk per server content chunk (prelude excluded)"
        );
        let sent = r["t_sent_ns"].as_u64().unwrap();
        let first = r["t_first_token_ns"].as_u64().unwrap();
        // The client's send stamp precedes the server's read; its first-token stamp follows the
        // server's write: both differences are small and positive.
        assert!(sent < t["t_read_ns"].as_u64().unwrap());
        assert!(first >= tc[0]);
        let client_ttft = (first - sent) as f64;
        let true_ttft = (tc[0] - t["t_read_ns"].as_u64().unwrap()) as f64;
        ttft_err.push((client_ttft - true_ttft).abs() / 1e6);
        for i in 1..c.len() {
            let cg = c[i] as f64 - c[i - 1] as f64;
            let tg = tc[i] as f64 - tc[i - 1] as f64;
            gap_err.push((cg - tg).abs() / 1e6);
        }
        // Causality, chunk by chunk: no chunk is stamped before the server wrote it.
        for (i, (ci, ti)) in c.iter().zip(&tc).enumerate() {
            assert!(ci >= ti, "request {id} chunk {i} stamped before its write");
        }
        // The record's derived figures are its own stamps by the formulas, exactly.
        let ms = |a: u64, b: u64| (a - b) as f64 / 1e6;
        assert_eq!(r["ttft_ms"].as_f64().unwrap(), ms(first, sent));
        let last = r["t_last_token_ns"].as_u64().unwrap();
        assert_eq!(last, *c.last().unwrap());
        let e2e = ms(last, sent);
        assert_eq!(r["e2e_ms"].as_f64().unwrap(), e2e);
        let tpot = (e2e - ms(first, sent)) / 11.0;
        assert!((r["tpot_ms"].as_f64().unwrap() - tpot).abs() < 1e-9);
        assert!(
            r["ttft_ms"].as_f64().unwrap() >= 15.0,
            "configured TTFT 30ms ±50%"
        );
    }
    // Debug build on a shared 2-core machine: loose bounds here that only a real error (a
    // chunk stamped at the wrong read, a lost wake-up) breaks; `cargo xtask bench accuracy`
    // measures the real figures in release mode.
    assert!(
        quantile(&mut ttft_err, 0.5) < 1.0,
        "TTFT error p50 {ttft_err:?}"
    );
    assert!(quantile(&mut gap_err, 0.5) < 0.5, "gap error p50");
    assert!(
        quantile(&mut ttft_err, 0.99) < 10.0,
        "TTFT error p99 {ttft_err:?}"
    );
    assert!(quantile(&mut gap_err, 0.99) < 10.0, "gap error p99");
    assert!(
        ttft_err.iter().all(|e| *e < 100.0),
        "TTFT error max {ttft_err:?}"
    );
    assert!(gap_err.iter().all(|e| *e < 100.0), "gap error max");
    // Every token gap of every record is in the summary: 11 per request.
    assert_eq!(summary["metrics"]["itl_ms"]["count"], 40 * 11);
}

#[test]
fn multi_token_chunks_count_every_token() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, url) = sim(
        d.path(),
        &["--ttft", "1ms", "--itl", "2ms", "--tokens-per-chunk", "3"],
    );
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &url,
            "--requests",
            "5",
            "--max-tokens",
            "12",
            "--no-daemon",
        ],
    );
    s.stop();
    for r in records(&dir) {
        let chunks = r["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c[1] == 3), "{chunks:?}");
        assert_eq!(r["output_tokens"], 12);
    }
    // 3 chunk gaps per request, each split into 3 token gaps.
    assert_eq!(summary["metrics"]["icl_ms"]["count"], 15);
    assert_eq!(summary["metrics"]["itl_ms"]["count"], 45);
}

#[test]
fn without_usage_tokens_are_counted_from_the_chunks_and_the_report_says_so() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, url) = sim(d.path(), &["--ttft", "1ms", "--itl", "1ms", "--no-usage"]);
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &url,
            "--requests",
            "5",
            "--max-tokens",
            "8",
            "--no-daemon",
        ],
    );
    s.stop();
    for r in records(&dir) {
        assert_eq!(r["token_source"], "chunks", "{r}");
        // One word per chunk from serve-sim: the local count is the chunk count.
        assert_eq!(r["output_tokens"], 8, "{r}");
        assert_eq!(r["chunks"].as_array().unwrap().len(), 8);
    }
    assert_eq!(summary["token_sources"], serde_json::json!({"chunks": 5}));
    let o = tbctl(&["report", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let warned = report["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["topic"] == "token_source")
        .expect("a token-source recommendation");
    assert_eq!(warned["level"], "warn");
    assert!(warned["text"]
        .as_str()
        .unwrap()
        .contains("5 successful requests"));
}

#[test]
fn ollama_completions_and_non_streaming_apis() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, url) = sim(d.path(), &["--ttft", "1ms", "--itl", "1ms"]);
    for (api, extra) in [
        ("ollama-chat", None),
        ("ollama-generate", None),
        ("openai-completions", None),
        ("openai-chat", Some("--no-stream")),
        ("ollama-chat", Some("--no-stream")),
    ] {
        let mut args = vec![
            "--url",
            &url,
            "--api",
            api,
            "--requests",
            "4",
            "--max-tokens",
            "7",
            "--no-daemon",
        ];
        args.extend(extra);
        let (summary, dir) = profile(d.path(), &args);
        assert_eq!(summary["requests"]["succeeded"], 4, "{api} {extra:?}");
        for r in records(&dir) {
            assert_eq!(r["output_tokens"], 7, "{api} {extra:?}: {r}");
            assert_eq!(r["token_source"], "usage");
            assert!(r["t_first_token_ns"].as_u64().is_some());
        }
    }
    s.stop();
}

#[test]
fn failed_requests_are_records_not_crashes() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, url) = sim(
        d.path(),
        &[
            "--ttft",
            "0",
            "--itl",
            "0",
            "--error-rate",
            "0.5",
            "--seed",
            "3",
        ],
    );
    let (summary, dir) = profile(
        d.path(),
        &["--url", &url, "--requests", "40", "--no-daemon"],
    );
    s.stop();
    let failed = summary["requests"]["failed"].as_u64().unwrap();
    assert!(failed > 5 && failed < 35, "about half fail: {failed}");
    assert_eq!(summary["errors_by_class"]["http"], failed);
    let recs = records(&dir);
    assert_eq!(recs.len(), 40);
    let bad = recs.iter().find(|r| r["success"] == false).unwrap();
    assert_eq!(bad["http_status"], 500);
    assert_eq!(bad["error_class"], "http");
    assert!(bad["e2e_ms"].is_null());
}

#[test]
fn open_loop_keeps_its_schedule_and_seed_fixes_the_requests() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, url) = sim(d.path(), &["--ttft", "20ms", "--itl", "2ms"]);
    let args = [
        "--url",
        &url,
        "--rate",
        "100",
        "--pattern",
        "poisson",
        "--requests",
        "60",
        "--max-tokens",
        "8",
        "--no-daemon",
        "--seed",
        "9",
    ];
    let (a, dir_a) = profile(d.path(), &args);
    let (_, dir_b) = profile(d.path(), &args);
    s.stop();
    assert_eq!(a["requests"]["succeeded"], 60);
    // Intended times are the seeded schedule's own offsets, request by request, in both runs;
    // the prompts are the seeded dataset's, in order.
    let want_offsets: Vec<u64> = tbctl::workload::Schedule::new(Pattern::Poisson, 100.0, 9)
        .unwrap()
        .take(60)
        .collect();
    let want_inputs: Vec<u64> = tbctl::workload::Dataset::new(9, SpanSize::Mixed)
        .take(60)
        .map(|i| u64::from(i.input_tokens))
        .collect();
    for dir in [&dir_a, &dir_b] {
        let mut recs: Vec<(u64, u64, u64)> = records(dir)
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap();
                (n("request_id"), n("t_intended_ns"), n("input_tokens"))
            })
            .collect();
        recs.sort();
        let ids: Vec<u64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(ids, (0..60).collect::<Vec<u64>>());
        let t0 = recs[0].1;
        let offsets: Vec<u64> = recs.iter().map(|r| r.1 - t0).collect();
        assert_eq!(offsets, want_offsets);
        let inputs: Vec<u64> = recs.iter().map(|r| r.2).collect();
        assert_eq!(inputs, want_inputs);
    }
    // Dispatch does not wait for responses: at 100/s, responses of 36 ms overlap. Counted
    // from the records, not timed: a slow CI machine once saw a 10.7 ms dispatch lag p90 in
    // this debug build, while a closed loop would fall behind by over a second.
    let recs = records(&dir_a);
    let t = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap();
    let overlapped = recs
        .iter()
        .filter(|r| {
            recs.iter().any(|o| {
                t(o, "t_sent_ns") < t(r, "t_sent_ns") && t(o, "t_end_ns") > t(r, "t_sent_ns")
            })
        })
        .count();
    assert!(
        overlapped >= 30,
        "{overlapped} of 60 sent while another was in flight"
    );
    let lag = a["metrics"]["dispatch_lag_ms"]["p90"].as_f64().unwrap();
    assert!(lag < 250.0, "dispatch lag p90 {lag} ms");
}

#[test]
fn trace_replay_sends_the_traces_sizes_at_its_times() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, url) = sim(d.path(), &["--ttft", "0", "--itl", "0"]);
    let trace = d.path().join("t.jsonl");
    // CRLF line ends and no final newline are not malformed.
    std::fs::write(
        &trace,
        "{\"t_ms\": 0, \"input_tokens\": 30, \"output_tokens\": 3}\r\n{\"t_ms\": 100, \"input_tokens\": 60, \"output_tokens\": 5}\r\n{\"t_ms\": 300, \"input_tokens\": 90, \"output_tokens\": 9}",
    )
    .unwrap();
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &url,
            "--trace",
            trace.to_str().unwrap(),
            "--no-daemon",
        ],
    );
    assert_eq!(summary["requests"]["succeeded"], 3);
    let mut recs = records(&dir);
    recs.sort_by_key(|r| r["request_id"].as_u64());
    let outs: Vec<u64> = recs
        .iter()
        .map(|r| r["output_tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(
        outs,
        vec![3, 5, 9],
        "max_tokens from the trace's output counts"
    );
    let t: Vec<u64> = recs
        .iter()
        .map(|r| r["t_intended_ns"].as_u64().unwrap())
        .collect();
    assert_eq!((t[1] - t[0]) / 1_000_000, 100);
    assert_eq!((t[2] - t[0]) / 1_000_000, 300);
    // The built-in Azure trace, a window of it, sped up: the requests are exactly the CSV's
    // rows in the window, at a tenth of their offsets, asking for their generated tokens.
    let csv = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tbctl/data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv"),
    )
    .unwrap();
    let rows: Vec<(f64, u64)> = csv
        .lines()
        .skip(1)
        .take(200)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            // "2023-11-16 18:15:46.6805900": seconds of the day (the window is within one day).
            let hms: Vec<f64> = f[0][11..].split(':').map(|x| x.parse().unwrap()).collect();
            (
                hms[0] * 3600.0 + hms[1] * 60.0 + hms[2],
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let want: Vec<(f64, u64)> = rows
        .iter()
        .map(|(t, n)| (t - rows[0].0, *n))
        .filter(|(t, _)| *t < 20.0)
        .collect();
    assert!(want.len() >= 10, "{} requests in the window", want.len());
    let (summary, azure_dir) = profile(
        d.path(),
        &[
            "--url",
            &url,
            "--trace",
            "azure-conv",
            "--trace-window",
            "0s..20s",
            "--time-scale",
            "0.1",
            "--no-daemon",
        ],
    );
    s.stop();
    assert_eq!(
        summary["requests"]["succeeded"].as_u64().unwrap() as usize,
        want.len()
    );
    assert_eq!(summary["requests"]["failed"], 0);
    let mut recs = records(&azure_dir);
    recs.sort_by_key(|r| r["request_id"].as_u64().unwrap());
    let t0 = recs[0]["t_intended_ns"].as_u64().unwrap();
    for (r, (t, n)) in recs.iter().zip(&want) {
        let at_s = (r["t_intended_ns"].as_u64().unwrap() - t0) as f64 / 1e9;
        assert!(
            (at_s - t * 0.1).abs() < 1e-5,
            "intended {at_s} s, trace {t} s x 0.1"
        );
        assert_eq!(r["output_tokens"].as_u64().unwrap(), *n, "{r}");
    }
}

#[test]
fn ctrl_c_stops_dispatch_and_leaves_a_valid_run() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, url) = sim(d.path(), &["--ttft", "50ms", "--itl", "5ms"]);
    let out = d.path().join("runs");
    let child = Command::new(bin("tbctl"))
        .args([
            "profile",
            "--url",
            &url,
            "--rate",
            "20",
            "--requests",
            "1000",
            "--no-daemon",
            "--json",
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    s.stop();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total = summary["requests"]["total"].as_u64().unwrap();
    assert!(total > 10 && total < 200, "stopped early: {total}");
    assert!(summary["notes"].to_string().contains("interrupted"));
    let dir = out.join(summary["run_id"].as_str().unwrap());
    assert_eq!(records(&dir).len() as u64, total, "every record on disk");
    assert!(dir.join("run.json").exists() && dir.join("summary.json").exists());
}

#[test]
fn socket_arrivals_without_tbd_lie_between_each_write_and_its_read() {
    let d = tempfile::tempdir().unwrap();
    let truth = d.path().join("truth.jsonl");
    let (mut s, url) = sim(
        d.path(),
        &[
            "--ttft",
            "10ms",
            "--itl",
            "4ms",
            "--truth",
            truth.to_str().unwrap(),
        ],
    );
    let (summary, dir) = profile(
        d.path(),
        &[
            "--url",
            &url,
            "--concurrency",
            "8",
            "--requests",
            "24",
            "--max-tokens",
            "6",
            "--no-daemon",
            "--socket-arrivals",
        ],
    );
    s.stop();
    let truth = truth_by_id(&truth);
    let (mut after_write, mut want_ttft, mut want_gaps) = (Vec::new(), 0, 0);
    for r in records(&dir) {
        let (t, g) = socket_figure_counts(&r);
        (want_ttft, want_gaps) = (want_ttft + t, want_gaps + g);
        let id = r["request_id"].as_u64().unwrap();
        let (read, written) = (chunk_times(&r), chunk_times(&truth[&id]));
        let sock: Vec<u64> = r["chunk_arrivals_ns"]
            .as_array()
            .unwrap_or_else(|| panic!("socket arrivals in {r}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!((sock.len(), written.len()), (read.len(), read.len()), "{r}");
        for i in 0..sock.len() {
            // Stamped when the segment reached the socket: after serve-sim began the write,
            // before tbctl's read returned it. A chunk given its successor's stamp would be
            // read before it arrived; one given its predecessor's would arrive before its write.
            assert!(
                sock[i] >= written[i],
                "chunk {i} of {id} before its write: {r}"
            );
            assert!(sock[i] <= read[i], "chunk {i} of {id} after its read: {r}");
            if read.get(i + 1) != Some(&read[i]) {
                after_write.push((sock[i] - written[i]) as f64 / 1e6);
            }
        }
    }
    // Most chunks end their read at 8 streams; the figures take exactly those that do.
    assert!(after_write.len() > 24 * 6 / 2, "{}", after_write.len());
    after_write.sort_by(f64::total_cmp);
    let p50 = after_write[after_write.len() / 2];
    assert!(p50 < 0.5, "socket stamp - serve-sim's write p50 {p50} ms");
    let m = &summary["metrics"];
    assert!(want_ttft > 12, "{want_ttft}");
    assert_eq!(m["ttft_sock_ms"]["count"], want_ttft);
    assert_eq!(m["itl_sock_ms"]["count"], want_gaps);
    // tbctl's own lateness is never negative: it reads what has arrived.
    assert!(
        m["ttft_sock_late_ms"]["min"].as_f64().unwrap() >= 0.0,
        "{m}"
    );
}
