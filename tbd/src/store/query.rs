//! Time-ordered, streaming reads of one kind of a run's records.

use super::keys::{count_batch, open};
use super::kind::from_stored;
use super::{record_key, run_prefix, Handles, Store, Stored};
use crate::error::TbdError;

/// Batch bytes a query reads from sled at a time (less when the release threshold is lower).
const READ_STRETCH_BYTES: usize = 4 << 20;

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

impl Store {
    /// The batches of one kind for a run after key `after` (from the run's start when None)
    /// that may hold records before `to_ns` (0 = no end), in key order, each with its key and
    /// its key's time (the earliest record time in the batch).
    fn batches<'a>(
        &'a self,
        h: &Handles,
        tree: &str,
        run_id: &str,
        after: Option<&[u8]>,
        to_ns: u64,
    ) -> impl Iterator<Item = Result<(sled::IVec, u64, sled::IVec), TbdError>> + 'a {
        // A batch is keyed by its earliest record, so any batch keyed before `to` may hold
        // records in range: the scan starts at the run's beginning and filters by record time.
        let start = match after {
            // The smallest key greater than `after`.
            Some(k) => [k, &[0]].concat(),
            None => record_key(run_id, 0, 0),
        };
        let end = if to_ns == 0 {
            record_key(run_id, u64::MAX, u64::MAX)
        } else {
            record_key(run_id, to_ns, 0)
        };
        let time_at = run_prefix(run_id).len();
        h.tree(tree).range(start..end).map(move |kv| {
            let (k, v) = kv?;
            let t = k
                .get(time_at..time_at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| TbdError::Corrupt("a record key too short".into()))?;
            self.moved(v.len());
            Ok((k, t, v))
        })
    }

    /// Calls `f` with each record of one kind for a run with time in `[from, to)` (`to` 0 = no
    /// end), oldest first, until `f` returns false.
    ///
    /// Batches are keyed by their earliest record, so once the scan reaches a batch keyed `K`
    /// no batch still unread holds a record before `K`: records before `K` are passed on and
    /// only those that a later batch could still precede are held, not the whole run. Between
    /// stretches of [`READ_STRETCH_BYTES`] the scan lets sled's memory go when that is due and
    /// goes on from its last key, so a query of a large run does not pull the run into memory
    /// either.
    /// Returns the most records held at once.
    pub fn for_each_record<M: Stored>(
        &self,
        run_id: &str,
        from_ns: u64,
        to_ns: u64,
        mut f: impl FnMut(M) -> bool,
    ) -> Result<usize, TbdError> {
        use std::{cmp::Reverse, collections::BinaryHeap};
        let mut held: BinaryHeap<Reverse<Held<M>>> = BinaryHeap::new();
        let (mut n, mut peak) = (0u64, 0usize);
        let mut last_key: Option<sled::IVec> = None;
        let stretch_bytes = READ_STRETCH_BYTES.min(self.release_after as usize);
        loop {
            // Batches are read in stretches under the store's lock and handed to `f` without
            // it: a slow consumer must not keep sled from being reopened.
            let mut stretch = Vec::new();
            let mut bytes = 0;
            let more = self.with(|h| {
                for b in self.batches(h, M::TREE, run_id, last_key.as_deref(), to_ns) {
                    let (key, key_t, v) = b?;
                    bytes += v.len();
                    stretch.push((key_t, v));
                    last_key = Some(key);
                    if bytes >= stretch_bytes {
                        return Ok(true);
                    }
                }
                Ok(false)
            })?;
            for (key_t, v) in stretch {
                while held.peek().is_some_and(|h| h.0.t < key_t) {
                    if !f(held.pop().expect("peeked").0.m) {
                        return Ok(peak);
                    }
                }
                let raw = open(&v)?;
                let mut buf: &[u8] = &raw;
                while !buf.is_empty() {
                    let m = M::decode_length_delimited(&mut buf)?;
                    let t = m.time_ns();
                    if t >= from_ns && (to_ns == 0 || t < to_ns) {
                        let m = from_stored(m, run_id);
                        // `n` keeps records of equal time in the order they were stored.
                        held.push(Reverse(Held { t, n, m }));
                        n += 1;
                    }
                }
                peak = peak.max(held.len());
            }
            if !more {
                break;
            }
            self.release_quietly();
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
    pub fn records<M: Stored>(
        &self,
        run_id: &str,
        from_ns: u64,
        to_ns: u64,
    ) -> Result<Vec<M>, TbdError> {
        let mut out = Vec::new();
        self.for_each_record(run_id, from_ns, to_ns, |m| {
            out.push(m);
            true
        })?;
        Ok(out)
    }

    /// How many records of one kind a run has.
    pub fn count<M: Stored>(&self, run_id: &str) -> Result<u64, TbdError> {
        self.with(|h| {
            self.batches(h, M::TREE, run_id, None, 0)
                .map(|b| count_batch(&b?.2))
                .sum()
        })
    }

    /// Decoded records of one kind for a whole run, oldest first.
    pub fn all<M: Stored>(&self, run_id: &str) -> Result<Vec<M>, TbdError> {
        self.records(run_id, 0, 0)
    }
}
