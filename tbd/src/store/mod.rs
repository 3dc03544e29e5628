//! The sled store: runs and their records of every stored kind.
//!
//! Record keys are `[run id length][run id][time BE u64][sequence BE u64]`, so one run's
//! records are one key range, ordered by time. Each value is a batch: the records of one kind
//! that one drain of the ring buffer completed, as length-delimited prost messages of the API
//! (one schema for store and API), keyed by the batch's earliest time. One sled write per
//! batch instead of per record: per-record writes were 85% of tbd's CPU under load. Values
//! are compressed (zstd), as `keys` says. sled
//! flushes every `FLUSH_MS`: a kill -9 loses at most the last unflushed batch and corrupts
//! nothing.
//!
//! Split by concern: [`kind`] (what a stored kind is), `kinds/` (one file per kind), `keys`,
//! `query` (time-ordered streaming reads), `release` (giving sled's memory back) and
//! `retention` (deleting runs).

mod keys;
mod kind;
mod kinds;
mod query;
mod release;
mod retention;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        RwLock,
    },
    time::{Duration, Instant},
};

use prost::Message;
use tb_proto::v1::Run;

pub use kind::{Record, Stored};
pub use release::{RELEASE_AFTER_BYTES, RELEASE_WHEN_IDLE};

use crate::error::TbdError;
use keys::{be_u64, kind_size_key, record_key, run_prefix};
use release::hand_on_garbage;

const FLUSH_MS: u64 = 1000;

/// Most record bytes stored under one sled key (unless one record is larger), before
/// compression. sled writes a
/// page over a quarter of its 512 KiB log segment as a file of its own, and rewrites a leaf
/// page whole when it consolidates or splits it. Stored as one value, a ring drain or a client
/// upload of thousands of records made pages of up to 4 MB: 137 MB of such files in 6 s of a
/// saturated capture. With 64 KiB values it was 73 MB and tbd used 10% less CPU; with 6 KiB
/// values no page became a file, but tbd used 23% more CPU on sled's larger tree.
const MAX_VALUE_BYTES: usize = 64 << 10;

/// The open sled handles, dropped and opened again by [`Store::release_if_due`].
struct Handles {
    db: sled::Db,
    runs: sled::Tree,
    /// Run id → record bytes stored for it (u64 BE): what size retention counts.
    sizes: sled::Tree,
    /// [run prefix][tree name] → the run's record bytes in that tree (u64 BE).
    kind_sizes: sled::Tree,
    /// One tree per stored kind, in [`kinds::TREES`]' order.
    trees: Vec<(&'static str, sled::Tree)>,
}

impl Handles {
    /// Opens sled, waiting up to a second for a closed instance to let go of its lock file:
    /// sled's background writer threads can hold it a moment after the close.
    fn reopen(dir: &Path) -> Result<Self, TbdError> {
        let mut tries = 0;
        loop {
            match Self::open(dir) {
                Err(TbdError::Store(sled::Error::Io(e)))
                    if tries < 100 && e.to_string().contains("could not acquire lock") =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                r => {
                    if tries > 0 {
                        tracing::debug!(tries, "sled's lock file was still held after its close");
                    }
                    return r;
                }
            }
        }
    }

    fn open(dir: &Path) -> Result<Self, TbdError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(FLUSH_MS))
            // sled's default 1 GiB page cache is for databases; a daemon's idle RSS matters more.
            .cache_capacity(16 << 20)
            .open()?;
        let runs = db.open_tree("runs")?;
        let sizes = db.open_tree("run_sizes")?;
        let kind_sizes = db.open_tree("run_kind_sizes")?;
        let trees = kinds::TREES
            .iter()
            .map(|t| Ok((*t, db.open_tree(t)?)))
            .collect::<Result<_, TbdError>>()?;
        Ok(Self {
            runs,
            sizes,
            kind_sizes,
            trees,
            db,
        })
    }

    fn tree(&self, name: &str) -> &sled::Tree {
        &self
            .trees
            .iter()
            .find(|(t, _)| *t == name)
            .expect("every stored kind's tree is opened")
            .1
    }
}

/// The daemon's store.
///
/// sled 0.34 keeps every value it wrote or read in memory: its cache evicts a page only after
/// 64 more accesses to pages of the same one of 256 shards, which time-ordered appends never
/// make, and large values count by their log pointer's size. Measured, a daemon grew to 580
/// MiB after three saturated runs whatever `cache_capacity` said. So the store counts the
/// record bytes it moved since opening and, once that reaches [`RELEASE_AFTER_BYTES`] or the
/// store has been idle for [`RELEASE_WHEN_IDLE`], closes sled and opens it again (about 55
/// ms, whatever the store's size), which gives the memory back.
pub struct Store {
    dir: PathBuf,
    open: RwLock<Option<Handles>>,
    seq: AtomicU64,
    /// Record bytes written or read since sled was opened: what it holds in memory.
    moved: AtomicU64,
    /// When the store was last used, in ms after `epoch`.
    used_ms: AtomicU64,
    epoch: Instant,
    releases: AtomicU64,
    release_after: u64,
    release_idle: Duration,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, TbdError> {
        std::fs::create_dir_all(dir)?;
        let h = Handles::open(dir)?;
        let seq = AtomicU64::new(h.db.generate_id()?.wrapping_mul(1 << 20));
        Ok(Self {
            dir: dir.to_path_buf(),
            open: RwLock::new(Some(h)),
            seq,
            moved: AtomicU64::new(0),
            used_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            releases: AtomicU64::new(0),
            release_after: RELEASE_AFTER_BYTES,
            release_idle: RELEASE_WHEN_IDLE,
        })
    }

    /// Sets when sled's memory is given back: after `bytes` moved, or after `idle` unused.
    pub fn releasing(mut self, bytes: u64, idle: Duration) -> Self {
        self.release_after = bytes;
        self.release_idle = idle;
        self
    }

    /// Runs `f` on the open handles, opening sled again if a release left it closed.
    fn with<R>(&self, f: impl FnOnce(&Handles) -> Result<R, TbdError>) -> Result<R, TbdError> {
        self.touch();
        loop {
            {
                let g = self.open.read().expect("store lock");
                if let Some(h) = g.as_ref() {
                    let r = f(h);
                    drop(g);
                    hand_on_garbage();
                    return r;
                }
            }
            let mut w = self.open.write().expect("store lock");
            if w.is_none() {
                *w = Some(Handles::reopen(&self.dir)?);
                self.moved.store(0, Ordering::Relaxed);
            }
        }
    }

    fn touch(&self) {
        self.used_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn moved(&self, bytes: usize) {
        self.moved.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Writes or replaces a run's header.
    pub fn put_run(&self, run: &Run) -> Result<(), TbdError> {
        self.with(|h| {
            h.runs.insert(run.run_id.as_bytes(), run.encode_to_vec())?;
            // A new run's size starts at 0 here, so it is never counted from its records.
            let _ = h.sizes.compare_and_swap(
                run.run_id.as_bytes(),
                None::<&[u8]>,
                Some(&0u64.to_be_bytes()[..]),
            )?;
            Ok(())
        })
    }

    /// A run's header.
    pub fn get_run(&self, run_id: &str) -> Result<Option<Run>, TbdError> {
        let run = self.with(|h| {
            Ok(match h.runs.get(run_id.as_bytes())? {
                Some(v) => Some(Run::decode(&*v)?),
                None => None,
            })
        })?;
        run.map(|r| self.with_size(r)).transpose()
    }

    /// Fills a run header's `stored_bytes` and `stored_bytes_by_kind`.
    fn with_size(&self, mut run: Run) -> Result<Run, TbdError> {
        run.stored_bytes = self.run_bytes(&run.run_id)?;
        run.stored_bytes_by_kind = self.run_bytes_by_kind(&run.run_id)?;
        Ok(run)
    }

    /// Record bytes (keys and values) stored for a run. Stores written before sizes were kept
    /// get theirs counted once, from the records, and remembered.
    pub fn run_bytes(&self, run_id: &str) -> Result<u64, TbdError> {
        self.with(|h| {
            if let Some(v) = h.sizes.get(run_id.as_bytes())? {
                return Ok(be_u64(&v));
            }
            let n = self.recount(h, run_id)?;
            // Unless an append created the entry meanwhile.
            Ok(
                match h.sizes.compare_and_swap(
                    run_id.as_bytes(),
                    None::<&[u8]>,
                    Some(&n.to_be_bytes()[..]),
                )? {
                    Ok(()) => n,
                    Err(e) => e.current.map_or(n, |v| be_u64(&v)),
                },
            )
        })
    }

    /// A run's record bytes per stored kind (tree), for the kinds it has records of. Runs
    /// stored before kinds were counted get theirs counted once, from the records.
    pub fn run_bytes_by_kind(
        &self,
        run_id: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, TbdError> {
        self.with(|h| {
            let prefix = run_prefix(run_id);
            let read = || {
                h.kind_sizes
                    .scan_prefix(&prefix)
                    .map(|kv| {
                        let (k, v) = kv?;
                        let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                        Ok((name, be_u64(&v)))
                    })
                    .collect::<Result<std::collections::BTreeMap<_, _>, TbdError>>()
            };
            let by = read()?;
            if !by.is_empty() {
                return Ok(by);
            }
            self.recount(h, run_id)?;
            read()
        })
    }

    /// Counts a run's record bytes from its records, remembers each kind's count unless an
    /// append made one meanwhile, and returns the total.
    fn recount(&self, h: &Handles, run_id: &str) -> Result<u64, TbdError> {
        let prefix = run_prefix(run_id);
        let mut n = 0u64;
        for (name, tree) in &h.trees {
            let mut in_tree = 0u64;
            for kv in tree.scan_prefix(&prefix) {
                let (k, v) = kv?;
                self.moved(v.len());
                in_tree += (k.len() + v.len()) as u64;
            }
            n += in_tree;
            if in_tree > 0 {
                let _ = h.kind_sizes.compare_and_swap(
                    kind_size_key(run_id, name),
                    None::<&[u8]>,
                    Some(&in_tree.to_be_bytes()[..]),
                )?;
            }
        }
        Ok(n)
    }

    /// Every run, oldest first.
    pub fn list_runs(&self) -> Result<Vec<Run>, TbdError> {
        let runs = self.with(|h| {
            h.runs
                .iter()
                .values()
                .map(|v| Ok(Run::decode(&*v?)?))
                .collect::<Result<Vec<_>, TbdError>>()
        })?;
        let mut runs = runs
            .into_iter()
            .map(|r| self.with_size(r))
            .collect::<Result<Vec<_>, _>>()?;
        runs.sort_by_key(|r| r.start_unix_ns);
        Ok(runs)
    }

    /// Appends records: batch values per (kind, run) of at most [`MAX_VALUE_BYTES`], one sled
    /// insert each. Gives
    /// sled's memory back afterwards when that is due (uploads write a run's client records
    /// faster than the daemon's once-a-second check).
    pub fn append(&self, records: &[Record]) -> Result<(), TbdError> {
        self.with(|h| self.append_to(h, records))?;
        self.release_quietly();
        Ok(())
    }

    /// Appends records unless sled is being reopened; returns whether it did. For the ring
    /// reader, which must not wait: it keeps the records and tries again on its next drain.
    pub fn try_append(&self, records: &[Record]) -> Result<bool, TbdError> {
        self.touch();
        match self.open.try_read() {
            Ok(g) => match g.as_ref() {
                Some(h) => {
                    let r = self.append_to(h, records).map(|()| true);
                    drop(g);
                    hand_on_garbage();
                    r
                }
                None => {
                    drop(g);
                    self.append(records).map(|()| true)
                }
            },
            Err(std::sync::TryLockError::WouldBlock) => Ok(false),
            Err(std::sync::TryLockError::Poisoned(_)) => panic!("store lock poisoned"),
        }
    }

    fn append_to(&self, h: &Handles, records: &[Record]) -> Result<(), TbdError> {
        let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&Record>> =
            std::collections::BTreeMap::new();
        for r in records {
            groups.entry((r.tree(), r.run_id())).or_default().push(r);
        }
        let mut added: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
        for ((tree, run_id), mut recs) in groups {
            recs.sort_by_key(|r| r.time());
            let mut seal = |raw: &[u8], time: u64| -> Result<(), TbdError> {
                let value = keys::seal(raw);
                let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                let key = record_key(run_id, time, seq);
                self.moved(value.len());
                *added.entry((run_id, tree)).or_default() += (key.len() + value.len()) as u64;
                h.tree(tree).insert(key, value)?;
                Ok(())
            };
            // Each record is encoded once, straight into the batch (its length computed once,
            // by the encoder); one that takes the batch past the cap starts the next batch.
            let mut raw = Vec::with_capacity(MAX_VALUE_BYTES);
            let mut first = 0;
            for (i, r) in recs.iter().enumerate() {
                let before = raw.len();
                r.encode_into(&mut raw);
                if raw.len() > MAX_VALUE_BYTES && i > first {
                    seal(&raw[..before], recs[first].time())?;
                    raw.drain(..before);
                    first = i;
                }
            }
            if !raw.is_empty() {
                seal(&raw, recs[first].time())?;
            }
        }
        let add = |tree: &sled::Tree, key: &[u8], n: u64| {
            tree.fetch_and_update(key, |old| {
                Some((old.map_or(0, be_u64) + n).to_be_bytes().to_vec())
            })
        };
        let mut per_run: std::collections::BTreeMap<&str, u64> = Default::default();
        for ((run_id, tree), n) in added {
            *per_run.entry(run_id).or_default() += n;
            add(&h.kind_sizes, &kind_size_key(run_id, tree), n)?;
        }
        for (run_id, n) in per_run {
            add(&h.sizes, run_id.as_bytes(), n)?;
        }
        Ok(())
    }

    /// Bytes the store takes on disk.
    /// Not counted as a use of the store: a status poll must not keep it from going idle.
    pub fn size_on_disk(&self) -> u64 {
        let g = self.open.read().expect("store lock");
        g.as_ref()
            .and_then(|h| h.db.size_on_disk().ok())
            .unwrap_or(0)
    }

    /// Writes everything to disk now.
    pub fn flush(&self) -> Result<(), TbdError> {
        self.with(|h| {
            h.db.flush()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
