//! Deleting runs: one by one, by age and by the records' total size.

use std::time::Duration;

use super::{keys::count_batch, record_key, run_prefix, Store, Stored};
use crate::error::TbdError;

impl Store {
    /// Deletes a run and all its records; returns how many records went.
    pub fn delete_run(&self, run_id: &str) -> Result<Option<u64>, TbdError> {
        self.with(|h| {
            if h.runs.remove(run_id.as_bytes())?.is_none() {
                return Ok(None);
            }
            h.sizes.remove(run_id.as_bytes())?;
            let prefix = run_prefix(run_id);
            let mut sizes = sled::Batch::default();
            for k in h.kind_sizes.scan_prefix(&prefix).keys() {
                sizes.remove(k?);
            }
            h.kind_sizes.apply_batch(sizes)?;
            let mut n = 0;
            for (_, tree) in &h.trees {
                let mut batch = sled::Batch::default();
                for kv in tree.scan_prefix(&prefix) {
                    let (key, value) = kv?;
                    self.moved(value.len());
                    n += count_batch(&value)?;
                    batch.remove(key);
                }
                tree.apply_batch(batch)?;
            }
            Ok(Some(n))
        })
    }

    /// Retention: deletes finished runs that ended more than `max_age` ago, then the oldest
    /// finished runs while the runs' record bytes exceed `max_bytes`. Returns the deleted run
    /// ids.
    ///
    /// Size counts what runs store, not sled's files: sled reclaims a deleted run's space
    /// later and writes tombstones first, so its files even grew after deletes (measured:
    /// 32.8 MB with four runs, 46.8 MB after deleting them all), and a limit on them deleted
    /// every run.
    pub fn enforce_retention(
        &self,
        now_unix_ns: u64,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<Vec<String>, TbdError> {
        let mut deleted = Vec::new();
        let runs = self.list_runs()?;
        let mut total: u64 = runs.iter().map(|r| r.stored_bytes).sum();
        // Oldest first (list_runs' order).
        for run in runs.iter().filter(|r| r.end_ns != 0) {
            let end_unix = run.start_unix_ns + run.end_ns.saturating_sub(run.start_ns);
            let too_old =
                max_age.is_some_and(|a| now_unix_ns.saturating_sub(end_unix) > a.as_nanos() as u64);
            let too_big = max_bytes.is_some_and(|m| total > m);
            if too_old || too_big {
                self.delete_run(&run.run_id)?;
                total -= run.stored_bytes;
                deleted.push(run.run_id.clone());
            }
        }
        Ok(deleted)
    }

    /// Deletes the records of one kind keyed under `run_id` with time before `before_ns`:
    /// retention for series that belong to no run (the host's energy samples). Returns how
    /// many records went.
    pub fn trim<M: Stored>(&self, run_id: &str, before_ns: u64) -> Result<u64, TbdError> {
        self.with(|h| {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            // Whole batches only: a batch keyed before the cut may hold later records, so it
            // goes only when the next batch also starts before the cut.
            let range = h
                .tree(M::TREE)
                .range(record_key(run_id, 0, 0)..record_key(run_id, before_ns, 0));
            let mut prev: Option<(sled::IVec, sled::IVec)> = None;
            for kv in range {
                let (k, v) = kv?;
                if let Some((pk, pv)) = prev.replace((k, v)) {
                    self.moved(pv.len());
                    n += count_batch(&pv)?;
                    batch.remove(pk);
                }
            }
            h.tree(M::TREE).apply_batch(batch)?;
            Ok(n)
        })
    }
}
