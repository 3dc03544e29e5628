//! Event logs: every ring-buffer record of a live capture written to a file
//! (`tbd --record-events`), and replayed offline through the same reader, tracker and store.
//!
//! Why: tbd's own CPU per request is a few µs inside a whole-machine figure that this VM's
//! drift moves by more than that, so user-space changes are judged on a replay of one recorded
//! capture, which runs the exact code path without probes, load or noise from other processes.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    sync::{Arc, Mutex},
};

use tb_proto::v1::Run;
use tokio::sync::broadcast;

use crate::{
    capture::{Active, Counters, Reader, Source},
    error::TbdError,
    events::Event,
    store::Store,
};

/// What an event log starts with, so that another file is refused in one line.
const MAGIC: &[u8; 8] = b"TBEVLOG1";

/// A log being written: the magic, then each record as its length (u32 LE) and its bytes.
pub struct EventLog {
    out: BufWriter<File>,
    /// Set once a write failed: the log stops there, the capture goes on.
    failed: bool,
}

impl EventLog {
    /// Creates (or truncates) the log at `path`.
    pub fn create(path: &Path) -> Result<Self, TbdError> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(MAGIC)?;
        Ok(Self { out, failed: false })
    }

    /// Appends one record; a failure is logged once and ends the log, never the capture.
    pub fn write(&mut self, record: &[u8]) {
        if self.failed {
            return;
        }
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
        let r = self
            .out
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.out.write_all(&record[..len as usize]));
        self.check(r);
    }

    /// Writes what is buffered: the reader calls it after each drain, so that a log is whole
    /// up to the last drain whenever tbd stops.
    pub fn flush(&mut self) {
        if !self.failed {
            let r = self.out.flush();
            self.check(r);
        }
    }

    /// Whether every write so far reached the file (false from the first that failed on).
    pub fn ok(&self) -> bool {
        !self.failed
    }

    fn check(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            tracing::error!("writing the event log failed, it ends here: {e}");
            self.failed = true;
        }
    }
}

/// A loaded log's records, in order.
struct LogSource {
    log: Arc<[u8]>,
    pos: usize,
}

impl LogSource {
    fn next_record(&mut self) -> Option<&[u8]> {
        let len_end = self.pos.checked_add(4)?;
        let len = u32::from_le_bytes(self.log.get(self.pos..len_end)?.try_into().ok()?) as usize;
        let rec = self.log.get(len_end..len_end.checked_add(len)?)?;
        self.pos = len_end + len;
        Some(rec)
    }
}

impl Source for LogSource {
    fn next_event(&mut self, _log: bool) -> Option<Option<Event>> {
        self.next_record().map(Event::decode)
    }
}

/// Reads an event log into memory, checking its magic.
pub fn load(path: &Path) -> Result<Arc<[u8]>, TbdError> {
    let data = std::fs::read(path)?;
    if !data.starts_with(MAGIC) {
        return Err(TbdError::Layout(format!(
            "{} is not a tbd event log (written by tbd --record-events)",
            path.display()
        )));
    }
    Ok(data.into())
}

/// What a replay made of a log.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replayed {
    /// Records taken from the log (a batch is one).
    pub records: u64,
    /// Probe events they carried (a batch counts each of its chunks).
    pub events: u64,
    pub exchanges: u64,
    pub connections: u64,
    pub dns_lookups: u64,
    /// Store records written.
    pub stored: u64,
}

/// Replays a loaded log (see [`load`]) as one capture named `run_id` into `store`: the
/// live reader's drains, then the stop's flush of what was still open.
pub fn replay(log: Arc<[u8]>, store: Arc<Store>, run_id: &str) -> Result<Replayed, TbdError> {
    let run = Run {
        run_id: run_id.into(),
        label: "replay".into(),
        ..Default::default()
    };
    store.put_run(&run)?;
    let active = Arc::new(Mutex::new(Some(Active::new(run, Vec::new()))));
    let counters = Arc::new(Counters::default());
    let (tail, _) = broadcast::channel(1);
    let mut reader = Reader::new(
        Box::new(LogSource {
            log,
            pos: MAGIC.len(),
        }),
        active.clone(),
        store.clone(),
        counters.clone(),
        tail.clone(),
    );
    while reader.drain() > 0 {}
    reader.store_pending(true);
    let mut a = active
        .lock()
        .expect("active lock")
        .take()
        .expect("the replay's capture");
    let recs = a.finish(u64::MAX, &tail);
    store.append(&recs)?;
    store.put_run(&a.run)?;
    use std::sync::atomic::Ordering::Relaxed;
    Ok(Replayed {
        records: counters.events_received.load(Relaxed),
        events: counters.syscalls_received.load(Relaxed),
        exchanges: a.run.exchanges,
        connections: a.run.connections,
        dns_lookups: a.run.dns_lookups,
        stored: counters.records_stored.load(Relaxed) + recs.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::as_bytes;
    use tb_proto::v1::{Connection, Exchange};
    use tbd_common::{
        kind, op, CloseEvent, ConnectEvent, DataEvent, EventHeader, SockAddr, COMM_LEN, PREFIX_LEN,
    };

    fn hdr(kind: u32, ts_ns: u64) -> EventHeader {
        EventHeader {
            kind,
            pid: 7,
            tid: 7,
            _pad: 0,
            ts_ns,
        }
    }

    fn data(op: u8, t: u64, p: &[u8]) -> Vec<u8> {
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[..p.len()].copy_from_slice(p);
        as_bytes(&DataEvent {
            hdr: hdr(kind::DATA, t),
            ts_enter_ns: t - 5,
            fd: 5,
            bytes: p.len() as u32,
            op,
            _pad: 0,
            prefix_len: p.len() as u16,
            _pad2: 0,
            prefix,
        })
        .to_vec()
    }

    /// `n` streamed exchanges on one keep-alive connection, as raw ring-buffer records, the
    /// connection closed at the end when `close`.
    fn records(n: u64, close: bool) -> Vec<Vec<u8>> {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut comm = [0u8; COMM_LEN];
        comm[..5].copy_from_slice(b"tbctl");
        let mut recs = vec![as_bytes(&ConnectEvent {
            hdr: hdr(kind::CONNECT, 1_000),
            ts_enter_ns: 900,
            fd: 5,
            ret: 0,
            dst: SockAddr {
                family: 2,
                port: 8000,
                addr,
            },
            comm,
        })
        .to_vec()];
        for i in 0..n {
            let t = 10_000 * (i + 1);
            recs.push(data(
                op::WRITE,
                t + 2_000,
                b"POST /v1/completions HTTP/1.1\r\nhost: h\r\n\r\n",
            ));
            recs.push(data(
                op::READ,
                t + 3_000,
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
            ));
            for dt in [4_000, 5_000, 6_000] {
                recs.push(data(op::READ, t + dt, b"data: {}\n\n"));
            }
        }
        if close {
            recs.push(
                as_bytes(&CloseEvent {
                    hdr: hdr(kind::CLOSE, 10_000 * (n + 1)),
                    fd: 5,
                    _pad: 0,
                })
                .to_vec(),
            );
        }
        recs
    }

    fn write_log(path: &Path, recs: &[Vec<u8>]) {
        let mut log = EventLog::create(path).unwrap();
        for r in recs {
            log.write(r);
        }
        log.flush();
        assert!(log.ok());
    }

    #[test]
    fn a_recorded_capture_replays_into_the_store_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        write_log(&path, &records(1, true));
        // A record cut short by a kill mid-write is left out, not misread.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[200, 0, 0, 0, 1, 2, 3])
            .unwrap();
        let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
        let got = replay(load(&path).unwrap(), store.clone(), "r1").unwrap();
        assert_eq!(
            (got.records, got.events, got.exchanges, got.connections),
            (7, 7, 1, 1)
        );
        assert_eq!(got.stored, 2);
        let xs: Vec<Exchange> = store.all("r1").unwrap();
        assert_eq!(xs.len(), 1);
        let times: Vec<u64> = xs[0].chunks.iter().map(|c| c.t_ns).collect();
        assert_eq!(times, [13_000, 14_000, 15_000, 16_000]);
        assert_eq!(xs[0].t_request_first_ns, 11_995);
        assert_eq!(store.all::<Connection>("r1").unwrap().len(), 1);
        let run = store.get_run("r1").unwrap().unwrap();
        assert_eq!((run.exchanges, run.label.as_str()), (1, "replay"));
    }

    #[test]
    fn a_log_longer_than_a_drain_replays_whole_and_what_was_open_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        // 900 exchanges of 5 records: more than one drain of the reader (4,096 records), and
        // the connection still open at the end, as at a capture's stop.
        write_log(&path, &records(900, false));
        let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
        let got = replay(load(&path).unwrap(), store.clone(), "r2").unwrap();
        assert_eq!(
            (got.records, got.exchanges, got.connections),
            (4_501, 900, 1)
        );
        // 899 exchanges finished in the drains, the last and the connection in the flush.
        assert_eq!(got.stored, 901);
        assert_eq!(store.all::<Exchange>("r2").unwrap().len(), 900);
        let c: Vec<Connection> = store.all("r2").unwrap();
        assert_eq!((c.len(), c[0].t_closed_ns, c[0].exchanges), (1, 0, 900));
    }

    #[test]
    fn a_log_whose_writes_fail_stops_and_says_so() {
        // /dev/full takes the open and refuses every write with ENOSPC.
        let mut log = EventLog::create(Path::new("/dev/full")).unwrap();
        assert!(log.ok(), "nothing written to the file yet");
        log.write(&[1, 2, 3]);
        log.flush();
        assert!(!log.ok());
    }

    #[test]
    fn a_file_that_is_not_an_event_log_is_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"{\"not\": \"a log\"}").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("is not a tbd event log"), "{e}");
        assert!(!e.contains('\n'));
    }
}
