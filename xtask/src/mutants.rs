//! `cargo xtask mutants [FILE...]`: cargo-mutants over the code whose tests must catch what
//! users hit (by default the API framers and parsers, the client, the workload, the kernel
//! join and connection tracking), with the mutated crate's unit tests. The end-to-end tests
//! are left out: they need root, a built tree and minutes a run, so a mutant they alone catch
//! counts as missed here. Not part of CI (hours for every file); results in target/mutants.

use std::process::Command;

use anyhow::Context;

use crate::sh;

/// What issue 18 names, as cargo-mutants `--file` globs.
pub const DEFAULT_FILES: &[&str] = &[
    "tbctl/src/api/*.rs",
    "tbctl/src/client/*.rs",
    "tbctl/src/workload/*.rs",
    "tbctl/src/kernel/join.rs",
    "tbd/src/conntrack/*.rs",
];

/// Runs cargo-mutants (installing it when missing) and prints the caught share and the
/// missed mutants.
pub fn run(files: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if sh::output(&cargo, &["mutants", "--version"]).is_none() {
        sh::cargo(&["install", "-q", "--locked", "cargo-mutants"])?;
    }
    let root = sh::workspace_root();
    let out = root.join("target/mutants");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root).args([
        "mutants",
        "--no-shuffle",
        "--test-workspace",
        "false",
        "--timeout",
        "60",
        "--output",
    ]);
    cmd.arg(&out);
    let files: Vec<String> = if files.is_empty() {
        DEFAULT_FILES.iter().map(|f| f.to_string()).collect()
    } else {
        files.to_vec()
    };
    for f in &files {
        cmd.args(["--file", f]);
    }
    // Unit tests only (see the module docs).
    cmd.args(["--", "--lib"]);
    eprintln!("+ {cmd:?}");
    // cargo-mutants exits non-zero when mutants are missed; the counts say what happened.
    let _ = cmd.status().context("running cargo mutants")?;
    let dir = out.join("mutants.out");
    let lines = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let (caught, missed) = (lines("caught.txt"), lines("missed.txt"));
    let (timeout, unviable) = (lines("timeout.txt"), lines("unviable.txt"));
    let viable = caught.len() + missed.len() + timeout.len();
    println!(
        "mutants: {} caught, {} missed, {} timed out, {} unviable; caught {:.1}% of {} viable",
        caught.len(),
        missed.len(),
        timeout.len(),
        unviable.len(),
        if viable > 0 {
            caught.len() as f64 * 100.0 / viable as f64
        } else {
            0.0
        },
        viable
    );
    for m in &missed {
        println!("missed: {m}");
    }
    Ok(())
}
