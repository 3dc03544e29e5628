//! Where jobs come from. Open loop: an OS thread that sleeps to each request's absolute
//! intended time (nanosleep, not the 1 ms async timer) and hands the job to a worker, so
//! dispatch never drifts however slow responses are. Closed loop: each worker takes its
//! next job itself the moment it is free, with no thread hop in between (a hop per request
//! cost two context switches and capped the request rate).

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

/// The plan's items and limits, numbering the jobs they become: the one place that decides
/// when a run has sent enough, for both loops.
pub struct Feed {
    items: Box<dyn Iterator<Item = WorkItem> + Send>,
    /// Jobs in all, warm-up included; None = no count limit.
    total: Option<u64>,
    /// Absolute end of the run; None = no time limit.
    end_ns: Option<u64>,
    warmup: u64,
    stop: Arc<AtomicBool>,
    next_id: u64,
}

impl Feed {
    /// The feed of `items` for a run starting at `start_ns`.
    pub fn new(
        items: Box<dyn Iterator<Item = WorkItem> + Send>,
        requests: Option<u64>,
        duration: Option<Duration>,
        warmup: u64,
        start_ns: u64,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            items,
            total: requests.map(|n| n + warmup),
            end_ns: duration.map(|d| start_ns + d.as_nanos() as u64),
            warmup,
            stop,
            next_id: 0,
        }
    }

    /// Whether the run must send nothing more at time `t_ns` (stopped, counted out, or past
    /// its end).
    pub fn ended_at(&self, t_ns: u64) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.total.is_some_and(|t| self.next_id >= t)
            || self.end_ns.is_some_and(|end| t_ns >= end)
    }

    /// The next job, due at `intended` (None: now, closed loop), or None when the items ran out.
    pub fn take(&mut self, intended: Option<u64>) -> Option<Job> {
        let item = self.items.next()?;
        let id = self.next_id;
        self.next_id += 1;
        Some(Job {
            request_id: id,
            intended_ns: intended,
            item,
            warmup: id < self.warmup,
        })
    }

    /// Closed loop: the next job now, or None when the run is over.
    pub fn next_now(&mut self) -> Option<Job> {
        if self.ended_at(mono_ns()) {
            return None;
        }
        self.take(None)
    }

    /// Jobs handed out so far.
    pub fn dispatched(&self) -> u64 {
        self.next_id
    }
}

/// Where a worker takes its next job.
pub enum JobSource {
    /// Open loop: the dispatcher thread's queue.
    Queue(tokio::sync::Mutex<mpsc::Receiver<Job>>),
    /// Closed loop: the feed itself (held only while a job is made).
    Direct(std::sync::Mutex<Feed>),
}

impl JobSource {
    /// The next job, or None when the run is over.
    pub async fn next(&self) -> Option<Job> {
        match self {
            JobSource::Queue(rx) => rx.lock().await.recv().await,
            JobSource::Direct(feed) => feed.lock().ok()?.next_now(),
        }
    }

    /// Jobs handed out so far, for a closed loop (the dispatcher counts an open one).
    pub fn dispatched(&self) -> u64 {
        match self {
            JobSource::Queue(_) => 0,
            JobSource::Direct(feed) => feed.lock().map(|f| f.dispatched()).unwrap_or(0),
        }
    }
}

/// Runs an open-loop plan on the calling thread until it is exhausted or `stop` is set.
/// Returns the number of jobs dispatched.
pub fn run(
    mut feed: Feed,
    mut arrivals: Box<dyn Iterator<Item = u64> + Send>,
    start_ns: u64,
    tx: mpsc::Sender<Job>,
    pool: Arc<Pool>,
    max_workers: usize,
    grow: Grow,
) -> u64 {
    while let Some(t) = arrivals.next().map(|off| start_ns + off) {
        if feed.ended_at(t) {
            break;
        }
        let Some(job) = feed.take(Some(t)) else { break };
        sleep_until(t, &feed.stop);
        if feed.stop.load(Ordering::Relaxed) {
            break;
        }
        if pool.idle.load(Ordering::Relaxed) == 0
            && pool.workers.load(Ordering::Relaxed) < max_workers
        {
            grow();
        }
        if tx.blocking_send(job).is_err() {
            break;
        }
    }
    feed.dispatched()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Box<dyn Iterator<Item = WorkItem> + Send> {
        Box::new((0..n).map(|i| WorkItem {
            prompt: format!("p{i}"),
            input_tokens: 1,
            max_tokens: None,
            at_ns: None,
        }))
    }

    #[test]
    fn feed_counts_warmup_on_top_of_requests_and_numbers_jobs() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut f = Feed::new(items(100), Some(3), None, 2, mono_ns(), stop);
        let jobs: Vec<Job> = std::iter::from_fn(|| f.next_now()).collect();
        assert_eq!(jobs.len(), 5);
        assert_eq!(
            jobs.iter().map(|j| j.request_id).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(
            jobs.iter().map(|j| j.warmup).collect::<Vec<_>>(),
            [true, true, false, false, false]
        );
        assert!(jobs.iter().all(|j| j.intended_ns.is_none()));
        assert_eq!(f.dispatched(), 5);
    }

    #[test]
    fn feed_ends_with_its_items_its_time_or_stop() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut f = Feed::new(items(2), None, None, 0, mono_ns(), stop.clone());
        assert_eq!(std::iter::from_fn(|| f.next_now()).count(), 2);

        let start = mono_ns();
        let f = Feed::new(
            items(9),
            None,
            Some(Duration::from_secs(1)),
            0,
            start,
            stop.clone(),
        );
        assert!(!f.ended_at(start + 999_999_999));
        assert!(f.ended_at(start + 1_000_000_000));

        let mut f = Feed::new(items(9), None, None, 0, mono_ns(), stop.clone());
        assert!(f.next_now().is_some());
        stop.store(true, Ordering::Relaxed);
        assert!(f.next_now().is_none());
    }

    #[test]
    fn open_loop_sends_each_job_at_its_time_and_stops_at_the_end() {
        let stop = Arc::new(AtomicBool::new(false));
        let start = mono_ns() + 1_000_000;
        let feed = Feed::new(
            items(100),
            None,
            Some(Duration::from_millis(10)),
            0,
            start,
            stop,
        );
        // Offsets 0, 4 and 8 ms fall inside the 10 ms run; 12 ms does not.
        let arrivals = Box::new((0..10u64).map(|i| i * 4_000_000));
        let (tx, mut rx) = mpsc::channel(16);
        let n = run(
            feed,
            arrivals,
            start,
            tx,
            Arc::new(Pool::default()),
            1,
            Box::new(|| {}),
        );
        assert_eq!(n, 3);
        let mut got = Vec::new();
        while let Ok(j) = rx.try_recv() {
            got.push(j);
        }
        assert_eq!(
            got.iter().map(|j| j.intended_ns).collect::<Vec<_>>(),
            [
                Some(start),
                Some(start + 4_000_000),
                Some(start + 8_000_000)
            ]
        );
        assert!(
            mono_ns() >= start + 8_000_000,
            "the last job waited for its time"
        );
    }
}
