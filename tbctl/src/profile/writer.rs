//! requests.jsonl: each record appended (one write) as its request completes, so a crash
//! loses only requests still in flight.

use std::{fs::File, io::Write, path::Path, sync::mpsc, thread::JoinHandle};

use crate::record::{RequestRecord, RunMeta};

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
                let mut line = Vec::with_capacity(1024);
                for mut rec in rx {
                    rec.derive(&mono_to_unix);
                    line.clear();
                    serde_json::to_writer(&mut line, &rec)?;
                    line.push(b'\n');
                    file.write_all(&line)?;
                    on_record(&rec);
                    all.push(rec);
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
