//! One HTTP/1.1 keep-alive connection, driven in the same task as the request on it, so each
//! read's timestamp belongs to the bytes the response code sees next (no cross-task hop).

use std::{net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{
    api::flavour::ApiFlavour,
    client::{
        error::ClientError,
        response::ResponseReader,
        timed_io::{Stamps, TimedStream},
    },
    clock::mono_ns,
    record::RequestRecord,
};

type HyperConn = http1::Connection<TokioIo<TimedStream>, Full<Bytes>>;

/// What every request on a target shares.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    /// Full path including the target's base path, e.g. `/v1/chat/completions`.
    pub path: String,
    pub host_header: String,
    pub authorization: Option<String>,
    pub flavour: ApiFlavour,
    pub stream: bool,
}

/// A connection and its stamps.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: Pin<Box<HyperConn>>,
    stamps: Arc<Stamps>,
    /// The local end, which names this connection in tbd's kernel records.
    pub local_addr: SocketAddr,
    /// Requests sent on it so far.
    pub requests: u64,
    closed: bool,
}

impl Conn {
    /// Connects and completes the HTTP/1 handshake (no request is sent yet).
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let local_addr = tcp
            .local_addr()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let stamps = Arc::new(Stamps::default());
        let io = TokioIo::new(TimedStream::new(tcp, stamps.clone()));
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Self {
            sender,
            conn: Box::pin(conn),
            stamps,
            local_addr,
            requests: 0,
            closed: false,
        })
    }

    /// Whether the connection can carry another request.
    pub fn is_usable(&self) -> bool {
        !self.closed && !self.sender.is_closed()
    }

    /// Sends one request and reads its whole response into `rec`, within `timeout`.
    pub async fn execute(
        &mut self,
        tpl: &RequestTemplate,
        body: Vec<u8>,
        rec: &mut RequestRecord,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.requests += 1;
        let reused = self.requests > 1;
        self.stamps.arm();
        let mut req = Request::post(tpl.path.as_str())
            // First header on purpose: tbd's probes copy only a short payload prefix.
            .header("x-tb-rid", rec.request_id)
            .header(header::HOST, tpl.host_header.as_str())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(auth) = &tpl.authorization {
            req = req.header(header::AUTHORIZATION, auth.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        let stamps = self.stamps.clone();
        let stamps_check = self.stamps.clone();
        let sender = &mut self.sender;
        let conn = &mut self.conn;
        let mut conn_done = false;
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = {
            let work = async {
                let resp = sender.send_request(req).await.map_err(|e| {
                    // Unsent, or sent on a reused connection the server closed before any
                    // response byte: the keep-alive race; safe to send again once.
                    let raced =
                        reused && stamps.first_read().is_none() && e.is_incomplete_message();
                    if stamps.sent().is_none() || raced {
                        ClientError::Stale
                    } else {
                        classify_hyper(&e)
                    }
                })?;
                rec.t_sent_ns = stamps.sent();
                rec.t_first_byte_ns = stamps.first_read();
                let status = resp.status().as_u16();
                rec.http_status = Some(status);
                let mut body = resp.into_body();
                if !(200..300).contains(&status) {
                    let mut text = Vec::new();
                    while let Some(Ok(frame)) = body.frame().await {
                        if let Ok(d) = frame.into_data() {
                            text.extend_from_slice(&d[..d.len().min(512 - text.len().min(512))]);
                        }
                    }
                    rec.t_end_ns = Some(stamps.last_read());
                    return Err(ClientError::Http {
                        status,
                        body: String::from_utf8_lossy(&text).trim().to_string(),
                    });
                }
                let mut reader = ResponseReader::new(tpl.flavour, tpl.stream);
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| ClientError::StreamCut(e.to_string()))?;
                    if let Ok(data) = frame.into_data() {
                        reader.push(&data, stamps.last_read(), rec);
                    }
                }
                reader.finish(stamps.last_read(), rec)
            };
            tokio::pin!(work);
            tokio::time::timeout_at(deadline, async {
                loop {
                    tokio::select! {
                        biased;
                        _ = conn.as_mut(), if !conn_done => {
                            conn_done = true;
                            // A finished connection never writes what is queued after it.
                            if stamps_check.sent().is_none() {
                                break Err(ClientError::Stale);
                            }
                        }
                        r = &mut work => break r,
                    }
                }
            })
            .await
        };
        // Let the connection act on a `Connection: close` it has just read, so the next
        // request does not race the server's close.
        if !conn_done && futures_util::poll!(self.conn.as_mut()).is_ready() {
            conn_done = true;
        }
        if conn_done {
            self.closed = true;
        }
        rec.t_sent_ns = rec.t_sent_ns.or(self.stamps.sent());
        match outcome {
            Ok(r) => r,
            Err(_) => {
                // The connection is mid-response: it cannot carry another request.
                self.closed = true;
                rec.t_sent_ns = rec.t_sent_ns.or(self.stamps.sent());
                rec.t_end_ns = Some(mono_ns());
                Err(ClientError::Timeout(timeout))
            }
        }
    }
}

fn classify_hyper(e: &hyper::Error) -> ClientError {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        ClientError::StreamCut(e.to_string())
    } else if e.is_parse() {
        ClientError::Malformed(e.to_string())
    } else {
        ClientError::Connect(e.to_string())
    }
}
