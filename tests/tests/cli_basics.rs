//! Versions and help name only commands that exist.

use std::process::Command;

use tb_tests::*;

#[test]
fn versions_and_help() {
    let o = Command::new(bin("tbd")).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && v.starts_with("tbd 0.") && v.contains("eBPF object"),
        "{v}"
    );
    let o = tbctl(&["--version"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("tbctl 0."));
    let help = String::from_utf8_lossy(&tbctl(&["--help"]).stdout).into_owned();
    for cmd in ["profile", "serve-sim", "daemon", "runs", "trace"] {
        assert!(help.contains(cmd), "{cmd} missing from help: {help}");
    }
    let ph = String::from_utf8_lossy(&tbctl(&["profile", "--help"]).stdout).into_owned();
    for f in [
        "ttft_ms",
        "(e2e - ttft) / (output_tokens - 1)",
        "--concurrency",
        "--trace-window",
    ] {
        assert!(ph.contains(f), "profile --help lacks {f}");
    }
    let th = Command::new(bin("tbd")).arg("--help").output().unwrap();
    let th = String::from_utf8_lossy(&th.stdout);
    assert!(th.contains("--socket") && th.contains("--data-dir"), "{th}");
}
