//! The sampler: one thread reads every present sensor on a fixed CLOCK_MONOTONIC schedule
//! (finer while a capture runs), streams each sample to live watchers and stores them in
//! batches of about a second.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tb_proto::v1::{EnergySample, SensorInfo};
use tbd_common::clock::mono_ns;
use tokio::sync::broadcast;

use super::{Found, Sensor};
use crate::{error::TbdError, store::Store};

/// The host series' run id in the store: samples belong to no run.
pub const HOST: &str = "";

/// When and how long samples are kept.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// Interval while no capture runs.
    pub idle: Duration,
    /// Interval while a capture runs.
    pub capture: Duration,
    /// Samples older than this are deleted.
    pub retention: Duration,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            idle: Duration::from_millis(100),
            capture: Duration::from_millis(20),
            retention: Duration::from_secs(86_400),
        }
    }
}

/// How often samples taken are written to the store.
const STORE_EVERY_NS: u64 = 1_000_000_000;
/// How often old samples are trimmed.
const TRIM_EVERY_NS: u64 = 600_000_000_000;

/// Samples the sensors and holds what is not stored yet.
pub struct Sampler {
    info: Vec<SensorInfo>,
    cfg: SamplerConfig,
    store: Arc<Store>,
    live: broadcast::Sender<EnergySample>,
    pending: Mutex<Vec<EnergySample>>,
    capturing: Box<dyn Fn() -> bool + Send + Sync>,
    stop: AtomicBool,
}

impl Sampler {
    /// Starts the sampling thread when any sensor is present. `capturing` says whether a
    /// capture runs (the finer interval).
    pub fn start(
        found: Found,
        store: Arc<Store>,
        cfg: SamplerConfig,
        capturing: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Arc<Self> {
        let (live, _) = broadcast::channel(256);
        let s = Arc::new(Self {
            info: found.info,
            cfg,
            store,
            live,
            pending: Mutex::new(Vec::new()),
            capturing,
            stop: AtomicBool::new(false),
        });
        if !found.sensors.is_empty() {
            let me = s.clone();
            std::thread::Builder::new()
                .name("tb-energy".into())
                .spawn(move || me.run(found.sensors))
                .expect("spawn the energy sampler");
        }
        s
    }

    /// Every source, present or not, with its domains or why it is absent.
    pub fn info(&self) -> Vec<SensorInfo> {
        self.info.clone()
    }

    /// Whether any sensor is read.
    pub fn any_present(&self) -> bool {
        self.info.iter().any(|s| s.present)
    }

    /// The intervals, idle and capturing.
    pub fn intervals(&self) -> (Duration, Duration) {
        (self.cfg.idle, self.cfg.capture)
    }

    /// Samples as they are taken.
    pub fn subscribe(&self) -> broadcast::Receiver<EnergySample> {
        self.live.subscribe()
    }

    /// Asks the thread to stop after its current sample.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Writes the samples taken but not yet stored.
    pub fn flush(&self) -> Result<(), TbdError> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        if batch.is_empty() {
            return Ok(());
        }
        let records: Vec<_> = batch.into_iter().map(crate::store::Record::new).collect();
        self.store.append(&records)
    }

    /// Calls `f` with each sample in `[from, to)` (`to` 0 = up to now), oldest first, the
    /// samples not yet stored included.
    pub fn for_each(
        &self,
        from_ns: u64,
        to_ns: u64,
        f: impl FnMut(EnergySample) -> bool,
    ) -> Result<(), TbdError> {
        self.flush()?;
        self.store
            .for_each_record::<EnergySample>(HOST, from_ns, to_ns, f)?;
        Ok(())
    }

    fn run(self: Arc<Self>, mut sensors: Vec<Box<dyn Sensor>>) {
        // The first sample right away: it is every counter's zero.
        let mut next = mono_ns().saturating_sub(self.cfg.idle.as_nanos() as u64);
        let (mut stored_at, mut trimmed_at) = (next, 0u64);
        while !self.stop.load(Ordering::Relaxed) {
            let interval = if (self.capturing)() {
                self.cfg.capture
            } else {
                self.cfg.idle
            }
            .as_nanos() as u64;
            next += interval;
            let now = mono_ns();
            if next < now {
                // Late by more than an interval (a stalled host): skip what was missed rather
                // than sample in a burst.
                next = now;
            }
            sleep_until(next);
            let (t, readings) = read_all(&mut sensors);
            let sample = EnergySample {
                run_id: HOST.into(),
                t_ns: t,
                readings,
            };
            if self.live.receiver_count() > 0 {
                let _ = self.live.send(sample.clone());
            }
            self.pending.lock().expect("pending lock").push(sample);
            if t.saturating_sub(stored_at) >= STORE_EVERY_NS {
                stored_at = t;
                if let Err(e) = self.flush() {
                    tracing::error!("storing energy samples: {e}");
                }
            }
            if t.saturating_sub(trimmed_at) >= TRIM_EVERY_NS {
                trimmed_at = t;
                let cut = t.saturating_sub(self.cfg.retention.as_nanos() as u64);
                match self.store.trim::<EnergySample>(HOST, cut) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("energy retention deleted {n} samples"),
                    Err(e) => tracing::error!("energy retention: {e}"),
                }
            }
        }
    }
}

/// Reads reads taking longer than this were interrupted (preempted): read again.
const READ_MAX_NS: u64 = 2_000_000;

/// Every sensor's readings and the time they hold for. A sample is stamped before its reads;
/// a read preempted for tens of ms on a busy host would give values newer than the stamp
/// (power off by that share of the interval), so a slow pass is read again, up to three
/// times. The meters are cumulative: a pass read again loses no energy.
fn read_all(sensors: &mut [Box<dyn Sensor>]) -> (u64, Vec<tb_proto::v1::EnergyReading>) {
    let mut tries = 0;
    loop {
        let t = mono_ns();
        let mut readings = Vec::new();
        for s in sensors.iter_mut() {
            s.read(t, &mut readings);
        }
        tries += 1;
        if mono_ns() - t <= READ_MAX_NS || tries == 3 {
            return (t, readings);
        }
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `t_ns`: an absolute deadline, so the schedule does
/// not drift by each sample's own duration.
fn sleep_until(t_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (t_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (t_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}
