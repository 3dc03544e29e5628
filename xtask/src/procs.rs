//! Background processes for demo and bench: tbd, serve-sim, with clean shutdown.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// A child process stopped with SIGINT (then killed) when dropped.
pub struct Bg {
    pub child: Child,
    pub name: &'static str,
}

impl Bg {
    /// Starts `cmd` with output to `log`.
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let f = std::fs::File::create(log)?;
        let child = cmd
            .stdout(f.try_clone()?)
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self { child, name })
    }

    /// Sends SIGINT and waits up to 10 s.
    pub fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Waits until `path` exists (a socket or port file), or the child dies.
pub fn wait_for_file(bg: &mut Bg, path: &Path, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if path.exists()
            && std::fs::metadata(path)
                .map(|m| m.len() > 0 || !m.is_file())
                .unwrap_or(false)
        {
            return Ok(());
        }
        if let Some(st) = bg.child.try_wait()? {
            bail!("{} exited early: {st}", bg.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{} did not create {} within {secs} s",
        bg.name,
        path.display()
    )
}

/// Path of a built binary of this workspace.
pub fn bin(profile: &str, name: &str) -> PathBuf {
    crate::sh::workspace_root()
        .join("target")
        .join(profile)
        .join(name)
}

/// Starts tbd on a private socket and data dir under `dir`; returns it and the socket path.
pub fn start_tbd(profile: &str, dir: &Path) -> anyhow::Result<(Bg, PathBuf)> {
    start_tbd_with(profile, dir, &[])
}

/// [`start_tbd`] with more arguments for tbd.
pub fn start_tbd_with(profile: &str, dir: &Path, args: &[&str]) -> anyhow::Result<(Bg, PathBuf)> {
    start_tbd_bin(&bin(profile, "tbd"), dir, args)
}

/// [`start_tbd_with`] for the tbd binary at `tbd` (another build, to compare against).
pub fn start_tbd_bin(tbd: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<(Bg, PathBuf)> {
    let sock = dir.join("tbd.sock");
    let mut bg = Bg::spawn(
        "tbd",
        Command::new(tbd)
            .arg("--socket")
            .arg(&sock)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(if args.contains(&"--http") {
                &[][..]
            } else {
                &["--http", "off"][..]
            })
            .args(args),
        &dir.join("tbd.log"),
    )?;
    wait_for_file(&mut bg, &sock, 30)?;
    Ok((bg, sock))
}

/// Starts serve-sim with `args`; returns it and its port.
pub fn start_sim(profile: &str, dir: &Path, args: &[&str]) -> anyhow::Result<(Bg, u16)> {
    let port_file = dir.join("sim.port");
    let _ = std::fs::remove_file(&port_file);
    let mut bg = Bg::spawn(
        "serve-sim",
        Command::new(bin(profile, "tbctl"))
            .arg("serve-sim")
            .arg("--port-file")
            .arg(&port_file)
            .args(args),
        &dir.join("sim.log"),
    )?;
    wait_for_file(&mut bg, &port_file, 30)?;
    let port = std::fs::read_to_string(&port_file)?.trim().parse()?;
    Ok((bg, port))
}
