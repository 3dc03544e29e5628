//! Starting the real llama.cpp server (CPU backend) for tests and the demo.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// The name the server gives its model in `/v1/models` (instead of the GGUF file's path).
pub const MODEL_ALIAS: &str = "smollm2-135m";

/// A running llama-server, stopped when dropped.
pub struct LlamaServer {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl LlamaServer {
    /// Starts llama-server on a free loopback port and waits until `/health` answers 200.
    pub fn start(server: &Path, model: &Path, log: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(log)?;
        let child = Command::new(server)
            .args(["-m"])
            .arg(model)
            .args(["--alias", MODEL_ALIAS])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", "2", "-c", "8192", "-np", "4", "-n", "256"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let mut me = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if health(port) == Some(200) {
                return Ok(me);
            }
            if let Some(status) = me.child.try_wait()? {
                bail!("llama-server exited during start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("llama-server did not become healthy within 60 s")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /health status code, or None when nothing answers.
fn health(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}
