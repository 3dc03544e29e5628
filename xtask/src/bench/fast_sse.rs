//! The fast static SSE server of ../shared/bench/fast-sse (nginx, one worker, 16 content chunks
//! per response, keep-alive): what the capacity and capture-cost benches load, because it costs
//! next to nothing per request, so the client's own cost is what they see.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context};

use crate::sh;

/// Where it listens.
pub const URL: &str = "http://127.0.0.1:18090";
const ADDR: &str = "127.0.0.1:18090";

/// The fast-sse nginx, stopped when dropped.
pub struct FastSse {
    dir: PathBuf,
    run: PathBuf,
}

impl FastSse {
    /// Starts it with its files under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let src = sh::workspace_root().join("../shared/bench/fast-sse");
        if !src.join("start.sh").exists() {
            bail!(
                "no fast-sse server at {}: these benches need ../shared/bench/fast-sse",
                src.display()
            );
        }
        if !Path::new("/usr/sbin/nginx").exists() {
            bail!("no /usr/sbin/nginx: run `cargo xtask setup` (it installs nginx-light)");
        }
        let run = dir.join("fast-sse");
        let o = Command::new("bash")
            .arg(src.join("start.sh"))
            .env("RUN", &run)
            .output()
            .context("starting fast-sse")?;
        if !o.status.success() {
            bail!(
                "fast-sse did not start (is another one on 18090? `RUN=... start.sh stop` ends it): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(Self { dir: src, run })
    }

    /// The wrk script that POSTs the same streaming chat request tbctl sends.
    pub fn wrk_script(&self) -> PathBuf {
        self.dir.join("post.lua")
    }

    /// Requests nginx has answered since it started (its stub_status counter), so every
    /// client is counted alike, by the server.
    pub fn served(&self) -> anyhow::Result<u64> {
        let mut s = TcpStream::connect(ADDR).context("connecting to fast-sse")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /nginx_status HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        // "Active connections: N \nserver accepts handled requests\n A H R \n..."
        let counts = body
            .lines()
            .skip_while(|l| !l.starts_with("server accepts"))
            .nth(1)
            .context("no counters in nginx_status")?;
        counts
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .context("unreadable nginx_status counters")
    }
}

impl Drop for FastSse {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.dir.join("start.sh"))
            .arg("stop")
            .env("RUN", &self.run)
            .output();
    }
}
