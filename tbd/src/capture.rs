//! The capture engine: one reader thread drains the ring buffer, turns events into exchanges,
//! connections and DNS lookups, and writes them to the store as they complete.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tb_proto::v1::{Exchange, ExportLatency, LossCounter, Run};
use tbd_common::tcp_state;
use tokio::sync::broadcast;

use crate::{
    conntrack::{ConnTracker, Output},
    descendants,
    error::TbdError,
    events::{batch_chunks, Event},
    listeners,
    probes::{Probes, StatsMode},
    store::{Record, Store},
};

pub use tbd_common::clock::{mono_ns, unix_ns};

/// Counters shown by `GetInfo` and `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Ring-buffer records taken.
    pub events_received: AtomicU64,
    /// Probe events those records carried: a batch counts each of its chunks.
    pub syscalls_received: AtomicU64,
    pub events_stored: AtomicU64,
    pub events_outside_runs: AtomicU64,
    pub records_stored: AtomicU64,
}

pub(crate) struct Active {
    pub(crate) run: Run,
    tracker: ConnTracker,
    lost_at_start: Vec<(&'static str, u64)>,
    /// Export latency of each exchange stored so far, µs (see [`ExportLatency`]).
    export_us: Vec<u32>,
}

impl Active {
    pub(crate) fn new(run: Run, lost_at_start: Vec<(&'static str, u64)>) -> Self {
        Self {
            tracker: ConnTracker::new(run.run_id.clone()),
            run,
            lost_at_start,
            export_us: Vec::new(),
        }
    }

    /// Ends tracking: every open connection and exchange, as records counted on the run.
    pub(crate) fn finish(
        &mut self,
        now_ns: u64,
        tail: &broadcast::Sender<Exchange>,
    ) -> Vec<Record> {
        let mut outputs = Vec::new();
        self.tracker.flush(now_ns, &mut |o| outputs.push(o));
        outputs_to_records(outputs, &mut self.run, tail)
    }
}

/// Where the reader takes ring-buffer records from: the probes' ring buffer, or a recorded
/// event log being replayed ([`crate::replay`]).
pub(crate) trait Source: Send {
    /// The next record, decoded, and written to the source's event log when `log`: None when
    /// there is none now, Some(None) for a record that does not decode.
    fn next_event(&mut self, log: bool) -> Option<Option<Event>>;
    /// Writes a record that reached the tracker another way to the event log, if one is kept.
    fn log(&mut self, _record: &[u8]) {}
    /// Called after each drain.
    fn drained(&mut self) {}
}

/// The probes' ring buffer, each record also written to an event log when one is kept.
struct Ring {
    ring: RingBuf<MapData>,
    log: Option<crate::replay::EventLog>,
}

impl Source for Ring {
    fn next_event(&mut self, log: bool) -> Option<Option<Event>> {
        let item = self.ring.next()?;
        if let (true, Some(l)) = (log, self.log.as_mut()) {
            l.write(&item);
        }
        Some(Event::decode(&item))
    }

    fn log(&mut self, record: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            log.write(record);
        }
    }

    fn drained(&mut self) {
        if let Some(log) = self.log.as_mut() {
            log.flush();
        }
    }
}

/// The lease of the running capture: its client renews it, or tbd ends the capture.
struct Lease {
    run_id: String,
    period: Duration,
    deadline: Instant,
}

/// The lease a client that names none gets.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

enum Control {
    /// Drain everything, then take the chunks the probes still held (newer than their
    /// sockets' events in the ring), and answer.
    Drain {
        held: Vec<tbd_common::DataBatchEvent>,
        ack: mpsc::Sender<()>,
    },
}

/// The daemon's state shared by the API.
pub struct Engine {
    pub store: Arc<Store>,
    probes: Mutex<Probes>,
    active: Arc<Mutex<Option<Active>>>,
    pub counters: Arc<Counters>,
    pub tail: broadcast::Sender<Exchange>,
    control: Mutex<mpsc::Sender<Control>>,
    /// When BPF run-time statistics are kept.
    pub stats_mode: StatsMode,
    lease: Mutex<Option<Lease>>,
}

impl Engine {
    /// Takes the probes' ring buffer and starts the reader thread (and, for
    /// [`StatsMode::Sampled`], the thread that turns BPF statistics on and off). With `log`,
    /// every ring-buffer record is also written there, for replaying offline
    /// (`tbd --record-events`).
    pub fn start(
        mut probes: Probes,
        store: Arc<Store>,
        stats_mode: StatsMode,
        log: Option<crate::replay::EventLog>,
    ) -> Result<Arc<Self>, TbdError> {
        probes.set_stats(stats_mode == StatsMode::Always);
        let ring = probes.take_ring()?;
        let (tail, _) = broadcast::channel(4096);
        let (ctl_tx, ctl_rx) = mpsc::channel();
        let engine = Arc::new(Self {
            store,
            probes: Mutex::new(probes),
            active: Arc::new(Mutex::new(None)),
            counters: Arc::new(Counters::default()),
            tail,
            control: Mutex::new(ctl_tx),
            stats_mode,
            lease: Mutex::new(None),
        });
        let reader = Reader::new(
            Box::new(Ring { ring, log }),
            engine.active.clone(),
            engine.store.clone(),
            engine.counters.clone(),
            engine.tail.clone(),
        );
        std::thread::Builder::new()
            .name("tbd-ring".into())
            .spawn(move || reader.run(ctl_rx))?;
        {
            // A client that died holding a capture stops renewing its lease: end the capture,
            // so no probe stays attached for every process on the host to pay for.
            let weak = Arc::downgrade(&engine);
            std::thread::Builder::new()
                .name("tbd-lease".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.end_lapsed_lease();
                        drop(engine);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                })?;
        }
        if stats_mode == StatsMode::Sampled {
            let weak = Arc::downgrade(&engine);
            std::thread::Builder::new()
                .name("tbd-bpf-stats".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.sample_stats();
                        drop(engine);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })?;
        }
        Ok(engine)
    }

    /// Statistics on or off per the sampling schedule, counted from the capture's start.
    fn sample_stats(&self) {
        let since = self
            .active
            .lock()
            .expect("active lock")
            .as_ref()
            .map(|a| Duration::from_nanos(mono_ns().saturating_sub(a.run.start_ns)));
        let want = since.is_some_and(|d| self.stats_mode.wanted(d));
        self.probes().set_stats(want);
    }

    /// The probes (for stats and loss counters). Lock order: the capture state (`active`)
    /// may be held when this is taken, never taken while this is held.
    pub fn probes(&self) -> std::sync::MutexGuard<'_, Probes> {
        self.probes.lock().expect("probes lock")
    }

    /// The running capture's id, if any.
    pub fn active_run(&self) -> Option<String> {
        self.active
            .lock()
            .expect("active lock")
            .as_ref()
            .map(|a| a.run.run_id.clone())
    }

    /// Ends the running capture as abandoned when its lease has run out.
    fn end_lapsed_lease(&self) {
        let lapsed = {
            let lease = self.lease.lock().expect("lease lock");
            match lease.as_ref() {
                Some(l) if Instant::now() >= l.deadline => Some((l.run_id.clone(), l.period)),
                _ => None,
            }
        };
        if let Some((run_id, period)) = lapsed {
            let reason = format!(
                "abandoned: its client renewed no lease for {:.1} s (it died or lost tbd)",
                period.as_secs_f64()
            );
            tracing::warn!(run = %run_id, "{reason}");
            if let Err(e) = self.stop_capture_as(&run_id, &reason) {
                tracing::warn!(run = %run_id, "ending the abandoned capture: {e}");
            }
        }
    }

    /// Extends the running capture's lease by its period.
    pub fn renew(&self, run_id: &str) -> Result<Run, TbdError> {
        let mut lease = self.lease.lock().expect("lease lock");
        match lease.as_mut() {
            Some(l) if l.run_id == run_id => {
                l.deadline = Instant::now() + l.period;
            }
            _ => return Err(TbdError::NoSuchRun(format!("{run_id} is not capturing"))),
        }
        drop(lease);
        let active = self.active.lock().expect("active lock");
        active
            .as_ref()
            .map(|a| a.run.clone())
            .ok_or_else(|| TbdError::NoSuchRun(format!("{run_id} is not capturing")))
    }

    /// Starts a capture of the given client pids and server ports, held by a lease of
    /// `lease` that its client renews.
    pub fn start_capture(
        &self,
        run_id: Option<String>,
        label: String,
        client_pids: Vec<u32>,
        server_ports: Vec<u32>,
        lease: Duration,
    ) -> Result<Run, TbdError> {
        let mut active = self.active.lock().expect("active lock");
        if let Some(a) = active.as_ref() {
            return Err(TbdError::Busy(a.run.run_id.clone()));
        }
        let run_id = run_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("tbd-{}", unix_ns() / 1_000_000));
        if self.store.get_run(&run_id)?.is_some() {
            return Err(TbdError::Busy(format!("run id {run_id} already exists")));
        }
        let mut listeners_found = Vec::new();
        let lost_at_start;
        {
            let mut probes = self.probes();
            // Nothing is tracked between captures, so nothing is held either.
            probes.clear_filters(mono_ns())?;
            for port in &server_ports {
                let port = u16::try_from(*port)
                    .map_err(|_| TbdError::Layout(format!("port {port} out of range")))?;
                probes.track_port(port)?;
                let proc_root = std::path::Path::new("/proc");
                for l in listeners::find(proc_root, port) {
                    probes.track_listener(l.pid, l.fd, l.port)?;
                    // A thread already inside accept() entered it before the filter existed.
                    for (tid, peer) in listeners::blocked_accepts(proc_root, &l) {
                        probes.track_inflight_accept(l.pid, tid, l.fd, peer, l.port)?;
                    }
                    listeners_found.push(format!("{}/{}:{}", l.pid, l.fd, l.port));
                }
            }
            // Children forked from now on are followed in the kernel; those forked before
            // (a load generator's worker processes) are found here.
            let children = descendants::find(std::path::Path::new("/proc"), &client_pids);
            for pid in client_pids.iter().chain(&children) {
                probes.track_pid(*pid)?;
            }
            probes.mark_capture_start(mono_ns())?;
            if let Err(e) = probes.attach() {
                probes.detach();
                return Err(e);
            }
            if self.stats_mode == StatsMode::Sampled {
                probes.set_stats(true);
            }
            lost_at_start = probes.lost()?;
        }
        let run = Run {
            run_id: run_id.clone(),
            label,
            start_ns: mono_ns(),
            start_unix_ns: unix_ns(),
            client_pids,
            server_ports,
            server_listeners: listeners_found,
            ..Default::default()
        };
        if let Err(e) = self.store.put_run(&run) {
            let mut probes = self.probes();
            probes.detach();
            let _ = probes.clear_filters(mono_ns());
            return Err(e);
        }
        tracing::info!(run = %run_id, lease_ms = lease.as_millis() as u64, "capture started");
        *self.lease.lock().expect("lease lock") = Some(Lease {
            run_id: run_id.clone(),
            period: lease,
            deadline: Instant::now() + lease,
        });
        *active = Some(Active::new(run.clone(), lost_at_start));
        Ok(run)
    }

    /// Stops the capture at its client's request.
    pub fn stop_capture(&self, run_id: &str) -> Result<Run, TbdError> {
        self.stop_capture_as(run_id, "stopped")
    }

    /// Stops the capture: clears the filters, drains the ring buffer, flushes open
    /// connections, and stores the finished run with `reason` as its end.
    pub fn stop_capture_as(&self, run_id: &str, reason: &str) -> Result<Run, TbdError> {
        {
            let active = self.active.lock().expect("active lock");
            match active.as_ref() {
                Some(a) if a.run.run_id == run_id || run_id.is_empty() => {}
                _ => return Err(TbdError::NoSuchRun(format!("{run_id} is not capturing"))),
            }
        }
        let (held, lost_now) = {
            let mut probes = self.probes();
            // Detached first: then no probe adds to a held batch while it is read out.
            probes.detach();
            if self.stats_mode == StatsMode::Sampled {
                probes.set_stats(false);
            }
            let held = probes.clear_filters(mono_ns())?;
            (held, probes.lost()?)
        };
        // Events already in the ring buffer must reach the tracker before it flushes.
        let (ack_tx, ack_rx) = mpsc::channel();
        self.control
            .lock()
            .expect("control lock")
            .send(Control::Drain { held, ack: ack_tx })
            .map_err(|_| TbdError::Layout("ring reader stopped".into()))?;
        let _ = ack_rx.recv_timeout(Duration::from_secs(10));
        let mut active = self.active.lock().expect("active lock");
        let Some(mut a) = active.take() else {
            return Err(TbdError::NoSuchRun(run_id.into()));
        };
        let recs = a.finish(mono_ns(), &self.tail);
        let tracker_stats = a.tracker.stats();
        let export = export_latency(&mut a.export_us);
        let mut run = a.run;
        run.export_latency = Some(export);
        run.end_reason = reason.into();
        self.lease.lock().expect("lease lock").take();
        self.store.append(&recs)?;
        self.counters
            .records_stored
            .fetch_add(recs.len() as u64, Ordering::Relaxed);
        run.end_ns = mono_ns();
        run.lost = lost_now
            .iter()
            .zip(a.lost_at_start.iter())
            .map(|((name, now), (_, then))| LossCounter {
                reason: name.to_string(),
                count: now - then,
            })
            .collect();
        run.client_records = self
            .store
            .count::<tb_proto::v1::ClientRecord>(&run.run_id)?;
        self.store.put_run(&run)?;
        self.store.flush()?;
        tracing::info!(run = %run.run_id, exchanges = run.exchanges, tracker = ?tracker_stats, "capture stopped");
        Ok(run)
    }
}

/// The percentiles of a capture's export latencies (nearest rank).
fn export_latency(us: &mut [u32]) -> ExportLatency {
    us.sort_unstable();
    let at = |q: f64| -> u64 {
        if us.is_empty() {
            return 0;
        }
        let i = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
        u64::from(us[i])
    };
    ExportLatency {
        exchanges: us.len() as u64,
        p50_us: at(0.50),
        p95_us: at(0.95),
        p99_us: at(0.99),
        max_us: us.last().copied().map_or(0, u64::from),
    }
}

/// Converts tracker outputs into store records, counting them on the run and feeding the tail.
fn outputs_to_records(
    outputs: Vec<Output>,
    run: &mut Run,
    tail: &broadcast::Sender<Exchange>,
) -> Vec<Record> {
    outputs
        .into_iter()
        .map(|o| match o {
            Output::Exchange(e) => {
                run.exchanges += 1;
                // Cloning an exchange (with its chunk list) only pays when someone tails.
                if tail.receiver_count() > 0 {
                    let _ = tail.send((*e).clone());
                }
                Record::boxed(e)
            }
            Output::Connection(c) => {
                run.connections += 1;
                Record::new(c)
            }
            Output::Dns(d) => {
                run.dns_lookups += 1;
                Record::new(d)
            }
        })
        .collect()
}

/// Events taken per drain before the store is written.
const DRAIN_BATCH: u64 = 4096;
/// How long the reader sleeps when the ring buffer had less than a batch: at 100 MB/s of
/// events that is 1 MB, far below the 4 MiB ring; longer sleeps mean fewer, larger store
/// batches.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// Takes records from its source through the running capture's tracker into the store.
pub(crate) struct Reader {
    source: Box<dyn Source>,
    active: Arc<Mutex<Option<Active>>>,
    store: Arc<Store>,
    counters: Arc<Counters>,
    tail: broadcast::Sender<Exchange>,
    batch: Vec<Output>,
    /// Records the store could not take yet: it was giving sled's memory back.
    pending: Vec<Record>,
    /// Stored exchanges, handed back to the tracker at the next drain for their buffers.
    // Boxed on purpose: each box goes from tracker to store and back without its 500 bytes
    // being copied.
    #[allow(clippy::vec_box)]
    stored: Vec<Box<Exchange>>,
}

impl Reader {
    pub(crate) fn new(
        source: Box<dyn Source>,
        active: Arc<Mutex<Option<Active>>>,
        store: Arc<Store>,
        counters: Arc<Counters>,
        tail: broadcast::Sender<Exchange>,
    ) -> Self {
        Self {
            source,
            active,
            store,
            counters,
            tail,
            batch: Vec::with_capacity(1024),
            pending: Vec::new(),
            stored: Vec::new(),
        }
    }

    fn run(mut self, control: mpsc::Receiver<Control>) {
        loop {
            // The probes submit without wake-ups: drain on a short timer, at once again while
            // batches come back full.
            if self.drain() < DRAIN_BATCH {
                std::thread::sleep(DRAIN_INTERVAL);
            }
            match control.try_recv() {
                Ok(Control::Drain { held, ack }) => {
                    // A last pass after a short pause catches events still being submitted.
                    std::thread::sleep(Duration::from_millis(20));
                    while self.drain() > 0 {}
                    self.take_held(held);
                    self.store_pending(true);
                    let _ = ack.send(());
                }
                Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
    }

    /// Processes up to one batch of events; returns how many it took.
    pub(crate) fn drain(&mut self) -> u64 {
        let mut n = 0u64;
        let mut syscalls = 0u64;
        let mut active = self.active.lock().expect("active lock");
        match active.as_mut() {
            Some(a) => a.tracker.recycle(self.stored.drain(..)),
            None => self.stored.clear(),
        }
        while let Some(ev) = self.source.next_event(active.is_some()) {
            n += 1;
            let Some(ev) = ev else {
                continue;
            };
            syscalls += match &ev {
                Event::Batch(b) => batch_chunks(b).len() as u64,
                _ => 1,
            };
            match active.as_mut() {
                Some(a) => {
                    if let Event::State(st) = &ev {
                        // A listener the kernel added during the capture (a server started
                        // or restarted then), listed with those found at its start.
                        if st.newstate == tcp_state::LISTEN && st.fd >= 0 {
                            a.run
                                .server_listeners
                                .push(format!("{}/{}:{}", st.hdr.pid, st.fd, st.src.port));
                        }
                    }
                    a.tracker.on_event(&ev, &mut |o| self.batch.push(o))
                }
                None => {
                    self.counters
                        .events_outside_runs
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            if n >= DRAIN_BATCH {
                break;
            }
        }
        self.source.drained();
        self.counters
            .events_received
            .fetch_add(n, Ordering::Relaxed);
        self.counters
            .syscalls_received
            .fetch_add(syscalls, Ordering::Relaxed);
        if let Some(a) = active.as_mut() {
            self.counters.events_stored.fetch_add(n, Ordering::Relaxed);
            if !self.batch.is_empty() {
                // Replaced at the size it reached, so that the next drain does not regrow it.
                let cap = self.batch.capacity();
                let outs = std::mem::replace(&mut self.batch, Vec::with_capacity(cap));
                self.pending
                    .extend(outputs_to_records(outs, &mut a.run, &self.tail));
            }
        }
        drop(active);
        self.store_pending(false);
        n
    }

    /// Tracks (and logs) the chunks the probes held when the capture stopped, after the ring's
    /// last events: they are newer than their sockets' events there.
    pub(crate) fn take_held(&mut self, held: Vec<tbd_common::DataBatchEvent>) {
        let mut active = self.active.lock().expect("active lock");
        let Some(a) = active.as_mut() else {
            return;
        };
        for b in held {
            // As the kernel sends a batch: its header and valid chunks.
            let len = tbd_common::BATCH_HEADER_LEN + std::mem::size_of_val(batch_chunks(&b));
            self.source.log(&crate::events::as_bytes(&b)[..len]);
            a.tracker
                .on_event(&Event::Batch(Box::new(b)), &mut |o| self.batch.push(o));
        }
        let outs = std::mem::take(&mut self.batch);
        self.pending
            .extend(outputs_to_records(outs, &mut a.run, &self.tail));
        drop(active);
        self.source.drained();
    }

    /// Writes the pending records; unless `wait`, leaves them pending while the store is
    /// being reopened, so that the ring keeps being drained meanwhile.
    pub(crate) fn store_pending(&mut self, wait: bool) {
        if self.pending.is_empty() {
            return;
        }
        let r = if wait {
            self.store.append(&self.pending).map(|()| true)
        } else {
            self.store.try_append(&self.pending)
        };
        match r {
            Ok(false) => return,
            Ok(true) => {
                self.counters
                    .records_stored
                    .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::error!("store append failed: {e}"),
        }
        // Queryable from now: each exchange's export latency from its last event.
        let now = mono_ns();
        let mut latencies = Vec::new();
        for x in self
            .pending
            .drain(..)
            .filter_map(|r| r.take::<Exchange>().ok())
        {
            let last = x.t_response_last_ns.max(x.t_request_last_ns);
            latencies.push((now.saturating_sub(last) / 1_000).min(u64::from(u32::MAX)) as u32);
            self.stored.push(x);
        }
        if !latencies.is_empty() {
            if let Some(a) = self.active.lock().expect("active lock").as_mut() {
                a.export_us.extend(latencies);
            }
        }
        // It grows while sled is reopened; what it grew to need not be kept.
        self.pending.shrink_to(1024);
    }
}

#[cfg(test)]
mod tests {
    use super::export_latency;

    #[test]
    fn export_percentiles_are_nearest_rank() {
        let mut us: Vec<u32> = (1..=100).rev().collect();
        let e = export_latency(&mut us);
        assert_eq!(
            (e.exchanges, e.p50_us, e.p95_us, e.p99_us, e.max_us),
            (100, 50, 95, 99, 100)
        );
        assert_eq!(export_latency(&mut []).exchanges, 0);
    }
}
