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
    /// Connects and completes the HTTP/1 handshake (no request is sent yet). With
    /// `socket_arrivals`, every read is stamped with its data's arrival too (SO_TIMESTAMPING).
    pub async fn connect(addr: SocketAddr, socket_arrivals: bool) -> Result<Self, ClientError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let local_addr = tcp
            .local_addr()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let stamps = Arc::new(Stamps::default());
        let mut timed = TimedStream::new(tcp, stamps.clone());
        if socket_arrivals {
            timed = timed.with_socket_arrivals().map_err(|e| {
                ClientError::Connect(format!("socket arrivals (SO_TIMESTAMPING): {e}"))
            })?;
        }
        let io = TokioIo::new(timed);
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
        body: Bytes,
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
            .body(Full::new(body))
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
                        reader.arrived(stamps.last_arrival());
                        reader.push(&data, stamps.last_read(), rec);
                    }
                }
                reader.arrived(stamps.last_arrival());
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the scripted server does with one request it has read whole.
    #[derive(Clone)]
    enum Reply {
        /// Writes these bytes and keeps the connection.
        Send(String),
        /// Writes these bytes, then closes.
        SendAndClose(String),
        /// Writes these bytes, then never writes again.
        Stall(String),
    }

    const SSE: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n"
    );

    fn ok_sse() -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{SSE}",
            SSE.len()
        )
    }

    /// A one-connection HTTP/1.1 server that answers its requests from `replies` in turn, then
    /// waits for the client to close; returns its address and the request heads it read.
    async fn serve(replies: Vec<Reply>) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let (mut heads, mut buf) = (Vec::new(), Vec::new());
            for reply in replies {
                // A request head, then its Content-Length of body.
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut b = [0u8; 4096];
                    let n = s.read(&mut b).await.unwrap();
                    assert!(n > 0, "the client closed early");
                    buf.extend_from_slice(&b[..n]);
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.parse().unwrap());
                while buf.len() < end + len {
                    let mut b = [0u8; 4096];
                    let n = s.read(&mut b).await.unwrap();
                    buf.extend_from_slice(&b[..n]);
                }
                buf.drain(..end + len);
                heads.push(head);
                match reply {
                    Reply::Send(r) => s.write_all(r.as_bytes()).await.unwrap(),
                    Reply::SendAndClose(r) => {
                        s.write_all(r.as_bytes()).await.unwrap();
                        return heads;
                    }
                    Reply::Stall(r) => {
                        s.write_all(r.as_bytes()).await.unwrap();
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return heads;
                    }
                }
            }
            // Out of replies: keep the connection until the client closes it.
            let _ = s.read(&mut [0u8; 1]).await;
            heads
        });
        (addr, task)
    }

    fn tpl() -> RequestTemplate {
        RequestTemplate {
            path: "/v1/chat/completions".into(),
            host_header: "inference.local".into(),
            authorization: Some("Bearer k".into()),
            flavour: ApiFlavour::OpenAiChat,
            stream: true,
        }
    }

    async fn send(c: &mut Conn, id: u64) -> (Result<(), ClientError>, RequestRecord) {
        let mut rec = RequestRecord {
            request_id: id,
            ..Default::default()
        };
        let r = c
            .execute(
                &tpl(),
                Bytes::from_static(b"{}"),
                &mut rec,
                Duration::from_secs(10),
            )
            .await;
        (r, rec)
    }

    #[tokio::test]
    async fn a_kept_alive_connection_carries_requests_in_turn_each_timed_whole() {
        let (addr, server) = serve(vec![Reply::Send(ok_sse()), Reply::Send(ok_sse())]).await;
        let mut c = Conn::connect(addr, false).await.unwrap();
        assert!(c.is_usable());
        for id in [7, 8] {
            let (r, rec) = send(&mut c, id).await;
            r.unwrap();
            assert_eq!(rec.http_status, Some(200));
            let sent = rec.t_sent_ns.unwrap();
            assert!(rec.t_first_byte_ns.unwrap() > sent);
            assert_eq!(rec.chunks.len(), 2);
            assert_eq!(rec.output_tokens, Some(2));
            assert!(c.is_usable(), "still open after request {id}");
        }
        assert_eq!(c.requests, 2);
        drop(c);
        let heads = server.await.unwrap();
        // The request id comes first after the request line: tbd reads only a prefix.
        assert!(
            heads[0].starts_with("POST /v1/chat/completions HTTP/1.1\r\nx-tb-rid: 7\r\n"),
            "{}",
            heads[0]
        );
        assert!(heads[1].contains("x-tb-rid: 8\r\n"));
        assert!(heads[1].contains("host: inference.local\r\n"));
        assert!(heads[1].contains("authorization: Bearer k\r\n"));
    }

    #[tokio::test]
    async fn a_close_before_any_answer_is_stale_only_on_a_reused_connection() {
        // A new connection closed under its first request: the request may have been
        // processed, so it is a cut stream, never sent again.
        let (addr, _server) = serve(vec![Reply::SendAndClose(String::new())]).await;
        let mut c = Conn::connect(addr, false).await.unwrap();
        let (r, _) = send(&mut c, 1).await;
        assert!(matches!(r, Err(ClientError::StreamCut(_))), "{r:?}");
        assert!(!c.is_usable());

        // The keep-alive race: the server closed a kept-alive connection as the second
        // request went out, before any answer: safe to send again.
        let (addr, _server) = serve(vec![
            Reply::Send(ok_sse()),
            Reply::SendAndClose(String::new()),
        ])
        .await;
        let mut c = Conn::connect(addr, false).await.unwrap();
        send(&mut c, 1).await.0.unwrap();
        let (r, _) = send(&mut c, 2).await;
        assert!(matches!(r, Err(ClientError::Stale)), "{r:?}");

        // Part of an answer came first: the server took the request; a cut stream.
        let (addr, _server) = serve(vec![
            Reply::Send(ok_sse()),
            Reply::SendAndClose("HTTP/1.1 200 OK\r\nContent-Length: 10".into()),
        ])
        .await;
        let mut c = Conn::connect(addr, false).await.unwrap();
        send(&mut c, 1).await.0.unwrap();
        let (r, _) = send(&mut c, 2).await;
        assert!(matches!(r, Err(ClientError::StreamCut(_))), "{r:?}");
    }

    #[tokio::test]
    async fn an_error_status_keeps_the_start_of_its_body() {
        // Two chunks of 300 bytes: the second is cut to what is left of 512.
        let chunk = "x".repeat(300);
        let (addr, _server) = serve(vec![Reply::Send(format!(
            "HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n\
             12c\r\n{chunk}\r\n12c\r\n{chunk}\r\n0\r\n\r\n"
        ))])
        .await;
        let mut c = Conn::connect(addr, false).await.unwrap();
        let (r, rec) = send(&mut c, 1).await;
        match r {
            Err(ClientError::Http { status, body }) => {
                assert_eq!(status, 429);
                assert_eq!(body, "x".repeat(512));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rec.http_status, Some(429));
        assert!(rec.t_end_ns.is_some());
    }

    #[tokio::test]
    async fn a_response_saying_connection_close_ends_the_connection_at_once() {
        // The server keeps its end open: only the header says the connection is done.
        let close = ok_sse().replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let (addr, _server) = serve(vec![Reply::Send(close)]).await;
        let mut c = Conn::connect(addr, false).await.unwrap();
        send(&mut c, 1).await.0.unwrap();
        assert!(
            !c.is_usable(),
            "the next request would race the server's close"
        );
    }

    #[tokio::test]
    async fn a_stall_past_the_timeout_ends_the_request_and_the_connection() {
        let (addr, _server) = serve(vec![Reply::Stall(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 4000\r\n\r\ndata: "
                .into(),
        )])
        .await;
        let mut c = Conn::connect(addr, false).await.unwrap();
        let mut rec = RequestRecord::default();
        let r = c
            .execute(
                &tpl(),
                Bytes::from_static(b"{}"),
                &mut rec,
                Duration::from_millis(200),
            )
            .await;
        assert!(
            matches!(r, Err(ClientError::Timeout(t)) if t == Duration::from_millis(200)),
            "{r:?}"
        );
        assert!(rec.t_sent_ns.is_some() && rec.t_end_ns.is_some());
        // Mid-response: the connection cannot carry another request.
        assert!(!c.is_usable());
    }
}
