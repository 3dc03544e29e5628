//! `tbctl profile`'s engine: dispatcher thread, connection workers, record writer.

pub mod dispatch;
pub mod job;
pub mod loops;
pub mod worker;
pub mod writer;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch, Mutex};

use crate::{
    client::{ClientError, Conn},
    clock::mono_ns,
    record::{RequestRecord, RunMeta},
};
use dispatch::{Feed, JobSource, Plan, Pool};
use loops::Loops;
use worker::RequestSettings;
use writer::{OnRecord, RecordWriter};

/// Everything a load run needs.
pub struct LoadConfig {
    pub run_dir: PathBuf,
    pub meta: RunMeta,
    pub req: RequestSettings,
    /// Cap on requests in flight (closed loop: exactly this many workers).
    pub concurrency: Option<usize>,
    /// Connections opened before the clock starts, so the first requests do not pay set-up.
    pub preconnect: usize,
    /// How long Ctrl-C waits for requests in flight before abandoning them.
    pub grace: Duration,
    pub plan: Plan,
}

/// What a load run produced.
pub struct LoadOutcome {
    pub records: Vec<RequestRecord>,
    pub dispatched: u64,
    pub interrupted: bool,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Maps a monotonic time to Unix ns with the run's clock pair.
pub fn mono_to_unix(meta: &RunMeta) -> impl Fn(u64) -> u64 + Send + 'static {
    let (m, u) = (meta.clock_mono_ns, meta.clock_unix_ns);
    move |t| (u as i128 + t as i128 - m as i128) as u64
}

/// Runs the load and returns every record (also in requests.jsonl, written as they finished).
pub async fn run(cfg: LoadConfig, on_record: OnRecord) -> Result<LoadOutcome, ClientError> {
    let (sink, writer) = RecordWriter::create(
        &cfg.run_dir.join("requests.jsonl"),
        &cfg.meta,
        mono_to_unix(&cfg.meta),
        on_record,
    )
    .map_err(|e| ClientError::Connect(format!("cannot write the run directory: {e}")))?;

    let closed_loop = cfg.plan.arrivals.is_none();
    let workers_wanted = match (closed_loop, cfg.concurrency) {
        (true, c) => c.unwrap_or(1),
        (false, Some(c)) => cfg.preconnect.min(c),
        (false, None) => cfg.preconnect,
    }
    .max(1);
    let max_workers = cfg
        .concurrency
        .unwrap_or(if closed_loop { 1 } else { 100_000 });

    // One loop per core, or per connection when there are fewer.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let loops = Loops::start(if closed_loop {
        cores.min(workers_wanted)
    } else {
        cores
    })
    .map_err(|e| ClientError::Connect(format!("cannot start the event loops: {e}")))?;
    let spawner = loops.spawner();

    // Pre-connect, each connection on the loop that will drive it: also the check that the
    // target accepts connections at all.
    let (addr, socket_arrivals) = (cfg.req.addr, cfg.req.socket_arrivals);
    let connecting: Vec<_> = (0..loops.len())
        .map(|i| {
            let n = workers_wanted / loops.len() + usize::from(i < workers_wanted % loops.len());
            spawner.spawn_on(i, async move {
                let mut conns = Vec::with_capacity(n);
                for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
                    let batch = futures_util::future::join_all(
                        chunk.iter().map(|_| Conn::connect(addr, socket_arrivals)),
                    )
                    .await;
                    for c in batch {
                        conns.push(c?);
                    }
                }
                Ok::<_, ClientError>(conns)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(loops.len());
    for (i, c) in connecting.into_iter().enumerate() {
        let c = c
            .await
            .map_err(|e| ClientError::Connect(format!("connecting: {e}")))?;
        match c {
            Ok(c) => conns.push((i, c)),
            Err(e) => {
                loops.stop().await;
                return Err(e);
            }
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    // A short lead so every worker waits on the queue before the first intended time.
    let start_ns = mono_ns() + 5_000_000;
    let plan = cfg.plan;
    let feed = Feed::new(
        plan.items,
        plan.requests,
        plan.duration,
        plan.warmup,
        start_ns,
        stop.clone(),
    );
    let (jobs, open_loop) = match plan.arrivals {
        None => (
            Arc::new(JobSource::Direct(std::sync::Mutex::new(feed))),
            None,
        ),
        Some(arrivals) => {
            let (tx, rx) = mpsc::channel::<job::Job>(1 << 16);
            (
                Arc::new(JobSource::Queue(Mutex::new(rx))),
                Some((feed, arrivals, tx)),
            )
        }
    };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let pool = Arc::new(Pool::default());
    let shared = Arc::new(worker::Shared {
        req: cfg.req,
        jobs: jobs.clone(),
        sink,
        pool: pool.clone(),
        cancel: cancel_rx,
        stop: stop.clone(),
        alive: alive_tx,
    });
    for (i, loop_conns) in conns {
        for c in loop_conns {
            pool.workers.fetch_add(1, Ordering::Relaxed);
            spawner.spawn_on(i, worker::run(shared.clone(), Some(c)));
        }
    }
    let dispatcher = match open_loop {
        None => None,
        Some((feed, arrivals, tx)) => {
            let grow_spawner = spawner.clone();
            let grow_shared = shared.clone();
            let grow_pool = pool.clone();
            let grow: dispatch::Grow = Box::new(move || {
                grow_pool.workers.fetch_add(1, Ordering::Relaxed);
                grow_spawner.spawn(worker::run(grow_shared.clone(), None));
            });
            let t = std::thread::Builder::new()
                .name("tbctl-dispatch".into())
                .spawn(move || dispatch::run(feed, arrivals, start_ns, tx, pool, max_workers, grow))
                .map_err(|e| ClientError::Connect(format!("cannot start the dispatcher: {e}")))?;
            Some(t)
        }
    };
    drop(shared);

    let mut interrupted = false;
    tokio::select! {
        _ = alive_rx.recv() => {}
        _ = tokio::signal::ctrl_c() => {
            interrupted = true;
            stop.store(true, Ordering::Relaxed);
            tracing::warn!("interrupted: no new requests; waiting up to {:?} for those in flight", cfg.grace);
            if tokio::time::timeout(cfg.grace, alive_rx.recv()).await.is_err() {
                let _ = cancel_tx.send(true);
                alive_rx.recv().await;
            }
        }
    }
    let dispatched = match dispatcher {
        Some(d) => tokio::task::spawn_blocking(move || d.join().unwrap_or(0))
            .await
            .unwrap_or(0),
        None => jobs.dispatched(),
    };
    let end_ns = mono_ns();
    loops.stop().await;
    let records = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?
        .map_err(|e| ClientError::Connect(format!("writing requests.jsonl: {e}")))?;
    Ok(LoadOutcome {
        records,
        dispatched,
        interrupted,
        start_ns,
        end_ns,
    })
}
