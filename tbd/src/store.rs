//! The sled store: runs, exchanges, connections, DNS lookups and client records.
//!
//! Record keys are `[run id length][run id][time BE u64][sequence BE u64]`, so one run's
//! records are one key range, ordered by time. Each value is a batch: the records of one kind
//! that one drain of the ring buffer completed, as length-delimited prost messages of the API
//! (one schema for store and API), keyed by the batch's earliest time. One sled write per
//! batch instead of per record: per-record writes were 85% of tbd's CPU under load. sled
//! flushes every `FLUSH_MS`: a kill -9 loses at most the last unflushed batch and corrupts
//! nothing.

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use prost::Message;
use tb_proto::v1::{ClientRecord, Connection, DnsLookup, Exchange, Run};

use crate::error::TbdError;

const FLUSH_MS: u64 = 1000;

/// The record trees, one per record kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exchange,
    Connection,
    Dns,
    ClientRecord,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Exchange,
        Kind::Connection,
        Kind::Dns,
        Kind::ClientRecord,
    ];

    fn tree(self) -> &'static str {
        match self {
            Kind::Exchange => "exchanges",
            Kind::Connection => "connections",
            Kind::Dns => "dns",
            Kind::ClientRecord => "client_records",
        }
    }
}

/// One record to store, with its time key.
pub enum Record {
    Exchange(Exchange),
    Connection(Connection),
    Dns(DnsLookup),
    Client(ClientRecord),
}

impl Record {
    fn kind(&self) -> Kind {
        match self {
            Record::Exchange(_) => Kind::Exchange,
            Record::Connection(_) => Kind::Connection,
            Record::Dns(_) => Kind::Dns,
            Record::Client(_) => Kind::ClientRecord,
        }
    }

    /// The time a record is keyed by: when it started.
    fn time(&self) -> u64 {
        match self {
            Record::Exchange(e) => e.t_request_first_ns,
            Record::Connection(c) => c.t_connect_start_ns,
            Record::Dns(d) => d.t_start_ns,
            Record::Client(c) => c.t_sent_ns,
        }
    }

    fn run_id(&self) -> &str {
        match self {
            Record::Exchange(e) => &e.run_id,
            Record::Connection(c) => &c.run_id,
            Record::Dns(d) => &d.run_id,
            Record::Client(c) => &c.run_id,
        }
    }

    /// Bytes `encode_into` appends.
    fn encoded_len(&self) -> usize {
        let n = match self {
            Record::Exchange(m) => m.encoded_len(),
            Record::Connection(m) => m.encoded_len(),
            Record::Dns(m) => m.encoded_len(),
            Record::Client(m) => m.encoded_len(),
        };
        prost::length_delimiter_len(n) + n
    }

    fn encode_into(&self, buf: &mut Vec<u8>) {
        // Encoding into a Vec cannot fail: it grows as needed.
        let _ = match self {
            Record::Exchange(m) => m.encode_length_delimited(buf),
            Record::Connection(m) => m.encode_length_delimited(buf),
            Record::Dns(m) => m.encode_length_delimited(buf),
            Record::Client(m) => m.encode_length_delimited(buf),
        };
    }
}

/// A stored message and the time it is keyed and filtered by.
pub trait Timed: Message + Default {
    /// The record's time (see [`Record`]).
    fn time_ns(&self) -> u64;
}

impl Timed for Exchange {
    fn time_ns(&self) -> u64 {
        self.t_request_first_ns
    }
}
impl Timed for Connection {
    fn time_ns(&self) -> u64 {
        self.t_connect_start_ns
    }
}
impl Timed for DnsLookup {
    fn time_ns(&self) -> u64 {
        self.t_start_ns
    }
}
impl Timed for ClientRecord {
    fn time_ns(&self) -> u64 {
        self.t_sent_ns
    }
}

/// A decoded record waiting in [`Store::for_each_record`], ordered by (time, arrival).
struct Held<M> {
    t: u64,
    n: u64,
    m: M,
}

impl<M> PartialEq for Held<M> {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.n) == (o.t, o.n)
    }
}

impl<M> Eq for Held<M> {}

impl<M> PartialOrd for Held<M> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl<M> Ord for Held<M> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.t, self.n).cmp(&(o.t, o.n))
    }
}

/// How many messages one batch value holds, without decoding them.
fn count_batch(mut buf: &[u8]) -> Result<u64, TbdError> {
    let mut n = 0;
    while !buf.is_empty() {
        let len = prost::encoding::decode_length_delimiter(&mut buf)?;
        if len > buf.len() {
            return Err(TbdError::Corrupt(format!(
                "a record of {len} bytes runs past the batch's end"
            )));
        }
        buf = &buf[len..];
        n += 1;
    }
    Ok(n)
}

/// Key prefix shared by all records of a run.
fn run_prefix(run_id: &str) -> Vec<u8> {
    let id = run_id.as_bytes();
    let mut k = Vec::with_capacity(1 + id.len() + 16);
    k.push(id.len().min(255) as u8);
    k.extend_from_slice(&id[..id.len().min(255)]);
    k
}

fn record_key(run_id: &str, t_ns: u64, seq: u64) -> Vec<u8> {
    let mut k = run_prefix(run_id);
    k.extend_from_slice(&t_ns.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The daemon's store.
pub struct Store {
    db: sled::Db,
    runs: sled::Tree,
    trees: [sled::Tree; 4],
    seq: AtomicU64,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, TbdError> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(FLUSH_MS))
            // sled's default 1 GiB page cache is for databases; a daemon's idle RSS matters more.
            .cache_capacity(16 << 20)
            .open()?;
        let runs = db.open_tree("runs")?;
        let trees = Kind::ALL.map(|k| db.open_tree(k.tree()));
        let [a, b, c, d] = trees;
        let seq = AtomicU64::new(db.generate_id()?.wrapping_mul(1 << 20));
        Ok(Self {
            runs,
            trees: [a?, b?, c?, d?],
            db,
            seq,
        })
    }

    fn tree(&self, kind: Kind) -> &sled::Tree {
        &self.trees[Kind::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("all kinds")]
    }

    /// Writes or replaces a run's header.
    pub fn put_run(&self, run: &Run) -> Result<(), TbdError> {
        self.runs
            .insert(run.run_id.as_bytes(), run.encode_to_vec())?;
        Ok(())
    }

    /// A run's header.
    pub fn get_run(&self, run_id: &str) -> Result<Option<Run>, TbdError> {
        Ok(match self.runs.get(run_id.as_bytes())? {
            Some(v) => Some(Run::decode(&*v)?),
            None => None,
        })
    }

    /// Every run, oldest first.
    pub fn list_runs(&self) -> Result<Vec<Run>, TbdError> {
        let mut runs = self
            .runs
            .iter()
            .values()
            .map(|v| Ok(Run::decode(&*v?)?))
            .collect::<Result<Vec<_>, TbdError>>()?;
        runs.sort_by_key(|r| r.start_unix_ns);
        Ok(runs)
    }

    /// Appends records: one batch value per (kind, run), written as one sled insert.
    pub fn append(&self, records: &[Record]) -> Result<(), TbdError> {
        let mut groups: std::collections::BTreeMap<(usize, &str), Vec<&Record>> =
            std::collections::BTreeMap::new();
        for r in records {
            let idx = Kind::ALL.iter().position(|k| *k == r.kind()).expect("kind");
            groups.entry((idx, r.run_id())).or_default().push(r);
        }
        for ((idx, run_id), mut recs) in groups {
            recs.sort_by_key(|r| r.time());
            let mut value = Vec::with_capacity(recs.iter().map(|r| r.encoded_len()).sum());
            for r in &recs {
                r.encode_into(&mut value);
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let key = record_key(run_id, recs[0].time(), seq);
            self.trees[idx].insert(key, value)?;
        }
        Ok(())
    }

    /// The batches of one kind for a run that may hold records before `to_ns` (0 = no end), in
    /// key order, each with its key's time (the earliest record time in the batch).
    fn batches(
        &self,
        kind: Kind,
        run_id: &str,
        to_ns: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), TbdError>> {
        // A batch is keyed by its earliest record, so any batch keyed before `to` may hold
        // records in range: the scan starts at the run's beginning and filters by record time.
        let start = record_key(run_id, 0, 0);
        let end = if to_ns == 0 {
            record_key(run_id, u64::MAX, u64::MAX)
        } else {
            record_key(run_id, to_ns, 0)
        };
        let time_at = start.len() - 16;
        self.tree(kind).range(start..end).map(move |kv| {
            let (k, v) = kv?;
            let t = k
                .get(time_at..time_at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| TbdError::Corrupt("a record key too short".into()))?;
            Ok((t, v))
        })
    }

    /// Calls `f` with each record of one kind for a run with time in `[from, to)` (`to` 0 = no
    /// end), oldest first, until `f` returns false.
    ///
    /// Batches are keyed by their earliest record, so once the scan reaches a batch keyed `K`
    /// no batch still unread holds a record before `K`: records before `K` are passed on and
    /// only those that a later batch could still precede are held, not the whole run.
    /// Returns the most records held at once.
    pub fn for_each_record<M: Timed>(
        &self,
        kind: Kind,
        run_id: &str,
        from_ns: u64,
        to_ns: u64,
        mut f: impl FnMut(M) -> bool,
    ) -> Result<usize, TbdError> {
        use std::{cmp::Reverse, collections::BinaryHeap};
        let mut held: BinaryHeap<Reverse<Held<M>>> = BinaryHeap::new();
        let (mut n, mut peak) = (0u64, 0usize);
        for b in self.batches(kind, run_id, to_ns) {
            let (key_t, v) = b?;
            while held.peek().is_some_and(|h| h.0.t < key_t) {
                if !f(held.pop().expect("peeked").0.m) {
                    return Ok(peak);
                }
            }
            let mut buf: &[u8] = &v;
            while !buf.is_empty() {
                let m = M::decode_length_delimited(&mut buf)?;
                let t = m.time_ns();
                if t >= from_ns && (to_ns == 0 || t < to_ns) {
                    // `n` keeps records of equal time in the order they were stored.
                    held.push(Reverse(Held { t, n, m }));
                    n += 1;
                }
            }
            peak = peak.max(held.len());
        }
        while let Some(Reverse(h)) = held.pop() {
            if !f(h.m) {
                break;
            }
        }
        Ok(peak)
    }

    /// Records of one kind for a run with time in `[from, to)` (`to` 0 = no end), oldest
    /// first.
    pub fn records<M: Timed>(
        &self,
        kind: Kind,
        run_id: &str,
        from_ns: u64,
        to_ns: u64,
    ) -> Result<Vec<M>, TbdError> {
        let mut out = Vec::new();
        self.for_each_record(kind, run_id, from_ns, to_ns, |m| {
            out.push(m);
            true
        })?;
        Ok(out)
    }

    /// How many records of one kind a run has.
    pub fn count(&self, kind: Kind, run_id: &str) -> Result<u64, TbdError> {
        self.batches(kind, run_id, 0)
            .map(|b| count_batch(&b?.1))
            .sum()
    }

    /// Decoded records of one kind for a whole run, oldest first.
    pub fn all<M: Timed>(&self, kind: Kind, run_id: &str) -> Result<Vec<M>, TbdError> {
        self.records(kind, run_id, 0, 0)
    }

    /// Deletes a run and all its records; returns how many records went.
    pub fn delete_run(&self, run_id: &str) -> Result<Option<u64>, TbdError> {
        if self.runs.remove(run_id.as_bytes())?.is_none() {
            return Ok(None);
        }
        let prefix = run_prefix(run_id);
        let mut n = 0;
        for tree in &self.trees {
            let mut batch = sled::Batch::default();
            for kv in tree.scan_prefix(&prefix) {
                let (key, value) = kv?;
                n += count_batch(&value)?;
                batch.remove(key);
            }
            tree.apply_batch(batch)?;
        }
        Ok(Some(n))
    }

    /// Retention: deletes finished runs that ended more than `max_age` ago, then the oldest
    /// finished runs while the store is larger than `max_bytes`. Returns the deleted run ids.
    pub fn enforce_retention(
        &self,
        now_unix_ns: u64,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<Vec<String>, TbdError> {
        let mut deleted = Vec::new();
        let finished: Vec<Run> = self
            .list_runs()?
            .into_iter()
            .filter(|r| r.end_ns != 0)
            .collect();
        for run in &finished {
            let end_unix = run.start_unix_ns + run.end_ns.saturating_sub(run.start_ns);
            let too_old =
                max_age.is_some_and(|a| now_unix_ns.saturating_sub(end_unix) > a.as_nanos() as u64);
            if too_old {
                self.delete_run(&run.run_id)?;
                deleted.push(run.run_id.clone());
            }
        }
        if let Some(limit) = max_bytes {
            let remaining: Vec<&Run> = finished
                .iter()
                .filter(|r| !deleted.contains(&r.run_id))
                .collect();
            for run in remaining {
                if self.size_on_disk() <= limit {
                    break;
                }
                self.delete_run(&run.run_id)?;
                deleted.push(run.run_id.clone());
            }
        }
        Ok(deleted)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Writes everything to disk now.
    pub fn flush(&self) -> Result<(), TbdError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(run: &str, t: u64) -> Record {
        Record::Exchange(Exchange {
            run_id: run.into(),
            t_request_first_ns: t,
            side: "client".into(),
            ..Default::default()
        })
    }

    #[test]
    fn records_come_back_in_time_order_within_their_run_and_range() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.append(&[ex("a", 30), ex("b", 5), ex("a", 10), ex("a", 20)])
            .unwrap();
        let times: Vec<u64> = s
            .all::<Exchange>(Kind::Exchange, "a")
            .unwrap()
            .iter()
            .map(|e| e.t_request_first_ns)
            .collect();
        assert_eq!(times, vec![10, 20, 30]);
        let ranged: Vec<u64> = s
            .records::<Exchange>(Kind::Exchange, "a", 10, 30)
            .unwrap()
            .iter()
            .map(|e| e.t_request_first_ns)
            .collect();
        assert_eq!(ranged, vec![10, 20]);
        // Batches written later may hold earlier records (long requests finish late).
        s.append(&[ex("a", 5), ex("a", 25)]).unwrap();
        let ranged: Vec<u64> = s
            .records::<Exchange>(Kind::Exchange, "a", 5, 26)
            .unwrap()
            .iter()
            .map(|e| e.t_request_first_ns)
            .collect();
        assert_eq!(ranged, vec![5, 10, 20, 25]);
        assert_eq!(s.count(Kind::Exchange, "a").unwrap(), 5);
        // A run id that is a prefix of another must not see the other's records.
        s.append(&[ex("ab", 1)]).unwrap();
        assert_eq!(s.all::<Exchange>(Kind::Exchange, "a").unwrap().len(), 5);
    }

    #[test]
    fn queries_stream_in_order_holding_only_overlapping_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        // 100 drains of 10 records each; each drain also finishes one long request that
        // started two drains earlier, as streamed responses do.
        for d in 0..100u64 {
            let mut recs: Vec<Record> = (0..10).map(|i| ex("r", 1_000 + d * 100 + i)).collect();
            if d >= 2 {
                recs.push(ex("r", 1_000 + (d - 2) * 100 + 50));
            }
            s.append(&recs).unwrap();
        }
        let mut times = Vec::new();
        let peak = s
            .for_each_record::<Exchange>(Kind::Exchange, "r", 0, 0, |e| {
                times.push(e.t_request_first_ns);
                true
            })
            .unwrap();
        assert_eq!(times.len(), 1_098);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
        assert!(
            peak <= 40,
            "held {peak} records: the whole run was buffered"
        );
        // A consumer that stops ends the scan.
        let mut taken = 0;
        s.for_each_record::<Exchange>(Kind::Exchange, "r", 0, 0, |_| {
            taken += 1;
            taken < 5
        })
        .unwrap();
        assert_eq!(taken, 5);
    }

    #[test]
    fn delete_and_retention_remove_runs_with_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for (id, start) in [("old", 1_000u64), ("new", 10_000_000_000)] {
            s.put_run(&Run {
                run_id: id.into(),
                start_ns: 0,
                end_ns: 1,
                start_unix_ns: start,
                ..Default::default()
            })
            .unwrap();
            s.append(&[ex(id, 1), ex(id, 2)]).unwrap();
        }
        let gone = s
            .enforce_retention(10_000_000_100, Some(Duration::from_secs(5)), None)
            .unwrap();
        assert_eq!(gone, vec!["old".to_string()]);
        assert!(s.get_run("old").unwrap().is_none());
        assert!(s.all::<Exchange>(Kind::Exchange, "old").unwrap().is_empty());
        assert_eq!(s.delete_run("new").unwrap(), Some(2));
        assert_eq!(s.delete_run("new").unwrap(), None);
    }

    #[test]
    fn store_reopens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_run(&Run {
                run_id: "r".into(),
                ..Default::default()
            })
            .unwrap();
            s.append(&[ex("r", 7)]).unwrap();
            s.flush().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert!(s.get_run("r").unwrap().is_some());
        assert_eq!(s.all::<Exchange>(Kind::Exchange, "r").unwrap().len(), 1);
    }
}
