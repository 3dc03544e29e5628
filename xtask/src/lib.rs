//! Project tasks. Every task runs `setup` first, so each works on a fresh machine.

pub mod bench;
pub mod demo;
pub mod energy_fixture;
pub mod llama;
pub mod mutants;
pub mod procs;
pub mod setup;
pub mod sh;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "TrafficBench project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what a fresh machine lacks (apt packages, rust-src, bpf-linker, llama-server venv).
    Setup,
    /// Set up, build, then run every test (as root: the eBPF tests load real probes).
    Test {
        /// Extra arguments for `cargo test`, e.g. a test name filter.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, then profile a real llama.cpp server on this machine with kernel timing.
    Demo,
    /// What CI runs: fmt check, clippy, and the tests.
    Ci,
    /// Benchmarks: accuracy, capacity, schedule, overhead, capture-cost, probe-cost, energy,
    /// events, replay (or all).
    Bench {
        #[arg(default_value = "all")]
        which: String,
    },
    /// cargo-mutants over FILES (globs; default: the API, client, workload, kernel join and
    /// connection tracking), with each crate's unit tests. Not part of CI.
    Mutants { files: Vec<String> },
}

/// Entry point of `cargo xtask`.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = setup::run()?;
    match cli.cmd {
        Cmd::Setup => Ok(()),
        Cmd::Test { args } => test(&env, &args),
        Cmd::Demo => demo::run(&env),
        Cmd::Mutants { files } => mutants::run(&files),
        Cmd::Ci => {
            sh::cargo(&["fmt", "--all", "--check"])?;
            sh::cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            test(&env, &[])
        }
        Cmd::Bench { which } => bench::run(&env, &which),
    }
}

fn test(env: &setup::Env, extra: &[String]) -> anyhow::Result<()> {
    sh::cargo(&["build", "--workspace", "--bins"])?;
    let mut args: Vec<&str> = vec!["test", "--workspace", "--no-fail-fast"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    sh::cargo_env(&args, &env.vars())
}
