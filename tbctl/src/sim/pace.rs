//! Waiting until an absolute CLOCK_MONOTONIC deadline with tens-of-microseconds precision.
//!
//! tokio's timer rounds to whole milliseconds, which would blur an 8 ms ± 4 ms inter-token
//! latency by up to 1 ms per chunk. Spinning for the last millisecond would fix that but burn a
//! core that the load generator (sharing the machine) needs. Instead one thread, with its timer
//! slack set to the minimum, sleeps on a condition variable until the earliest deadline and wakes
//! the waiting tasks; the kernel's high-resolution timers make that wake-up precise.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::clock::mono_ns;

/// Completes once `mono_ns() >= deadline_ns`. A deadline already past completes at once
/// without touching the timer thread.
pub fn sleep_until_ns(deadline_ns: u64) -> Sleep {
    Sleep {
        deadline_ns,
        slot: None,
    }
}

/// Future returned by [`sleep_until_ns`].
pub struct Sleep {
    deadline_ns: u64,
    slot: Option<Arc<Slot>>,
}

struct Slot {
    state: Mutex<SlotState>,
}

struct SlotState {
    fired: bool,
    waker: Option<Waker>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(slot) = &self.slot {
            // The fired flag and the waker share one lock, so a firing that races this poll
            // either is seen here or finds the fresh waker.
            let mut st = lock(&slot.state);
            if st.fired {
                return Poll::Ready(());
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        if mono_ns() >= self.deadline_ns {
            return Poll::Ready(());
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                fired: false,
                waker: Some(cx.waker().clone()),
            }),
        });
        timer().insert(self.deadline_ns, slot.clone());
        self.slot = Some(slot);
        Poll::Pending
    }
}

struct Entry {
    deadline_ns: u64,
    seq: u64,
    slot: Arc<Slot>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline_ns, self.seq) == (other.deadline_ns, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and the earliest deadline must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline_ns, other.seq).cmp(&(self.deadline_ns, self.seq))
    }
}

struct Timer {
    queue: Mutex<Queue>,
    cv: Condvar,
}

struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl Timer {
    fn insert(&self, deadline_ns: u64, slot: Arc<Slot>) {
        let mut q = lock(&self.queue);
        q.seq += 1;
        let seq = q.seq;
        let earliest = q
            .heap
            .peek()
            .is_none_or(|top| deadline_ns < top.deadline_ns);
        q.heap.push(Entry {
            deadline_ns,
            seq,
            slot,
        });
        drop(q);
        // Only a new earliest deadline changes how long the thread should sleep.
        if earliest {
            self.cv.notify_one();
        }
    }

    fn run(&self) {
        set_min_timer_slack();
        let mut due: Vec<Arc<Slot>> = Vec::new();
        let mut q = lock(&self.queue);
        loop {
            let now = mono_ns();
            while q.heap.peek().is_some_and(|top| top.deadline_ns <= now) {
                if let Some(e) = q.heap.pop() {
                    due.push(e.slot);
                }
            }
            if !due.is_empty() {
                drop(q);
                for slot in due.drain(..) {
                    let waker = {
                        let mut st = lock(&slot.state);
                        st.fired = true;
                        st.waker.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                q = lock(&self.queue);
                continue;
            }
            q = match q.heap.peek() {
                None => self.cv.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(top) => {
                    let wait = Duration::from_nanos(top.deadline_ns - now);
                    self.cv
                        .wait_timeout(q, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                seq: 0,
            }),
            cv: Condvar::new(),
        }));
        // The thread lives as long as the process: serve-sim instances come and go (tests) but
        // one pacer serves them all.
        if let Err(e) = std::thread::Builder::new()
            .name("sim-pacer".to_string())
            .spawn(move || t.run())
        {
            panic!("serve-sim: cannot start the pacer thread: {e}");
        }
        t
    })
}

/// Linux adds up to 50 µs of "timer slack" to a thread's sleeps so it can batch wake-ups;
/// the pacer wants its deadlines as exact as the hardware allows.
fn set_min_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(
            "serve-sim pacer: PR_SET_TIMERSLACK failed; wake-ups may be up to 50 us late"
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave their data inconsistent (plain pushes and
    // flag sets), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_at_the_deadline_not_before() {
        let mut late = Vec::new();
        for i in 0..40u64 {
            let deadline = mono_ns() + 1_000_000 + i * 37_000;
            sleep_until_ns(deadline).await;
            let now = mono_ns();
            assert!(now >= deadline, "woke {} ns early", deadline - now);
            late.push(now - deadline);
        }
        late.sort_unstable();
        // Generous for a loaded shared machine; typical is tens of microseconds.
        assert!(
            late[late.len() / 2] < 1_000_000,
            "median lateness {} ns",
            late[20]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_sleepers_and_past_deadlines() {
        sleep_until_ns(0).await;
        let start = mono_ns();
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                tokio::spawn(async move {
                    let deadline = start + 2_000_000 + (i % 8) * 500_000;
                    sleep_until_ns(deadline).await;
                    assert!(mono_ns() >= deadline);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
}
