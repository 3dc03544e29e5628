//! The dispatcher: an OS thread that sleeps to each request's absolute intended time
//! (nanosleep, not the 1 ms async timer) and hands the job to a worker, so dispatch never
//! drifts however slow responses are.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::mpsc;

use crate::{clock::mono_ns, profile::job::Job, workload::item::WorkItem};

/// Where requests come from: items, and optional arrival offsets (ns from start).
pub struct Plan {
    pub items: Box<dyn Iterator<Item = WorkItem> + Send>,
    /// Open loop: arrival offsets (a schedule, or a trace's own times). None: closed loop
    /// (a job whenever a worker is free).
    pub arrivals: Option<Box<dyn Iterator<Item = u64> + Send>>,
    /// Measured requests to send (warm-up excluded); None = until items or time run out.
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    pub warmup: u64,
}

/// Shared worker-pool counters the dispatcher reads to grow the pool in open loop.
#[derive(Default)]
pub struct Pool {
    pub idle: AtomicUsize,
    pub workers: AtomicUsize,
}

/// Called when every worker is busy and the pool may grow (open loop).
pub type Grow = Box<dyn Fn() + Send>;

/// Runs the plan on the calling thread until it is exhausted or `stop` is set. Returns the
/// number of jobs dispatched.
pub fn run(
    mut plan: Plan,
    start_ns: u64,
    tx: mpsc::Sender<Job>,
    stop: Arc<AtomicBool>,
    pool: Arc<Pool>,
    max_workers: usize,
    grow: Grow,
) -> u64 {
    let total = plan.requests.map(|n| n + plan.warmup);
    let end_ns = plan.duration.map(|d| start_ns + d.as_nanos() as u64);
    let mut id = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) || total.is_some_and(|t| id >= t) {
            break;
        }
        let intended = match plan.arrivals.as_mut() {
            Some(a) => match a.next() {
                Some(off) => Some(start_ns + off),
                None => break,
            },
            None => None,
        };
        if let (Some(t), Some(end)) = (intended, end_ns) {
            if t >= end {
                break;
            }
        }
        let Some(item) = plan.items.next() else { break };
        if let Some(t) = intended {
            sleep_until(t, &stop);
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if pool.idle.load(Ordering::Relaxed) == 0
                && pool.workers.load(Ordering::Relaxed) < max_workers
            {
                grow();
            }
        } else if end_ns.is_some_and(|end| mono_ns() >= end) {
            break;
        }
        let job = Job {
            request_id: id,
            intended_ns: intended,
            item,
            warmup: id < plan.warmup,
        };
        if tx.blocking_send(job).is_err() {
            break;
        }
        id += 1;
    }
    id
}

/// Sleeps until the absolute monotonic time `t_ns`, waking early if `stop` is set.
fn sleep_until(t_ns: u64, stop: &AtomicBool) {
    loop {
        let now = mono_ns();
        if now >= t_ns || stop.load(Ordering::Relaxed) {
            return;
        }
        // Cap each sleep so Ctrl-C is noticed within 100 ms.
        std::thread::sleep(Duration::from_nanos((t_ns - now).min(100_000_000)));
    }
}
