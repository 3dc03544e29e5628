//! Helpers for end-to-end tests: the built binaries (`cargo xtask test` builds them first),
//! background servers, and reading run directories.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

pub mod faults;

use serde_json::Value;
pub use xtask::{
    energy_fixture,
    llama::{LlamaServer, MODEL_ALIAS},
    procs::{start_sim, start_tbd, start_tbd_with, wait_for_file, Bg},
};

/// serve-sim (debug build) in `dir` with `args`, logging its own times to `dir/truth.jsonl`:
/// it, its port and the log's path.
pub fn start_sim_with_truth(dir: &Path, args: &[&str]) -> (Bg, u16, PathBuf) {
    let truth = dir.join("truth.jsonl");
    let t = truth.to_str().expect("a UTF-8 temp path");
    let (sim, port) = start_sim("debug", dir, &[args, &["--truth", t]].concat()).unwrap();
    (sim, port, truth)
}

/// Every kernel line of a run gives the arrival of every byte its side read (the response on
/// the client side, the request on the server side), once, and in time order: arrivals are
/// kept in stream order, which is the order the bytes became readable.
pub fn assert_arrivals_whole(kernel_jsonl: &Path) {
    let lines = jsonl(kernel_jsonl);
    assert!(
        !lines.is_empty(),
        "no kernel lines in {}",
        kernel_jsonl.display()
    );
    for l in lines {
        let read = if l["side"] == "client" {
            &l["response_bytes"]
        } else {
            &l["request_bytes"]
        };
        let arrivals: Vec<(u64, u64)> = l["arrivals"]
            .as_array()
            .unwrap_or_else(|| panic!("arrivals in {l}"))
            .iter()
            .map(|a| (a[0].as_u64().unwrap(), a[1].as_u64().unwrap()))
            .collect();
        let total: u64 = arrivals.iter().map(|a| a.1).sum();
        assert_eq!(Some(total), read.as_u64(), "bytes read and arrived: {l}");
        assert!(
            arrivals.windows(2).all(|w| w[0].0 <= w[1].0),
            "arrivals in stream order are readable in time order: {l}"
        );
    }
}

/// How many programs are attached to cgroup ingress at the root of the host's cgroup2
/// hierarchy (tbd's arrival program while it captures), from the kernel (BPF_PROG_QUERY).
pub fn cgroup_ingress_programs() -> u32 {
    use std::os::fd::AsRawFd;
    let root = tbd::cgroup_root::find().expect("a cgroup2 hierarchy mounted");
    let dir = std::fs::File::open(&root).unwrap();
    // union bpf_attr's query: target_fd, attach_type, query_flags, attach_flags, prog_ids,
    // prog_cnt; the rest zero. No id buffer: the kernel returns the count alone.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&0u32.to_ne_bytes()); // BPF_CGROUP_INET_INGRESS
    const BPF_PROG_QUERY: libc::c_long = 16;
    // SAFETY: a valid attr buffer of the size passed; the kernel writes prog_cnt into it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    assert_eq!(rc, 0, "BPF_PROG_QUERY: {}", std::io::Error::last_os_error());
    u32::from_ne_bytes(attr[24..28].try_into().unwrap())
}

/// The newest modification time of the files below `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut latest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        latest = latest.max(t);
    }
    latest
}

/// The debug build of a workspace binary, refused when a source it is built from is newer
/// (plain `cargo test` does not rebuild the binaries the end-to-end tests run).
pub fn bin(name: &str) -> PathBuf {
    let p = xtask::procs::bin("debug", name);
    assert!(
        p.exists(),
        "{} is not built: run the tests with `cargo xtask test`",
        p.display()
    );
    let built = p.metadata().and_then(|m| m.modified()).ok();
    let root = xtask::sh::workspace_root();
    let dirs: &[&str] = match name {
        "tbd" => &["tbd/src", "tbd-ebpf/src", "tbd-common/src", "proto"],
        _ => &["tbctl/src", "tbd-common/src", "proto"],
    };
    let sources = dirs.iter().filter_map(|d| newest(&root.join(d))).max();
    assert!(
        built >= sources,
        "{} is older than its sources: build it first (`cargo xtask test` does, or `cargo \
         build --workspace --bins`)",
        p.display()
    );
    p
}

/// Runs `tbctl ARGS` to completion.
pub fn tbctl(args: &[&str]) -> Output {
    Command::new(bin("tbctl"))
        .args(args)
        .output()
        .expect("run tbctl")
}

/// Runs `tbctl profile ARGS --json --out OUT`; panics with stderr unless it succeeds. Returns
/// the summary and the run directory.
pub fn profile(out: &Path, args: &[&str]) -> (Value, PathBuf) {
    let o = Command::new(bin("tbctl"))
        .arg("profile")
        .args(args)
        .args(["--json", "--out"])
        .arg(out)
        .output()
        .expect("run tbctl profile");
    assert!(
        o.status.success(),
        "tbctl profile {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: Value = serde_json::from_slice(&o.stdout).expect("summary JSON on stdout");
    let dir = out.join(summary["run_id"].as_str().expect("run_id"));
    (summary, dir)
}

/// Starts `tbctl profile ARGS --json --out OUT` in the background, its output discarded (for
/// tests that kill it or what it talks to).
pub fn spawn_profile(out: &Path, args: &[&str]) -> std::process::Child {
    Command::new(bin("tbctl"))
        .arg("profile")
        .args(args)
        .args(["--json", "--out"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tbctl profile")
}

/// `tbctl trace RUN --json`, of a daemon's run (`daemon` its address) or a run directory;
/// panics with stderr unless it succeeds.
pub fn trace_json(run: &str, daemon: Option<&str>) -> Value {
    let mut args = vec!["trace", run, "--json"];
    if let Some(d) = daemon {
        args.extend(["--daemon", d]);
    }
    let o = tbctl(&args);
    assert!(o.status.success(), "tbctl trace {run}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("trace JSON on stdout")
}

/// Lines of a JSONL file.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The request records of a run (requests.jsonl without its metadata line).
pub fn records(run_dir: &Path) -> Vec<Value> {
    jsonl(&run_dir.join("requests.jsonl"))
        .into_iter()
        .skip(1)
        .collect()
}

/// The q-quantile of samples.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// serve-sim's ground truth by request id.
pub fn truth_by_id(path: &Path) -> std::collections::HashMap<u64, Value> {
    jsonl(path)
        .into_iter()
        .filter_map(|t| {
            let id = t["request_id"]
                .as_u64()
                .or_else(|| t["request_id"].as_str()?.parse().ok())?;
            Some((id, t))
        })
        .collect()
}

/// Content chunk times of a JSON record or truth line (`chunks: [[t, n], ...]`).
pub fn chunk_times(v: &Value) -> Vec<u64> {
    v["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c[0].as_u64())
        .collect()
}

/// For a record read with `--socket-arrivals`: the socket figures it should give, as (1 if its
/// first content chunk ended its read, else 0; its token gaps at arrival). Only a chunk that
/// ended its read (the next chunk has another read time) has its own socket stamp; gaps run
/// over the tokens after the first such chunk up to the last.
pub fn socket_figure_counts(v: &Value) -> (u64, u64) {
    let chunks: Vec<(u64, u64)> = v["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c[0].as_u64().unwrap(), c[1].as_u64().unwrap().max(1)))
        .collect();
    let ended: Vec<usize> = (0..chunks.len())
        .filter(|&i| chunks.get(i + 1).is_none_or(|n| n.0 != chunks[i].0))
        .collect();
    let ttft = u64::from(ended.first() == Some(&0));
    let gaps = match (ended.first(), ended.last()) {
        (Some(&a), Some(&b)) if b > a => chunks[a + 1..=b].iter().map(|c| c.1).sum(),
        _ => 0,
    };
    (ttft, gaps)
}

/// Stderr of an output as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that the kernel saw the same bytes each way on both sides of every request in a
/// run's kernel.jsonl (a chunk lost between the probes and the store shows up as a
/// mismatch), that both name the same connection (client socket to server port), and that
/// they agree on who ended it.
pub fn assert_sides_agree(kernel_jsonl: &Path) {
    let lines = jsonl(kernel_jsonl);
    let server: std::collections::HashMap<String, &Value> = lines
        .iter()
        .filter(|l| l["side"] == "server")
        .map(|l| (l["request_id"].to_string(), l))
        .collect();
    let mut pairs = 0;
    for c in lines.iter().filter(|l| l["side"] == "client") {
        let Some(s) = server.get(&c["request_id"].to_string()) else {
            continue;
        };
        for f in ["request_bytes", "response_bytes"] {
            assert_eq!(
                c[f], s[f],
                "{f} of request {}: client {c} server {s}",
                c["request_id"]
            );
        }
        // Both sides name one TCP connection: the server's peer is the client's socket.
        for f in ["src", "dst"] {
            let (cf, sf) = (&c["conn"][f], &s["conn"][f]);
            assert!(
                cf == sf && !cf.as_str().unwrap_or_default().ends_with(":0"),
                "connection {f} of request {}: client {cf} server {sf}",
                c["request_id"]
            );
        }
        // Each side saw who sent the first FIN on its own socket; they must agree.
        let (cb, sb) = (&c["conn"]["closed_by"], &s["conn"]["closed_by"]);
        assert!(
            cb.is_null() || sb.is_null() || cb == sb,
            "who closed the connection of request {}: client {cb} server {sb}",
            c["request_id"]
        );
        pairs += 1;
    }
    assert!(
        pairs > 0,
        "no request seen on both sides in {}",
        kernel_jsonl.display()
    );
}
