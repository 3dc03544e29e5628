//! `tbctl capture`: kernel timing of traffic tbctl does not drive itself — another load
//! generator (started here after `--`, or running under `--pid`) and a server port — stored by
//! tbd as a run that `tbctl trace` and `tbctl runs` read like any other.

use std::{
    os::{
        fd::{AsFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::Path,
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context};
use tb_proto::v1::{StartCaptureRequest, StopCaptureRequest};

use crate::{
    cli::daemon_cmds,
    daemon,
    kernel::lease::{LeaseKeeper, LEASE},
    workload::duration::parse_duration,
};

/// `tbctl capture [--pid PID]... [--port PORT]... [--duration D] [-- CMD ARGS...]`, or
/// `tbctl capture stop [ID]`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
#[command(after_help = "Examples:\n  \
    tbctl capture --port 8000 -- vllm bench serve --base-url http://127.0.0.1:8000 ...\n  \
    tbctl capture --pid 4242 --duration 60s\n\
    The processes named (and their children, even those forked before the capture) are the \
    client side; sockets accepted on --port are the server side. Then: tbctl trace RUN.")]
pub struct CaptureArgs {
    #[command(subcommand)]
    pub action: Option<CaptureAction>,
    /// Client process to capture, with its child processes (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Local TCP port whose accepted connections are captured as the server side (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Stop after this long (e.g. 30s, 5m); otherwise at Ctrl-C or when the command exits.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// A label stored with the run.
    #[arg(long, default_value = "")]
    pub label: String,
    /// tbd's socket (unix:PATH or PATH).
    #[arg(long)]
    pub daemon: Option<String>,
    /// Print the finished run as JSON.
    #[arg(long)]
    pub json: bool,
    /// A command to run and capture from its first instruction, with its children (with
    /// --json its stdout goes to stderr).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `tbctl capture stop`.
#[derive(clap::Subcommand, Debug)]
pub enum CaptureAction {
    /// Stop a running capture by hand (one whose client is gone; tbd also ends it when its
    /// lease runs out): the given run, or whichever runs.
    Stop {
        /// The run id (`tbctl daemon status` shows the running one).
        id: Option<String>,
        /// tbd's socket (unix:PATH or PATH).
        #[arg(long)]
        daemon: Option<String>,
    },
}

/// `tbctl capture stop [ID]`.
async fn stop(id: Option<String>, addr: &Option<String>) -> anyhow::Result<ExitCode> {
    let mut client = daemon::connect(&daemon_cmds::socket(addr)).await?;
    let id = match id {
        Some(id) => id,
        None => {
            let info = client
                .get_info(tb_proto::v1::GetInfoRequest {})
                .await
                .map_err(daemon::DaemonError::from)?
                .into_inner();
            if info.active_run.is_empty() {
                bail!("no capture is running: nothing to stop");
            }
            info.active_run
        }
    };
    let run = client
        .stop_capture(StopCaptureRequest { run_id: id })
        .await
        .map_err(daemon::DaemonError::from)?
        .into_inner();
    println!(
        "stopped run {}: {} exchanges, {} connections",
        run.run_id, run.exchanges, run.connections
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `tbctl capture`; the exit code is the command's when one ran and failed.
pub async fn run(a: CaptureArgs) -> anyhow::Result<ExitCode> {
    if let Some(CaptureAction::Stop { id, daemon }) = a.action {
        return stop(id, &daemon.or(a.daemon)).await;
    }
    if a.pids.is_empty() && a.ports.is_empty() && a.command.is_empty() {
        bail!("nothing to capture: give --pid PID, --port PORT, or a command after --");
    }
    for pid in &a.pids {
        if !alive(*pid) {
            bail!("no process {pid}: give the pid of a running process");
        }
    }
    let mut client = match daemon::connect(&daemon_cmds::socket(&a.daemon)).await {
        Err(daemon::DaemonError::Absent(p)) => bail!(
            "no tbd at {}: capture needs the daemon; start it (systemctl start tbd) or give --daemon ADDR",
            p.display()
        ),
        r => r?,
    };
    let mut pids = a.pids.clone();
    let child = match a.command.split_first() {
        Some((prog, args)) => {
            let g = Gated::spawn(prog, args, a.json)?;
            pids.push(g.child.id());
            Some(g)
        }
        None => None,
    };
    let started = client
        .start_capture(StartCaptureRequest {
            client_pids: pids,
            server_ports: a.ports.iter().map(|&p| u32::from(p)).collect(),
            label: a.label.clone(),
            sensors: vec![],
            run_id: String::new(),
            lease_ms: LEASE.as_millis() as u32,
        })
        .await;
    let run_id = match started {
        Ok(r) => r.into_inner().run_id,
        Err(e) => {
            if let Some(mut g) = child {
                let _ = g.child.kill();
                let _ = g.child.wait();
            }
            return Err(daemon::DaemonError::from(e).into());
        }
    };
    eprintln!("tbctl: capturing run {run_id}; Ctrl-C stops it");
    let lease = LeaseKeeper::start(client.clone(), run_id.clone());
    let mut exit = ExitCode::SUCCESS;
    let mut child = child.map(Gated::release);
    let stop_reason = {
        let deadline = async {
            match a.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => "duration".to_string(),
            _ = tokio::signal::ctrl_c() => "Ctrl-C".to_string(),
            status = ended(child.as_mut(), &a.pids) => match status? {
                Some(status) => {
                    if !status.success() {
                        exit = ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8));
                    }
                    format!("the command's exit ({status})")
                }
                None => "the processes' exit".to_string(),
            },
        }
    };
    if let Some(c) = child.as_mut() {
        if c.try_wait()?.is_none() {
            eprintln!(
                "tbctl: the command (pid {}) still runs, no longer captured",
                c.id()
            );
        }
    }
    let run = client
        .stop_capture(StopCaptureRequest {
            run_id: run_id.clone(),
        })
        .await
        .map_err(daemon::DaemonError::from)?
        .into_inner();
    drop(lease);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&daemon_cmds::run_json(&run))?
        );
    } else {
        let lost: u64 = run.lost.iter().map(|l| l.count).sum();
        println!(
            "run {}: stopped by {stop_reason}; {} exchanges, {} connections, {} DNS lookups, {} events lost",
            run.run_id, run.exchanges, run.connections, run.dns_lookups, lost
        );
        println!("analysis: tbctl trace {}", run.run_id);
    }
    Ok(exit)
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits for the command to exit (its status), or, with no command, for every pid given to be
/// gone (None); never returns when there is neither. Polled, so that nothing blocks the runtime
/// when the capture stops first.
async fn ended(
    mut child: Option<&mut std::process::Child>,
    pids: &[u32],
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    if child.is_none() && pids.is_empty() {
        return std::future::pending().await;
    }
    loop {
        match child.as_mut() {
            Some(c) => {
                if let Some(status) = c.try_wait().context("waiting for the command")? {
                    return Ok(Some(status));
                }
            }
            None => {
                if !pids.iter().any(|&p| alive(p)) {
                    return Ok(None);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process held until the capture that names its pid has started, so that its first
/// connection is already tracked. `Command::spawn` returns only once the child has exec'd, so
/// the wait cannot sit before exec: the child is a shell that reads fd 3 (a pipe) to its end,
/// then execs the command in the same pid.
struct Gated {
    child: std::process::Child,
    /// The write end of the pipe; closing it lets the child go.
    gate: OwnedFd,
}

/// What the gate's shell runs: wait for EOF on fd 3, close it, become the command.
const GATE_SCRIPT: &str = "read -r _ <&3; exec 3<&-; exec \"$@\"";

impl Gated {
    /// Starts `prog args` held at the gate; with `stdout_to_stderr` its output goes to
    /// stderr, so that tbctl's stdout holds only its own JSON.
    fn spawn(prog: &str, args: &[String], stdout_to_stderr: bool) -> anyhow::Result<Self> {
        if !runnable(prog) {
            bail!("cannot run {prog}: no such executable (give a path or a command on PATH)");
        }
        let (rx, tx) = std::io::pipe().context("creating a pipe")?;
        let rx: OwnedFd = rx.into();
        let rx_fd = std::os::fd::AsRawFd::as_raw_fd(&rx);
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", GATE_SCRIPT, "sh", prog]).args(args);
        if stdout_to_stderr {
            let err = std::io::stderr().as_fd().try_clone_to_owned()?;
            cmd.stdout(err);
        }
        // SAFETY: dup2 and fcntl are async-signal-safe. The write end is close-on-exec, so only this
        // process holds it.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec, so that case clears it instead.
                let r = if rx_fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(rx_fd, 3)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("cannot run {prog}"))?;
        drop(rx);
        Ok(Self {
            child,
            gate: tx.into(),
        })
    }

    /// Lets the child run; returns it.
    fn release(self) -> std::process::Child {
        drop(self.gate);
        self.child
    }
}

/// Whether `prog` names an executable file: as a path when it holds a `/`, else on `$PATH`.
fn runnable(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        return exec(Path::new(prog));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| exec(&d.join(prog))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gated_child_waits_for_release_and_keeps_its_pid_and_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("ran");
        let script = format!("echo \"$$ $1\" > {}", mark.display());
        let g = Gated::spawn(
            "sh",
            &["-c".into(), script, "sh".into(), "a  b".into()],
            false,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!mark.exists(), "the command ran before the gate opened");
        let mut c = g.release();
        let pid = c.id();
        assert!(c.wait().unwrap().success());
        // The pid the capture tracks is the command's own, and arguments pass unsplit.
        assert_eq!(
            std::fs::read_to_string(&mark).unwrap(),
            format!("{pid} a  b\n")
        );
    }

    #[test]
    fn missing_program_is_one_clear_error() {
        let e = Gated::spawn("/nonexistent/tb-prog", &[], false)
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/tb-prog"),
            "{e}"
        );
    }
}
