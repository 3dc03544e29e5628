//! The event loops the connection workers run on: one single-threaded tokio runtime per core,
//! each owning its connections from connect to close, as wrk's threads do. On the shared
//! multi-threaded runtime every request's wake-ups could move between threads; with one
//! runtime thread a run took a tenth less CPU per request at 256 streams, so each core gets
//! its own loop instead.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use tokio::{runtime::Handle, sync::oneshot, task::JoinHandle as TaskHandle};

/// Running loops; `stop` ends them.
pub struct Loops {
    spawner: Spawner,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// Spawns onto the loops, round robin; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Spawner {
    handles: Arc<[Handle]>,
    next: Arc<AtomicUsize>,
}

impl Spawner {
    /// Runs `task` on loop `i` (modulo their number).
    pub fn spawn_on<F>(&self, i: usize, task: F) -> TaskHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[i % self.handles.len()].spawn(task)
    }

    /// Runs `task` on the next loop in turn.
    pub fn spawn<F>(&self, task: F) -> TaskHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_on(self.next.fetch_add(1, Ordering::Relaxed), task)
    }
}

impl Loops {
    /// Starts `n` loops (at least one), each on a thread of its own.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let (mut handles, mut stops, mut threads) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tbctl-loop-{i}"))
                    .spawn(move || {
                        rt.block_on(async {
                            let _ = stopped.await;
                        })
                    })?,
            );
        }
        Ok(Self {
            spawner: Spawner {
                handles: handles.into(),
                next: Arc::new(AtomicUsize::new(0)),
            },
            stops,
            threads,
        })
    }

    /// How many loops run.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are none (never, once started).
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// A spawner onto these loops.
    pub fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }

    /// Ends every loop (tasks still on one are dropped) and waits for their threads.
    pub async fn stop(self) {
        drop(self.stops);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_task_runs_on_the_loop_it_was_given_and_stop_ends_them() {
        let loops = Loops::start(2).unwrap();
        let s = loops.spawner();
        let name = || std::thread::current().name().map(str::to_owned);
        let on = |i| s.spawn_on(i, async move { name() });
        assert_eq!(on(0).await.unwrap().as_deref(), Some("tbctl-loop-0"));
        assert_eq!(on(1).await.unwrap().as_deref(), Some("tbctl-loop-1"));
        assert_eq!(on(2).await.unwrap().as_deref(), Some("tbctl-loop-0"));
        let turns: Vec<_> =
            futures_util::future::join_all((0..4).map(|_| s.spawn(async move { name() })))
                .await
                .into_iter()
                .map(|r| r.unwrap().unwrap())
                .collect();
        assert_eq!(
            turns,
            [
                "tbctl-loop-0",
                "tbctl-loop-1",
                "tbctl-loop-0",
                "tbctl-loop-1"
            ]
        );
        // A task that never ends must not keep its loop alive.
        s.spawn(std::future::pending::<()>());
        loops.stop().await;
        assert!(s.spawn(async {}).await.is_err(), "the loops are gone");
    }
}
