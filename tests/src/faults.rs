//! A raw TCP server that answers OpenAI chat requests with the faults users meet: a stream
//! cut mid-event, a stream without `[DONE]`, bad JSON in an event, an HTTP error status, a
//! stall past the client's timeout, a kept-alive connection closed under the next request,
//! and the server going away mid-run. Written by hand on std sockets, so each fault is exactly
//! the bytes on the wire a test names.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// How the server answers one generation request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// A whole stream: 4 content events, a finish event, usage, `[DONE]`.
    Ok,
    /// Two content events, then half an event and the connection closed.
    CutMidEvent,
    /// Content, finish and usage events, a clean end of the body, but no `[DONE]`.
    NoDone,
    /// One content event, then an event whose data is not JSON, then the rest.
    BadJson,
    /// An error status with a JSON error body (kept alive).
    Status(u16),
    /// One content event, then silence this long, then the connection closed.
    Stall(Duration),
    /// A whole stream, then the next request on this connection is read and the connection
    /// closed without a byte of response (the keep-alive race).
    DropNext,
}

/// The running server.
pub struct FaultServer {
    pub port: u16,
    /// Generation requests answered so far (a dropped request is not counted).
    pub generations: Arc<AtomicU64>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    dead: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

const MODEL: &str = "fault-model";

fn chunk(s: &mut TcpStream, data: &str) -> std::io::Result<()> {
    write!(s, "{:x}\r\n{data}\r\n", data.len())?;
    s.flush()
}

fn content(s: &mut TcpStream, text: &str) -> std::io::Result<()> {
    chunk(
        s,
        &format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n"
        ),
    )
}

fn stream_head(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
}

fn tail(s: &mut TcpStream, done: bool) -> std::io::Result<()> {
    chunk(
        s,
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    )?;
    chunk(
        s,
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":4,\"total_tokens\":14}}\n\n",
    )?;
    if done {
        chunk(s, "data: [DONE]\n\n")?;
    }
    s.write_all(b"0\r\n\r\n")
}

/// Reads one request (head and Content-Length body); None at EOF.
fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(head)
}

fn json(s: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Answers one generation request; Ok(false) when the connection must close.
fn answer(s: &mut TcpStream, fault: Fault) -> std::io::Result<bool> {
    match fault {
        Fault::Ok | Fault::DropNext => {
            stream_head(s)?;
            for t in ["a", "b", "c", "d"] {
                content(s, t)?;
            }
            tail(s, true)?;
            Ok(true)
        }
        Fault::NoDone => {
            stream_head(s)?;
            for t in ["a", "b", "c", "d"] {
                content(s, t)?;
            }
            tail(s, false)?;
            Ok(true)
        }
        Fault::CutMidEvent => {
            stream_head(s)?;
            content(s, "a")?;
            content(s, "b")?;
            chunk(s, "data: {\"choi")?;
            Ok(false)
        }
        Fault::BadJson => {
            stream_head(s)?;
            content(s, "a")?;
            chunk(s, "data: {not json}\n\n")?;
            content(s, "b")?;
            tail(s, true)?;
            Ok(true)
        }
        Fault::Status(code) => {
            json(
                s,
                code,
                &format!("{{\"error\":{{\"message\":\"fault {code}\",\"code\":{code}}}}}"),
            )?;
            Ok(true)
        }
        Fault::Stall(d) => {
            stream_head(s)?;
            content(s, "a")?;
            std::thread::sleep(d);
            Ok(false)
        }
    }
}

fn connection(
    mut s: TcpStream,
    plan: Arc<dyn Fn(u64) -> Fault + Send + Sync>,
    generations: Arc<AtomicU64>,
) {
    let mut drop_next = false;
    while let Some(head) = read_request(&mut s) {
        let first = head.lines().next().unwrap_or("").to_string();
        if first.starts_with("GET /v1/models") {
            let body = format!(
                "{{\"object\":\"list\",\"data\":[{{\"id\":\"{MODEL}\",\"object\":\"model\"}}]}}"
            );
            if json(&mut s, 200, &body).is_err() {
                return;
            }
            continue;
        }
        if drop_next {
            // Read, then closed with no response byte: the client must send it again.
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        let n = generations.fetch_add(1, Ordering::SeqCst);
        let fault = plan(n);
        drop_next = fault == Fault::DropNext;
        match answer(&mut s, fault) {
            Ok(true) => {}
            _ => {
                let _ = s.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

impl FaultServer {
    /// Starts the server on a free loopback port; `plan(n)` picks the fault of the n-th
    /// generation request (0-based, in the order they arrive).
    pub fn start(plan: impl Fn(u64) -> Fault + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let plan: Arc<dyn Fn(u64) -> Fault + Send + Sync> = Arc::new(plan);
        let me = Self {
            port,
            generations: Arc::new(AtomicU64::new(0)),
            connections: Arc::new(AtomicU64::new(0)),
            dead: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (gens, conns, dead, open) = (
            me.generations.clone(),
            me.connections.clone(),
            me.dead.clone(),
            me.open.clone(),
        );
        std::thread::spawn(move || {
            while !dead.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        conns.fetch_add(1, Ordering::SeqCst);
                        if let Ok(c) = s.try_clone() {
                            open.lock().unwrap().push(c);
                        }
                        let (plan, gens) = (plan.clone(), gens.clone());
                        std::thread::spawn(move || connection(s, plan, gens));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            // Dropping the listener refuses every later connect.
        });
        me
    }

    /// The server goes away: no more connections, the open ones closed.
    pub fn die(&self) {
        self.dead.store(true, Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Let the accept loop see the flag and drop its listener.
        std::thread::sleep(Duration::from_millis(50));
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.die();
    }
}
