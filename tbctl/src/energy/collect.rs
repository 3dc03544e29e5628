//! Getting a run's energy samples from tbd: which sensors it has, an idle baseline before the
//! load, and the run's samples once every counter has updated past the last response.

use std::{path::Path, time::Duration};

use tb_proto::v1::{tbd_client::TbdClient, EnergyQuery, GetInfoRequest};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::{series::Series, AbsentSensor, DomainMeta, EnergyMeta, IdleBaseline, Sample};
use crate::{
    clock::mono_ns,
    daemon::{self, DaemonError},
};

/// How long to wait for every counter's next update past the window's end: NVML and RAPL
/// update within a second; a counter slower than this is reported as not covering the window.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// tbd's sensors for a run, with a connection to read their samples.
pub struct Recorder {
    client: TbdClient<Channel>,
    domains: Vec<DomainMeta>,
    absent: Vec<AbsentSensor>,
    interval_ns: u64,
}

/// What [`Recorder::connect`] found.
pub enum Sensors {
    /// At least one sensor is present.
    Present(Recorder),
    /// None is: the line to note, naming every sensor with its reason.
    Absent(String),
}

impl Recorder {
    /// Asks tbd at `socket` for its sensors.
    pub async fn connect(socket: &Path) -> Result<Sensors, DaemonError> {
        let mut client = daemon::connect(socket).await?;
        let info = client.get_info(GetInfoRequest {}).await?.into_inner();
        let absent: Vec<AbsentSensor> = info
            .sensors
            .iter()
            .filter(|s| !s.present)
            .map(|s| AbsentSensor {
                name: s.name.clone(),
                reason: s.reason.clone(),
            })
            .collect();
        let domains: Vec<DomainMeta> = info
            .sensors
            .into_iter()
            .filter(|s| s.present)
            .flat_map(|s| s.domains)
            .map(DomainMeta::from)
            .collect();
        if domains.is_empty() {
            let why = absent
                .iter()
                .map(|a| format!("{}: {}", a.name, a.reason))
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Sensors::Absent(format!(
                "energy absent: no sensor on tbd's host ({why})"
            )));
        }
        Ok(Sensors::Present(Self {
            client,
            domains,
            absent,
            interval_ns: info.energy_capture_interval_ns,
        }))
    }

    /// The domains tbd reads.
    pub fn domains(&self) -> &[DomainMeta] {
        &self.domains
    }

    /// Samples in `[from, now)`.
    async fn samples(&mut self, from_ns: u64) -> Result<Vec<Sample>, DaemonError> {
        let mut s = self
            .client
            .query_energy(EnergyQuery { from_ns, to_ns: 0 })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            out.push(Sample::from(m?));
        }
        Ok(out)
    }

    /// Samples from before `from_ns` to past `to_ns`, once every domain's counter has
    /// updated after `to_ns` (or [`CLOSE_TIMEOUT`] passed): a window closed at the last
    /// sample before the counter's next update would under-count its last interval.
    async fn window(&mut self, from_ns: u64, to_ns: u64) -> Result<Vec<Sample>, DaemonError> {
        // One point before each end: two seconds covers every counter tbd reads. Polled on
        // the window's last two seconds only; the whole window is read once, when closed.
        const BEFORE: u64 = 2_000_000_000;
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
        loop {
            let recent = self.samples(to_ns.saturating_sub(BEFORE)).await?;
            let closed = self
                .domains
                .iter()
                .all(|d| Series::of(&recent, &d.name).updated_after(to_ns));
            if closed || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.samples(from_ns.saturating_sub(BEFORE)).await
    }

    /// Average power per domain over `duration` with no load from this process.
    pub async fn idle_baseline(&mut self, duration: Duration) -> Result<IdleBaseline, DaemonError> {
        // Every counter must have a reading before the baseline starts (a tbd that just
        // started may not have sampled yet).
        let now = mono_ns();
        self.window(now, now).await?;
        let t0 = mono_ns();
        tokio::time::sleep(duration).await;
        let t1 = mono_ns();
        let samples = self.window(t0, t1).await?;
        let secs = (t1 - t0) as f64 / 1e9;
        let power_w = self
            .domains
            .iter()
            .filter_map(|d| {
                let e = Series::of(&samples, &d.name).between(t0, t1)?;
                Some((d.name.clone(), e / secs))
            })
            .collect();
        Ok(IdleBaseline {
            duration_s: secs,
            power_w,
        })
    }

    /// The run's samples and energy.json meta for the window `[from, to]`.
    pub async fn finish(
        mut self,
        from_ns: u64,
        to_ns: u64,
        idle_baseline: Option<IdleBaseline>,
    ) -> Result<(EnergyMeta, Vec<Sample>), DaemonError> {
        let samples = self.window(from_ns, to_ns).await?;
        Ok((
            EnergyMeta {
                domains: self.domains,
                absent: self.absent,
                window_from_ns: from_ns,
                window_to_ns: to_ns,
                idle_baseline,
                interval_ns: self.interval_ns,
            },
            samples,
        ))
    }
}
