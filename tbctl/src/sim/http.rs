//! serve-sim's HTTP/1.1 server: accepting connections, reading request heads (httparse) and
//! Content-Length bodies, keep-alive, response framing, routing, and orderly shutdown.
//!
//! Written directly on tokio's TcpStream rather than hyper/axum so that each streamed chunk is
//! exactly one write whose start time the server records, with no framework buffering between
//! that time and the socket, and so that the per-request cost stays small enough for capacity
//! benchmarks on two cores shared with the load generator.

use std::borrow::Cow;
use std::future::Future;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::config::{SimArgs, SimConfig};
use super::respond::{self, Api, Buffers, Outcome, Reject, Schedule, Texts};
use super::truth::{self, RequestId, TruthRecord, TruthSink, TruthWriter};
use crate::clock::mono_ns;

/// Largest request head accepted (431 beyond).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (413 beyond): far above any prompt, small enough that a
/// broken client cannot make the server hoard memory.
const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 64;
/// How long requests still being answered at shutdown may take before they are cut off.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The zero-length chunk that ends a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A response head to write.
pub(crate) struct Head<'a> {
    pub status: u16,
    pub content_type: &'a str,
    /// `Some` for a Content-Length body, `None` for a chunked stream.
    pub content_length: Option<usize>,
    pub close: bool,
}

/// Appends a response head.
pub(crate) fn push_head(out: &mut Vec<u8>, h: Head<'_>) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\n",
        h.status,
        reason(h.status),
        h.content_type
    );
    match h.content_length {
        Some(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        None => out.extend_from_slice(b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"),
    }
    if h.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk frame of a chunked body: hex size line, data, CRLF.
pub(crate) fn push_chunk_frame(out: &mut Vec<u8>, data: &[u8]) {
    // Hand-rolled hex: this runs for every chunk of every stream.
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    Health,
    Models,
    Tags,
    Generate(Api),
    WrongMethod,
    NotFound,
}

fn route(method: &str, path: &str) -> (Route, Cow<'static, str>) {
    let (get, post) = (method == "GET", method == "POST");
    let known = |r: Route, p: &'static str, ok: bool| {
        (if ok { r } else { Route::WrongMethod }, Cow::Borrowed(p))
    };
    match path {
        "/health" => known(Route::Health, "/health", get),
        "/v1/models" => known(Route::Models, "/v1/models", get),
        "/api/tags" => known(Route::Tags, "/api/tags", get),
        "/v1/chat/completions" => known(
            Route::Generate(Api::OpenAiChat),
            "/v1/chat/completions",
            post,
        ),
        "/v1/completions" => known(
            Route::Generate(Api::OpenAiCompletions),
            "/v1/completions",
            post,
        ),
        "/api/chat" => known(Route::Generate(Api::OllamaChat), "/api/chat", post),
        "/api/generate" => known(Route::Generate(Api::OllamaGenerate), "/api/generate", post),
        other => (Route::NotFound, Cow::Owned(other.to_string())),
    }
}

/// The parts of a request head the server uses.
struct ReqHead {
    method: String,
    route: Route,
    path: Cow<'static, str>,
    head_len: usize,
    content_length: usize,
    /// A Transfer-Encoding header was sent: the body length is unknown to us.
    chunked: bool,
    close: bool,
    expect_continue: bool,
    rid: Option<RequestId>,
}

/// A head that cannot be served; the connection is closed after the answer.
#[derive(Debug)]
struct HeadError {
    status: u16,
    message: &'static str,
}

/// Parses a request head from the start of `buf`; `Ok(None)` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<ReqHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError {
                status: 431,
                message: "too many request headers",
            })
        }
        Err(_) => {
            return Err(HeadError {
                status: 400,
                message: "malformed HTTP request head",
            })
        }
    };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("/");
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let (route, path) = route(method, path);
    let mut head = ReqHead {
        method: method.to_string(),
        route,
        path,
        head_len,
        content_length: 0,
        chunked: false,
        // HTTP/1.0 closes by default; such clients get no keep-alive here at all.
        close: req.version != Some(1),
        expect_continue: false,
        rid: None,
    };
    let mut seen_length = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            match n {
                Some(n) if !seen_length || n == head.content_length => {
                    head.content_length = n;
                    seen_length = true;
                }
                _ => {
                    return Err(HeadError {
                        status: 400,
                        message: "invalid Content-Length",
                    })
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                head.close = true;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("x-tb-rid") {
            head.rid = Some(RequestId::from_header(h.value));
        }
    }
    Ok(Some(head))
}

/// State shared by all connections of one server.
struct Shared {
    cfg: SimConfig,
    /// The model name as a JSON string literal, escaped once.
    model_json: String,
    truth: Option<TruthSink>,
    /// Generation requests so far; a request's number seeds its error and jitter draws.
    generations: AtomicU64,
    /// `--slots`: a generation holds a permit while it streams.
    slots: Option<tokio::sync::Semaphore>,
}

/// A configured server not yet listening: the ground-truth file is open, so a bad path fails
/// before the port is announced.
struct Server {
    shared: Arc<Shared>,
    truth_writer: Option<TruthWriter>,
}

impl Server {
    fn new(cfg: SimConfig) -> anyhow::Result<Server> {
        let (truth, truth_writer) = match &cfg.truth {
            Some(path) => {
                let (sink, writer) = truth::create(path).with_context(|| {
                    format!("cannot create the ground-truth file {}", path.display())
                })?;
                (Some(sink), Some(writer))
            }
            None => (None, None),
        };
        let model_json = serde_json::to_string(&cfg.model)?;
        let slots = cfg.slots.map(|n| tokio::sync::Semaphore::new(n as usize));
        Ok(Server {
            shared: Arc::new(Shared {
                slots,
                cfg,
                model_json,
                truth,
                generations: AtomicU64::new(0),
            }),
            truth_writer,
        })
    }

    async fn serve(self, listener: TcpListener, shutdown: impl Future) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(connection(stream, self.shared.clone(), stop_rx.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("serve-sim: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(done) = conns.join_next(), if !conns.is_empty() => log_join(done),
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            while let Some(done) = conns.join_next().await {
                log_join(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "serve-sim: cutting off {} connection(s) still answering after {:?}",
                conns.len(),
                DRAIN_GRACE
            );
            conns.shutdown().await;
        }
        if let Some(writer) = self.truth_writer {
            tokio::task::spawn_blocking(move || writer.finish())
                .await
                .context("ground-truth writer")?
                .context("cannot write the ground-truth file")?;
        }
        Ok(())
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("serve-sim: a connection task panicked: {e}");
        }
    }
}

/// Serves `cfg` on `listener` until `shutdown` completes, then lets requests in progress finish
/// (for a short grace period) and flushes the ground truth.
pub async fn serve(
    listener: TcpListener,
    cfg: SimConfig,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    Server::new(cfg)?.serve(listener, shutdown).await
}

/// `tbctl serve-sim`: listens where the flags say, writes the port file, serves until Ctrl-C
/// or SIGTERM, then flushes the ground truth.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let server = Server::new(args.config())?;
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}: pick another --port or --host"))?;
    let local = listener.local_addr()?;
    if let Some(path) = &args.port_file {
        write_port_file(path, local.port())?;
    }
    tracing::info!(
        "serve-sim listening on http://{local} (model {}, ttft {:?}, itl {:?}, jitter {})",
        args.model,
        args.ttft,
        args.itl,
        args.jitter
    );
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("serve-sim stopped");
    Ok(())
}

/// Writes the port through a temporary file and a rename, so a script polling for the file
/// never reads it half-written.
fn write_port_file(path: &Path, port: u16) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{port}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the port file {}", path.display()))
}

/// Ctrl-C or SIGTERM: scripts stop the server with `kill`, and that must flush the truth too.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// An in-process serve-sim on an ephemeral loopback port, for tests.
pub struct SimHandle {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl SimHandle {
    /// Starts a server for `cfg` on 127.0.0.1 and an ephemeral port. Dropping the handle stops
    /// the server too, but only [`SimHandle::stop`] waits for the ground truth to be flushed.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<(SocketAddr, SimHandle)> {
        let server = Server::new(cfg)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok((addr, SimHandle { addr, stop, task }))
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in progress finish, and flushes the ground truth.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("serve-sim task")?
    }
}

/// Serves one connection: requests one after another until the client closes, asks to close,
/// sends something unservable, or the server shuts down while the connection is idle.
async fn connection(mut stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Each chunk must leave at once: Nagle would hold small chunks back for an ACK.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("serve-sim: TCP_NODELAY: {e}");
    }
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut bufs = Buffers::default();
    loop {
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) if buf.len() >= MAX_HEAD => {
                    let e = HeadError {
                        status: 431,
                        message: "request head too large",
                    };
                    refuse(&mut stream, &mut bufs, &e).await;
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    refuse(&mut stream, &mut bufs, &e).await;
                    return;
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8 * 1024);
            }
            let read = tokio::select! {
                read = stream.read_buf(&mut buf) => read,
                _ = stop.wait_for(|stopping| *stopping) => return,
            };
            match read {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("serve-sim: read: {e}");
                    return;
                }
            }
        };

        if head.chunked {
            let e = HeadError {
                status: 411,
                message: "chunked request bodies are not supported: send Content-Length",
            };
            refuse(&mut stream, &mut bufs, &e).await;
            return;
        }
        if head.content_length > MAX_BODY {
            let e = HeadError {
                status: 413,
                message: "request body too large",
            };
            refuse(&mut stream, &mut bufs, &e).await;
            return;
        }
        let total = head.head_len + head.content_length;
        if head.expect_continue
            && buf.len() < total
            && stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        while buf.len() < total {
            buf.reserve(total - buf.len());
            match stream.read_buf(&mut buf).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("serve-sim: read: {e}");
                    return;
                }
            }
        }
        let t_read_ns = mono_ns();
        let request = buf.split_to(total);
        let body = &request[head.head_len..];
        let close = head.close || *stop.borrow();
        let written = handle(
            &mut stream,
            &shared,
            &head,
            body,
            t_read_ns,
            close,
            &mut bufs,
        )
        .await;
        if !written || close {
            return;
        }
    }
}

/// Answers a head that cannot be served, then the caller closes the connection.
async fn refuse(stream: &mut TcpStream, bufs: &mut Buffers, e: &HeadError) {
    let body = respond::error_body(e.message, "invalid_request_error", e.status);
    write_simple(stream, bufs, e.status, &body, true).await;
}

/// Answers one request; false when the connection can no longer be used.
async fn handle(
    stream: &mut TcpStream,
    shared: &Shared,
    head: &ReqHead,
    body: &[u8],
    t_read_ns: u64,
    close: bool,
    bufs: &mut Buffers,
) -> bool {
    let cfg = &shared.cfg;
    let mut output_tokens = 0;
    let (status, outcome) = match head.route {
        Route::Health => (
            200,
            write_simple(stream, bufs, 200, br#"{"status":"ok"}"#, close).await,
        ),
        Route::Models => {
            let body = respond::models_body(&shared.model_json);
            (200, write_simple(stream, bufs, 200, &body, close).await)
        }
        Route::Tags => {
            let body = respond::tags_body(&shared.model_json);
            (200, write_simple(stream, bufs, 200, &body, close).await)
        }
        Route::NotFound | Route::WrongMethod => {
            let (status, kind) = if head.route == Route::NotFound {
                (404, "not_found_error")
            } else {
                (405, "invalid_request_error")
            };
            let msg = format!("no route for {} {}", head.method, head.path);
            let body = respond::error_body(&msg, kind, status);
            (
                status,
                write_simple(stream, bufs, status, &body, close).await,
            )
        }
        Route::Generate(api) => match respond::parse_generation(api, body, cfg) {
            Err(Reject::BadRequest(msg)) => {
                let body = respond::error_body(&msg, "invalid_request_error", 400);
                (400, write_simple(stream, bufs, 400, &body, close).await)
            }
            Err(Reject::UnknownModel(model)) => {
                let msg = format!("model '{model}' not found");
                let body = respond::error_body(&msg, "not_found_error", 404);
                (404, write_simple(stream, bufs, 404, &body, close).await)
            }
            Ok(gen) => {
                let ordinal = shared.generations.fetch_add(1, Ordering::Relaxed);
                let mut rng = SmallRng::seed_from_u64(request_seed(cfg.seed, ordinal));
                if cfg.error_rate > 0.0 && rng.random::<f64>() < cfg.error_rate {
                    let body = respond::error_body("simulated server error", "server_error", 500);
                    (500, write_simple(stream, bufs, 500, &body, close).await)
                } else {
                    // A queued request's TTFT starts when it gets a slot; the wait stays in
                    // the TTFT a client measures from its send.
                    let (_slot, t_start_ns) = match &shared.slots {
                        Some(s) => (s.acquire().await.ok(), mono_ns()),
                        None => (None, t_read_ns),
                    };
                    let texts = Texts::new(api, ordinal, &shared.model_json);
                    let mut sched = Schedule::new(cfg, t_start_ns, rng.random());
                    let req = respond::Request {
                        gen: &gen,
                        texts: &texts,
                        t_read_ns,
                        close,
                        prelude: cfg.prelude,
                        tokens_per_chunk: cfg.tokens_per_chunk,
                        record: shared.truth.is_some(),
                    };
                    output_tokens = gen.tokens;
                    (200, respond::answer(stream, req, &mut sched, bufs).await)
                }
            }
        },
    };
    let ok = outcome.error.is_none();
    if let Some(e) = &outcome.error {
        tracing::debug!("serve-sim: writing the response to {}: {e}", head.path);
    }
    if let Some(sink) = &shared.truth {
        sink.send(TruthRecord {
            request_id: head.rid.clone(),
            path: head.path.to_string(),
            t_read_ns,
            t_head_ns: outcome.t_head_ns,
            chunks: outcome.chunks,
            chunks_end_ns: outcome.chunks_end_ns,
            t_end_ns: outcome.t_end_ns,
            output_tokens,
            status,
            error: outcome.error.map(|e| e.to_string()),
        });
    }
    ok
}

/// The seed of generation request number `ordinal`: reproducible from `--seed` alone.
fn request_seed(seed: u64, ordinal: u64) -> u64 {
    seed ^ ordinal.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Writes a complete Content-Length JSON response in one write.
async fn write_simple<W: AsyncWrite + Unpin>(
    w: &mut W,
    bufs: &mut Buffers,
    status: u16,
    body: &[u8],
    close: bool,
) -> Outcome {
    let out = &mut bufs.out;
    out.clear();
    push_head(
        out,
        Head {
            status,
            content_type: "application/json",
            content_length: Some(body.len()),
            close,
        },
    );
    out.extend_from_slice(body);
    let t0 = mono_ns();
    let result = w.write_all(out).await;
    Outcome {
        t_head_ns: Some(t0),
        t_end_ns: mono_ns(),
        error: result.err(),
        ..Outcome::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A raw HTTP/1.1 client that keeps each chunk frame apart, so tests see the server's writes.
    struct Client {
        s: TcpStream,
        buf: BytesMut,
    }

    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        /// Chunk frames' data (chunked responses), without the terminating empty chunk.
        frames: Vec<Vec<u8>>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("JSON body")
        }
    }

    impl Client {
        async fn connect(addr: SocketAddr) -> Client {
            Client {
                s: TcpStream::connect(addr).await.unwrap(),
                buf: BytesMut::new(),
            }
        }

        async fn send(&mut self, method: &str, path: &str, body: &str, extra: &str) {
            let req = format!(
                "{method} {path} HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
                body.len()
            );
            self.s.write_all(req.as_bytes()).await.unwrap();
        }

        async fn fill(&mut self, n: usize) -> bool {
            while self.buf.len() < n {
                if self.s.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return false;
                }
            }
            true
        }

        async fn line(&mut self) -> String {
            loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line = self.buf.split_to(i + 2);
                    return String::from_utf8(line[..i].to_vec()).unwrap();
                }
                let have = self.buf.len();
                assert!(self.fill(have + 1).await, "connection closed mid-line");
            }
        }

        async fn response(&mut self) -> Resp {
            let (status, headers, head_len) = loop {
                let mut hs = [httparse::EMPTY_HEADER; 32];
                let mut r = httparse::Response::new(&mut hs);
                if let httparse::Status::Complete(n) = r.parse(&self.buf).unwrap() {
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (r.code.unwrap(), headers, n);
                }
                let have = self.buf.len();
                assert!(self.fill(have + 1).await, "connection closed mid-head");
            };
            let _ = self.buf.split_to(head_len);
            let mut resp = Resp {
                status,
                headers,
                frames: Vec::new(),
                body: Vec::new(),
            };
            if let Some(n) = resp.header("content-length") {
                let n: usize = n.parse().unwrap();
                assert!(self.fill(n).await);
                resp.body = self.buf.split_to(n).to_vec();
            } else {
                assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
                loop {
                    let size = usize::from_str_radix(&self.line().await, 16).unwrap();
                    assert!(self.fill(size + 2).await);
                    let data = self.buf.split_to(size + 2);
                    assert_eq!(&data[size..], b"\r\n");
                    if size == 0 {
                        break;
                    }
                    resp.body.extend_from_slice(&data[..size]);
                    resp.frames.push(data[..size].to_vec());
                }
            }
            resp
        }

        async fn closed(&mut self) -> bool {
            self.buf.is_empty() && self.s.read_buf(&mut self.buf).await.unwrap() == 0
        }
    }

    fn sse_json(frame: &[u8]) -> Value {
        let text = std::str::from_utf8(frame).unwrap();
        let data = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not one SSE event: {text:?}"));
        serde_json::from_str(data).unwrap()
    }

    fn truth_cfg(dir: &tempfile::TempDir) -> SimConfig {
        SimConfig {
            truth: Some(dir.path().join("truth.jsonl")),
            ..SimConfig::default()
        }
    }

    const MS: u64 = 1_000_000;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openai_chat_stream_with_usage_and_truth() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            ttft: Duration::from_millis(20),
            itl: Duration::from_millis(4),
            jitter: 0.25,
            tokens_per_chunk: 2,
            ..truth_cfg(&dir)
        };
        let (addr, sim) = SimHandle::start(cfg.clone()).await.unwrap();
        let mut c = Client::connect(addr).await;
        c.send(
            "POST",
            "/v1/chat/completions",
            r#"{"model":"sim-model","messages":[{"role":"user","content":"hi there"}],"max_tokens":9,"stream":true,"stream_options":{"include_usage":true}}"#,
            "x-tb-rid: 7\r\n",
        )
        .await;
        let r = c.response().await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/event-stream"));
        // prelude, 5 content chunks (2+2+2+2+1 tokens), then finish, usage, [DONE].
        assert_eq!(r.frames.len(), 1 + 5 + 3, "{:?}", r.frames.len());
        let prelude = sse_json(&r.frames[0]);
        assert_eq!(prelude["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(prelude["choices"][0]["delta"]["content"], "");
        let mut tokens = Vec::new();
        for f in &r.frames[1..6] {
            let v = sse_json(f);
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["model"], "sim-model");
            assert!(v["choices"][0]["finish_reason"].is_null());
            let text = v["choices"][0]["delta"]["content"].as_str().unwrap();
            tokens.push(crate::tokens::estimate(text));
        }
        assert_eq!(tokens, [2, 2, 2, 2, 1]);
        let finish = sse_json(&r.frames[6]);
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        assert_eq!(finish["choices"][0]["delta"], serde_json::json!({}));
        let usage = sse_json(&r.frames[7]);
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 9);
        assert_eq!(usage["usage"]["prompt_tokens"], 2);
        assert_eq!(usage["usage"]["total_tokens"], 11);
        assert_eq!(r.frames[8], b"data: [DONE]\n\n");
        sim.stop().await.unwrap();

        let truth = truth::read(cfg.truth.as_ref().unwrap()).unwrap();
        assert_eq!(truth.len(), 1);
        let t = &truth[0];
        assert_eq!(t.request_id, Some(RequestId::Num(7)));
        assert_eq!(t.path, "/v1/chat/completions");
        assert_eq!((t.status, t.output_tokens), (200, 9));
        let counts: Vec<u64> = t.chunks.iter().map(|c| c[1]).collect();
        assert_eq!(counts, [2, 2, 2, 2, 1]);
        let head = t.t_head_ns.unwrap();
        assert!(t.t_read_ns <= head && head < t.chunks[0][0]);
        // The first chunk carries two tokens: TTFT plus one ITL, each at least d*(1-j).
        assert!(t.chunks[0][0] - t.t_read_ns >= (20 * MS + 4 * MS) * 3 / 4);
        // Never early against the schedule: token n (from 1) is due no sooner than TTFT plus
        // n - 1 ITLs, each at least d*(1-j), after the read. Gaps alone may be short: the
        // schedule is absolute, so a chunk written late is followed by one on time (CI once
        // saw 4.07 ms between two 2-token chunks after a late one).
        let mut tokens = 0;
        for c in &t.chunks {
            tokens += c[1];
            let due = 15 * MS + (tokens - 1) * 3 * MS;
            let at = c[0] - t.t_read_ns;
            assert!(
                at + MS / 2 >= due,
                "token {tokens} at {at} ns, due from {due} ns"
            );
        }
        for (w, end) in t.chunks.windows(2).zip(&t.chunks_end_ns) {
            assert!(w[1][0] > w[0][0] && *end >= w[0][0]);
            let gap = w[1][0] - w[0][0];
            let k = w[1][1];
            // Late by scheduling noise at most (generous: CI runs this next to root tests
            // that saturate both cores, and a 10 ms bound once failed there).
            assert!(gap <= k * 5 * MS + 50 * MS, "gap {gap} ns for {k} tokens");
        }
        assert!(t.t_end_ns >= t.chunks[4][0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_follow_the_schedule_never_early() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            ttft: Duration::from_millis(10),
            itl: Duration::from_millis(8),
            jitter: 0.5,
            seed: 42,
            ..truth_cfg(&dir)
        };
        let (addr, sim) = SimHandle::start(cfg.clone()).await.unwrap();
        let mut c = Client::connect(addr).await;
        c.send(
            "POST",
            "/v1/completions",
            r#"{"prompt":"x","max_tokens":24,"stream":true}"#,
            "",
        )
        .await;
        let r = c.response().await;
        assert_eq!(r.frames.len(), 24 + 2);
        sim.stop().await.unwrap();

        let t = &truth::read(cfg.truth.as_ref().unwrap()).unwrap()[0];
        assert_eq!(t.chunks.len(), 24);
        // Rebuild the server's schedule from the seed: every write starts at or after its
        // deadline, and the gaps between deadlines lie within the jitter bounds.
        let mut rng = SmallRng::seed_from_u64(request_seed(42, 0));
        // No error draw precedes the schedule's seed: error_rate is 0.
        let mut sched = Schedule::new(&cfg, t.t_read_ns, rng.random());
        let mut late = Vec::new();
        let mut prev_due = None;
        for c in &t.chunks {
            let due = sched.chunk_due(1);
            assert!(c[0] >= due, "chunk written {} ns early", due - c[0]);
            late.push(c[0] - due);
            if let Some(p) = prev_due {
                let gap = due - p;
                assert!((4 * MS..=12 * MS).contains(&gap), "scheduled gap {gap}");
            } else {
                assert!((5 * MS..=15 * MS).contains(&(due - t.t_read_ns)));
            }
            prev_due = Some(due);
        }
        late.sort_unstable();
        assert!(
            late[late.len() / 2] < 2 * MS,
            "median lateness {} ns",
            late[12]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_one_slot_a_second_request_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            ttft: Duration::from_millis(30),
            itl: Duration::from_millis(5),
            jitter: 0.0,
            slots: Some(1),
            ..truth_cfg(&dir)
        };
        let (addr, sim) = SimHandle::start(cfg.clone()).await.unwrap();
        let body = r#"{"prompt":"x","max_tokens":4,"stream":true}"#;
        let (mut a, mut b) = (Client::connect(addr).await, Client::connect(addr).await);
        a.send("POST", "/v1/completions", body, "").await;
        b.send("POST", "/v1/completions", body, "").await;
        let (ra, rb) = tokio::join!(a.response(), b.response());
        assert_eq!((ra.frames.len(), rb.frames.len()), (6, 6));
        sim.stop().await.unwrap();
        let mut t = truth::read(cfg.truth.as_ref().unwrap()).unwrap();
        t.sort_by_key(|r| r.chunks[0][0]);
        // The second got its slot when the first ended (30 ms + 3 × 5 ms), then waited its
        // own 30 ms: its first token is at least 75 ms after it was read.
        let first_token = |r: &TruthRecord| r.chunks[0][0] - r.t_read_ns;
        assert!(first_token(&t[0]) < 45 * MS, "{}", first_token(&t[0]));
        assert!(first_token(&t[1]) >= 75 * MS, "{}", first_token(&t[1]));
        assert!(t[1].chunks[0][0] >= t[0].t_end_ns + 30 * MS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ollama_ndjson_and_non_streaming() {
        let cfg = SimConfig {
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            tokens_per_chunk: 3,
            ..SimConfig::default()
        };
        let (addr, sim) = SimHandle::start(cfg).await.unwrap();
        let mut c = Client::connect(addr).await;
        c.send(
            "POST",
            "/api/chat",
            r#"{"model":"sim-model","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":7}}"#,
            "",
        )
        .await;
        let r = c.response().await;
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        let lines: Vec<Value> = r
            .frames
            .iter()
            .map(|f| {
                assert_eq!(f.last(), Some(&b'\n'));
                serde_json::from_slice(f).unwrap()
            })
            .collect();
        assert_eq!(lines.len(), 3 + 1);
        let words: u32 = lines[..3]
            .iter()
            .map(|l| {
                assert_eq!(l["done"], false);
                crate::tokens::estimate(l["message"]["content"].as_str().unwrap())
            })
            .sum();
        assert_eq!(words, 7);
        let last = &lines[3];
        assert_eq!(last["done"], true);
        assert_eq!(last["done_reason"], "length");
        assert_eq!(last["eval_count"], 7);
        assert_eq!(last["prompt_eval_count"], 1);

        c.send(
            "POST",
            "/api/generate",
            r#"{"model":"sim-model","prompt":"hi","stream":false}"#,
            "",
        )
        .await;
        let v = c.response().await.json();
        assert_eq!(v["done"], true);
        assert_eq!(v["eval_count"], 32);
        assert_eq!(crate::tokens::estimate(v["response"].as_str().unwrap()), 32);

        for (path, body) in [
            ("/v1/chat/completions", r#"{"messages":[],"max_tokens":5}"#),
            ("/v1/completions", r#"{"prompt":"a b","max_tokens":5}"#),
        ] {
            c.send("POST", path, body, "").await;
            let r = c.response().await;
            assert_eq!(r.status, 200);
            let v = r.json();
            assert_eq!(v["usage"]["completion_tokens"], 5);
            assert_eq!(v["choices"][0]["finish_reason"], "length");
            let text = v["choices"][0]["message"]["content"]
                .as_str()
                .or(v["choices"][0]["text"].as_str())
                .unwrap();
            assert_eq!(crate::tokens::estimate(text), 5);
        }
        sim.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_until_connection_close() {
        let cfg = SimConfig {
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            prelude: false,
            ..SimConfig::default()
        };
        let (addr, sim) = SimHandle::start(cfg).await.unwrap();
        let mut c = Client::connect(addr).await;
        c.send("GET", "/v1/models", "", "").await;
        let r = c.response().await;
        assert_eq!(r.json()["data"][0]["id"], "sim-model");
        assert_eq!(r.json()["data"][0]["owned_by"], "serve-sim");
        c.send(
            "POST",
            "/v1/chat/completions",
            r#"{"max_tokens":3,"stream":true}"#,
            "",
        )
        .await;
        let r = c.response().await;
        // No prelude, no usage: 3 content chunks, finish, [DONE].
        assert_eq!(r.frames.len(), 5);
        assert_eq!(r.header("connection"), None);
        c.send("GET", "/api/tags?x=1", "", "connection: close\r\n")
            .await;
        let r = c.response().await;
        assert_eq!(r.json()["models"][0]["name"], "sim-model");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed().await);
        sim.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            error_rate: 1.0,
            ..truth_cfg(&dir)
        };
        let (addr, sim) = SimHandle::start(cfg.clone()).await.unwrap();
        let mut c = Client::connect(addr).await;
        c.send("GET", "/health", "", "").await;
        assert_eq!(c.response().await.status, 200);
        c.send(
            "POST",
            "/v1/chat/completions",
            r#"{"stream":true}"#,
            "x-tb-rid: abc\r\n",
        )
        .await;
        let r = c.response().await;
        assert_eq!(r.status, 500);
        assert_eq!(r.json()["error"]["type"], "server_error");
        c.send("POST", "/api/chat", r#"{"model":"nope"}"#, "").await;
        let r = c.response().await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"]["message"], "model 'nope' not found");
        c.send("POST", "/v1/completions", "{not json", "").await;
        assert_eq!(c.response().await.status, 400);
        c.send("POST", "/v2/whatever", "{}", "").await;
        assert_eq!(c.response().await.status, 404);
        c.send("GET", "/v1/chat/completions", "", "").await;
        assert_eq!(c.response().await.status, 405);

        let mut c2 = Client::connect(addr).await;
        c2.s.write_all(
            b"POST /v1/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(c2.response().await.status, 411);
        assert!(c2.closed().await);
        sim.stop().await.unwrap();

        let truth = truth::read(cfg.truth.as_ref().unwrap()).unwrap();
        let statuses: Vec<u16> = truth.iter().map(|t| t.status).collect();
        assert_eq!(statuses, [200, 500, 404, 400, 404, 405]);
        assert_eq!(truth[1].request_id, Some(RequestId::Text("abc".into())));
        assert!(truth[1].chunks.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn error_rate_is_a_seeded_fraction() {
        let cfg = SimConfig {
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            error_rate: 0.3,
            seed: 5,
            ..SimConfig::default()
        };
        let (addr, sim) = SimHandle::start(cfg).await.unwrap();
        let mut c = Client::connect(addr).await;
        let mut errors = 0;
        for _ in 0..200 {
            c.send("POST", "/v1/completions", r#"{"max_tokens":1}"#, "")
                .await;
            if c.response().await.status == 500 {
                errors += 1;
            }
        }
        assert!((30..=90).contains(&errors), "{errors} errors of 200");
        sim.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_closes_idle_connections_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            ..truth_cfg(&dir)
        };
        let (addr, sim) = SimHandle::start(cfg.clone()).await.unwrap();
        let mut clients = Vec::new();
        for i in 0..8 {
            let mut c = Client::connect(addr).await;
            c.send(
                "POST",
                "/v1/chat/completions",
                r#"{"stream":true,"max_tokens":4}"#,
                &format!("x-tb-rid: {i}\r\n"),
            )
            .await;
            assert_eq!(c.response().await.frames.len(), 1 + 4 + 2);
            clients.push(c);
        }
        tokio::time::timeout(Duration::from_secs(1), sim.stop())
            .await
            .expect("stop waits for no idle connection")
            .unwrap();
        for c in &mut clients {
            assert!(c.closed().await);
        }
        let truth = truth::read(cfg.truth.as_ref().unwrap()).unwrap();
        assert_eq!(truth.len(), 8);
        assert!(truth.iter().all(|t| t.chunks.len() == 4));
    }

    #[test]
    fn chunk_frames_and_heads() {
        let mut out = Vec::new();
        push_chunk_frame(&mut out, &[b'x'; 300]);
        assert!(out.starts_with(b"12c\r\nxxx"));
        assert!(out.ends_with(b"x\r\n"));
        out.clear();
        push_chunk_frame(&mut out, b"");
        assert_eq!(out, b"0\r\n\r\n");
        let h = parse_head(b"POST /v1/completions?a=b HTTP/1.1\r\nContent-Length: 2\r\nX-TB-RID: 12\r\nConnection: keep-alive, Close\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!(h.route, Route::Generate(Api::OpenAiCompletions));
        assert_eq!((h.content_length, h.close), (2, true));
        assert_eq!(h.rid, Some(RequestId::Num(12)));
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n")
                .err()
                .map(|e| e.status),
            Some(400)
        );
        assert!(
            parse_head(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
    }
}
