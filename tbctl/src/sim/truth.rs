//! serve-sim's ground truth: one JSON line per finished request with the times the server read
//! it and wrote each part of the answer, in CLOCK_MONOTONIC ns. Accuracy tests and benchmarks
//! compare the client's records against these lines.
//!
//! Records travel over a channel to a writer thread, so serialising and file I/O never run on
//! the server's workers and never delay a chunk write.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long a written record may sit in the buffer before it reaches the file: short enough for
/// a test or a script that reads the file while the server runs (or after a kill -9).
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The client's request id as sent in `x-tb-rid`: a number when it is one, so it joins directly
/// to `requests.jsonl`'s numeric ids, else the raw text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A decimal id.
    Num(u64),
    /// Any other header value.
    Text(String),
}

impl RequestId {
    /// The id a header value names.
    pub fn from_header(value: &[u8]) -> RequestId {
        let text = String::from_utf8_lossy(value).trim().to_string();
        match text.parse::<u64>() {
            Ok(n) => RequestId::Num(n),
            Err(_) => RequestId::Text(text),
        }
    }
}

/// One finished request as the server saw it. Times are CLOCK_MONOTONIC ns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TruthRecord {
    /// The `x-tb-rid` request header, or null.
    pub request_id: Option<RequestId>,
    /// Request path, without the query.
    pub path: String,
    /// When the whole request (head and body) had been read.
    pub t_read_ns: u64,
    /// When the write of the response head started (for non-streaming answers: of head and body).
    pub t_head_ns: Option<u64>,
    /// Content chunks only: [time the chunk's write started, tokens in it].
    pub chunks: Vec<[u64; 2]>,
    /// When each content chunk's write returned, parallel to `chunks`.
    #[serde(default)]
    pub chunks_end_ns: Vec<u64>,
    /// When the last write of the response returned.
    pub t_end_ns: u64,
    /// Output tokens generated (what `usage` / `eval_count` reported).
    pub output_tokens: u32,
    /// HTTP status sent.
    pub status: u16,
    /// Why the response could not be written in full (client gone), if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

enum Msg {
    Record(Box<TruthRecord>),
    Finish,
}

/// Cheap handle the connection tasks send finished records through.
#[derive(Clone)]
pub struct TruthSink {
    tx: mpsc::Sender<Msg>,
}

impl TruthSink {
    /// Queues one record. Never blocks; a record sent after the writer finished is dropped.
    pub fn send(&self, record: TruthRecord) {
        let _ = self.tx.send(Msg::Record(Box::new(record)));
    }
}

/// Owns the writer thread; `finish` flushes everything queued and closes the file.
pub struct TruthWriter {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Creates (truncating) `path` and starts its writer thread.
pub fn create(path: &Path) -> io::Result<(TruthSink, TruthWriter)> {
    let file = File::create(path)?;
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sim-truth".to_string())
        .spawn(move || write_loop(rx, BufWriter::with_capacity(1 << 16, file)))?;
    Ok((
        TruthSink { tx: tx.clone() },
        TruthWriter {
            tx,
            thread: Some(thread),
        },
    ))
}

impl TruthWriter {
    /// Writes every record queued so far, flushes and closes the file. Blocks until done (run it
    /// from a blocking context when in async code).
    pub fn finish(mut self) -> io::Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.tx.send(Msg::Finish);
        thread
            .join()
            .map_err(|_| io::Error::other("ground-truth writer thread panicked"))?
    }
}

impl Drop for TruthWriter {
    fn drop(&mut self) {
        if let Err(e) = self.finish_inner() {
            tracing::warn!("ground truth: {e}");
        }
    }
}

fn write_loop(rx: mpsc::Receiver<Msg>, mut out: BufWriter<File>) -> io::Result<()> {
    let mut dirty = false;
    let mut last_flush = Instant::now();
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(Msg::Record(rec)) => {
                serde_json::to_writer(&mut out, &*rec)?;
                out.write_all(b"\n")?;
                dirty = true;
            }
            // Finish comes after every record the server will send (senders are gone or idle),
            // so whatever is still queued now is all there is.
            Ok(Msg::Finish) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                while let Ok(Msg::Record(rec)) = rx.try_recv() {
                    serde_json::to_writer(&mut out, &*rec)?;
                    out.write_all(b"\n")?;
                }
                return out.flush();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if dirty && last_flush.elapsed() >= FLUSH_EVERY {
            out.flush()?;
            dirty = false;
            last_flush = Instant::now();
        }
    }
}

/// Reads a ground-truth file back (tests and benchmark analysis).
pub fn read(path: &Path) -> io::Result<Vec<TruthRecord>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(io::Error::other))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_flush_on_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("truth.jsonl");
        let (sink, writer) = create(&path).unwrap();
        for i in 0..3u64 {
            sink.send(TruthRecord {
                request_id: Some(RequestId::Num(i)),
                path: "/v1/chat/completions".into(),
                t_read_ns: 10,
                t_head_ns: Some(11),
                chunks: vec![[12, 1], [13, 1]],
                chunks_end_ns: vec![12, 13],
                t_end_ns: 14,
                output_tokens: 2,
                status: 200,
                error: None,
            });
        }
        writer.finish().unwrap();
        let recs = read(&path).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].request_id, Some(RequestId::Num(2)));
        assert_eq!(recs[0].chunks, vec![[12, 1], [13, 1]]);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.starts_with(r#"{"request_id":0,"path":"/v1/chat/completions","t_read_ns":10"#));
    }

    #[test]
    fn request_ids() {
        assert_eq!(RequestId::from_header(b"42"), RequestId::Num(42));
        assert_eq!(
            RequestId::from_header(b"run-7"),
            RequestId::Text("run-7".into())
        );
        let null: TruthRecord = serde_json::from_str(
            r#"{"request_id":null,"path":"/","t_read_ns":1,"t_head_ns":null,"chunks":[],"t_end_ns":2,"output_tokens":0,"status":404}"#,
        )
        .unwrap();
        assert_eq!(null.request_id, None);
    }
}
