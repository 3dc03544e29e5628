//! requests.jsonl: records appended as their requests complete (a batch per write when they
//! complete faster than one at a time), so a crash loses only requests still in flight or
//! finished in the last few milliseconds.

use std::{fs::File, io::Write, path::Path, sync::mpsc, thread::JoinHandle};

use crate::record::{RequestRecord, RunMeta};

/// How long the writer lets records gather when they arrive faster than one at a time.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Sends finished records to the writer thread.
#[derive(Clone)]
pub struct RecordSink(mpsc::Sender<RequestRecord>);

impl RecordSink {
    /// Queues a finished record for writing.
    pub fn send(&self, rec: RequestRecord) {
        let _ = self.0.send(rec);
    }
}

/// Called by the writer thread after each record, for progress display.
pub type OnRecord = Box<dyn FnMut(&RequestRecord) + Send>;

/// The writer thread; `finish` returns every record written.
pub struct RecordWriter {
    handle: JoinHandle<std::io::Result<Vec<RequestRecord>>>,
}

impl RecordWriter {
    /// Creates requests.jsonl with its metadata line and starts the writer thread.
    pub fn create(
        path: &Path,
        meta: &RunMeta,
        mono_to_unix: impl Fn(u64) -> u64 + Send + 'static,
        mut on_record: OnRecord,
    ) -> std::io::Result<(RecordSink, RecordWriter)> {
        let mut file = File::create(path)?;
        let mut line = serde_json::to_vec(meta)?;
        line.push(b'\n');
        file.write_all(&line)?;
        let (tx, rx) = mpsc::channel::<RequestRecord>();
        let handle = std::thread::Builder::new()
            .name("tbctl-records".into())
            .spawn(move || {
                let mut all = Vec::new();
                let mut buf = Vec::with_capacity(1 << 16);
                while let Ok(first) = rx.recv() {
                    let start = all.len();
                    all.push(first);
                    all.extend(rx.try_iter());
                    buf.clear();
                    for rec in &mut all[start..] {
                        rec.derive(&mono_to_unix);
                        serde_json::to_writer(&mut buf, &*rec)?;
                        buf.push(b'\n');
                        on_record(rec);
                    }
                    // One write per batch, ending on a whole line.
                    file.write_all(&buf)?;
                    // More than one record was waiting: requests are finishing faster than
                    // a wake-up per record is worth. Let them gather for a moment instead
                    // (a crash then loses at most this long of finished requests).
                    if all.len() - start > 1 {
                        std::thread::sleep(GATHER);
                    }
                }
                file.sync_data()?;
                Ok(all)
            })?;
        Ok((RecordSink(tx), RecordWriter { handle }))
    }

    /// Waits until every sink is dropped and all records are on disk.
    pub fn finish(self) -> std::io::Result<Vec<RequestRecord>> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("record writer panicked")))
    }
}
