//! Giving sled's memory back: sled is closed and opened again once enough moved or idle.

use std::{sync::atomic::Ordering, time::Duration};

use super::{Handles, Store};
use crate::error::TbdError;

/// Record bytes written or read after which sled's memory is given back (see [`Store`]).
pub const RELEASE_AFTER_BYTES: u64 = 32 << 20;
/// How long the store must go unused before what it read or wrote since opening is given
/// back, so that an idle daemon holds none of its last run.
pub const RELEASE_WHEN_IDLE: Duration = Duration::from_secs(2);

impl Store {
    /// Whether enough has moved through sled since it was opened, or it has been idle with
    /// anything moved, for its memory to be given back.
    pub(super) fn release_due(&self) -> bool {
        let moved = self.moved.load(Ordering::Relaxed);
        let idle_ms = (self.epoch.elapsed().as_millis() as u64)
            .saturating_sub(self.used_ms.load(Ordering::Relaxed));
        moved >= self.release_after
            || (moved > 0 && idle_ms >= self.release_idle.as_millis() as u64)
    }

    /// Gives sled's memory back when it is due and nothing uses the store: flushes, closes
    /// and reopens sled. Returns whether it did; a caller retries later.
    pub fn release_if_due(&self) -> Result<bool, TbdError> {
        if !self.release_due() {
            return Ok(false);
        }
        let Ok(mut w) = self.open.try_write() else {
            return Ok(false);
        };
        // Again under the lock: another caller may have just released.
        if !self.release_due() {
            return Ok(false);
        }
        let moved = self.moved.load(Ordering::Relaxed);
        if let Some(h) = w.as_ref() {
            h.db.flush()?;
        }
        drop(w.take());
        // What sled freed waits in crossbeam-epoch's queue until the epoch moves on.
        for _ in 0..64 {
            hand_on_garbage();
        }
        crate::heap::give_back_freed();
        // Counted before the reopen: what the closed sled held is gone even if opening fails
        // (the next use retries it).
        self.moved.store(0, Ordering::Relaxed);
        self.releases.fetch_add(1, Ordering::Relaxed);
        *w = Some(Handles::reopen(&self.dir)?);
        tracing::debug!(moved, "store reopened to give back sled's memory");
        Ok(true)
    }

    /// [`Store::release_if_due`] on behalf of an operation that already succeeded: a failed
    /// reopen is logged, and the next use of the store tries again.
    pub(super) fn release_quietly(&self) {
        if let Err(e) = self.release_if_due() {
            tracing::warn!("reopening the store to give back its memory: {e}");
        }
    }

    /// How many times sled's memory was given back.
    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::Relaxed)
    }
}

/// Moves this thread's deferred frees to crossbeam-epoch's global queue and collects what
/// has expired there. sled 0.34 frees replaced pages through crossbeam-epoch, which keeps
/// them in a bag per thread until 64 gather: a tokio worker that wrote a few batches and then
/// idled held old versions of sled's nodes indefinitely (measured: 23 MiB after an upload,
/// still there after sled was closed).
pub(super) fn hand_on_garbage() {
    crossbeam_epoch::pin().flush();
}
