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

/// Records kept for the summary, in fixed-size blocks: one growing `Vec` of 600,000 records
/// copied itself at every doubling, onto fresh pages the kernel zeroed, which took a tenth of
/// tbctl's CPU at 256 streams (issue 22's profile). A block never moves once allocated.
#[derive(Default)]
struct Blocks {
    full: Vec<Vec<RequestRecord>>,
    current: Vec<RequestRecord>,
}

impl Blocks {
    const SIZE: usize = 4096;

    fn push(&mut self, rec: RequestRecord) {
        if self.current.len() == self.current.capacity() {
            let next = Vec::with_capacity(Self::SIZE);
            let done = std::mem::replace(&mut self.current, next);
            if !done.is_empty() {
                self.full.push(done);
            }
        }
        self.current.push(rec);
    }

    /// Every record in arrival order, moved once into one list (after the run, off the clock).
    fn into_vec(self) -> Vec<RequestRecord> {
        let total = self.full.iter().map(Vec::len).sum::<usize>() + self.current.len();
        let mut all = Vec::with_capacity(total);
        for block in self.full {
            all.extend(block);
        }
        all.extend(self.current);
        all
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
                let mut kept = Blocks::default();
                let mut buf = Vec::with_capacity(1 << 16);
                while let Ok(first) = rx.recv() {
                    buf.clear();
                    let mut batch = 0;
                    for mut rec in std::iter::once(first).chain(rx.try_iter()) {
                        rec.derive(&mono_to_unix);
                        serde_json::to_writer(&mut buf, &rec)?;
                        buf.push(b'\n');
                        on_record(&rec);
                        kept.push(rec);
                        batch += 1;
                    }
                    // One write per batch, ending on a whole line.
                    file.write_all(&buf)?;
                    // More than one record was waiting: requests are finishing faster than
                    // a wake-up per record is worth. Let them gather for a moment instead
                    // (a crash then loses at most this long of finished requests).
                    if batch > 1 {
                        std::thread::sleep(GATHER);
                    }
                }
                file.sync_data()?;
                Ok(kept.into_vec())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RequestRecord;

    #[test]
    fn kept_records_come_back_whole_and_in_order_across_blocks() {
        let mut kept = Blocks::default();
        let n = 3 * Blocks::SIZE as u64 + 5;
        for id in 0..n {
            kept.push(RequestRecord {
                request_id: id,
                ..Default::default()
            });
        }
        // Blocks are filled to their size and never grown past it (nothing is moved).
        assert_eq!(kept.full.len(), 3);
        assert!(kept.full.iter().all(|b| b.len() == Blocks::SIZE));
        assert_eq!(kept.current.len(), 5);
        let all = kept.into_vec();
        // Moved once into a list of exactly their number: no regrowth, no spare room.
        assert_eq!(all.capacity(), all.len());
        let ids: Vec<u64> = all.iter().map(|r| r.request_id).collect();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        assert!(Blocks::default().into_vec().is_empty());
    }

    #[test]
    fn every_record_lands_once_in_order_after_the_metadata_line_whole_and_derived() {
        let dir = std::env::temp_dir().join(format!("tb-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("requests.jsonl");
        let meta = RunMeta::fixture("r1");
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let progress = seen.clone();
        let (sink, writer) = RecordWriter::create(
            &path,
            &meta,
            |t| t + 1_000,
            Box::new(move |_| {
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
        )
        .unwrap();
        // Bursts (gathered into batches) and single records (one at a time) from two senders.
        let other = sink.clone();
        let burst = std::thread::spawn(move || {
            for id in 0..500 {
                other.send(RequestRecord {
                    request_id: id,
                    t_sent_ns: Some(10),
                    t_first_token_ns: Some(2_000_010),
                    ..Default::default()
                });
            }
        });
        for id in 500..510 {
            sink.send(RequestRecord {
                request_id: id,
                ..Default::default()
            });
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        burst.join().unwrap();
        drop(sink);
        let all = writer.finish().unwrap();
        assert_eq!(all.len(), 510);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 510);

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 511);
        let first: RunMeta = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first.run_id, "r1");
        let recs: Vec<RequestRecord> = lines[1..]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // Each sender's records keep their order, and the file holds what `finish` returned.
        let ids = |lo, hi| {
            recs.iter()
                .map(|r| r.request_id)
                .filter(move |&i| (lo..hi).contains(&i))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0, 500), (0..500).collect::<Vec<_>>());
        assert_eq!(ids(500, 510), (500..510).collect::<Vec<_>>());
        assert_eq!(
            recs.iter().map(|r| r.request_id).collect::<Vec<_>>(),
            all.iter().map(|r| r.request_id).collect::<Vec<_>>()
        );
        // Derived on the way out, in the file as in memory.
        let burst_rec = recs.iter().find(|r| r.request_id == 7).unwrap();
        assert_eq!(burst_rec.ttft_ms, Some(2.0));
        assert_eq!(
            all.iter().find(|r| r.request_id == 7).unwrap().ttft_ms,
            Some(2.0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
