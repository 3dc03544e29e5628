//! The gRPC API (`trafficbench.v1.Tbd`) over the capture engine and the store.

use std::{pin::Pin, sync::Arc};

use futures_util::Stream;
use tb_proto::v1::{
    tbd_server::Tbd, ClientRecord, Connection, DaemonInfo, DeleteRunRequest, DeleteRunResponse,
    DnsLookup, EnergyQuery, EnergySample, Exchange, GetInfoRequest, GetRunRequest, ListRunsRequest,
    ListRunsResponse, LossCounter, ProbeInfo, QueryRequest, RenewCaptureRequest, Run,
    StartCaptureRequest, StopCaptureRequest, TailRequest, UploadResponse, WatchEnergyRequest,
};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Request, Response, Status};

use crate::{
    capture::Engine,
    error::TbdError,
    sensors::sampler::Sampler,
    store::{Record, Stored},
};

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Runs a store call on this worker without stalling the runtime's other tasks: the store may
/// wait for sled to reopen or scan a run.
fn blocking<T>(f: impl FnOnce() -> Result<T, TbdError>) -> Result<T, Status> {
    tokio::task::block_in_place(f).map_err(status)
}

/// The service implementation.
pub struct Service {
    engine: Arc<Engine>,
    sampler: Arc<Sampler>,
}

impl Service {
    /// Serves `engine` and the energy `sampler`.
    pub fn new(engine: Arc<Engine>, sampler: Arc<Sampler>) -> Self {
        Self { engine, sampler }
    }

    /// Streams one kind of a run's records in a time range, oldest first, decoded on a
    /// blocking thread.
    fn query<M>(&self, req: QueryRequest) -> Result<Streamed<M>, Status>
    where
        M: Stored,
    {
        if blocking(|| self.engine.store.get_run(&req.run_id))?.is_none() {
            return Err(Status::not_found(format!("no run {}", req.run_id)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.engine.store.clone();
        tokio::task::spawn_blocking(move || {
            // Sent as the store merges them: a slow reader holds the scan, not the whole run
            // in memory.
            let r = store.for_each_record::<M>(&req.run_id, req.from_ns, req.to_ns, |m| {
                tx.blocking_send(Ok(m)).is_ok()
            });
            if let Err(e) = r {
                let _ = tx.blocking_send(Err(status(e)));
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

fn status(e: TbdError) -> Status {
    match e {
        TbdError::NoSuchRun(m) => Status::not_found(m),
        TbdError::Busy(m) => Status::failed_precondition(format!(
            "a capture is already running ({m}); stop it first (tbctl capture stop)"
        )),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl Tbd for Service {
    async fn get_info(&self, _: Request<GetInfoRequest>) -> Result<Response<DaemonInfo>, Status> {
        // Before the probes: the capture state is never taken while they are held.
        let active_run = self.engine.active_run().unwrap_or_default();
        let probes = self.engine.probes();
        let c = &self.engine.counters;
        use std::sync::atomic::Ordering::Relaxed;
        let info = DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            kernel: kernel_release(),
            probes: probes
                .program_stats()
                .into_iter()
                .map(|p| ProbeInfo {
                    name: p.name,
                    attach: p.attach,
                    run_time_ns: p.run_time_ns,
                    run_count: p.run_count,
                    attached: p.attached,
                })
                .collect(),
            sensors: self.sampler.info(),
            lost: probes
                .lost()
                .map_err(status)?
                .into_iter()
                .map(|(r, n)| LossCounter {
                    reason: r.into(),
                    count: n,
                })
                .collect(),
            events_received: c.events_received.load(Relaxed),
            events_stored: c.events_stored.load(Relaxed),
            active_run,
            store_bytes: tokio::task::block_in_place(|| self.engine.store.size_on_disk()),
            bpf_stats_enabled: probes.stats_enabled(),
            bpf_stats_mode: self.engine.stats_mode.name(),
            bpf_stats_seconds: probes.stats_seconds(),
            store_reopens: self.engine.store.releases(),
            socket_slots: probes.sock_slots(),
            pid: std::process::id(),
            energy_interval_ns: self.sampler.intervals().0.as_nanos() as u64,
            energy_capture_interval_ns: self.sampler.intervals().1.as_nanos() as u64,
        };
        Ok(Response::new(info))
    }

    async fn start_capture(
        &self,
        req: Request<StartCaptureRequest>,
    ) -> Result<Response<Run>, Status> {
        let r = req.into_inner();
        let engine = self.engine.clone();
        let lease = match r.lease_ms {
            0 => crate::capture::DEFAULT_LEASE,
            ms => std::time::Duration::from_millis(u64::from(ms)),
        };
        let run = tokio::task::spawn_blocking(move || {
            engine.start_capture(
                Some(r.run_id),
                r.label,
                r.client_pids,
                r.server_ports,
                lease,
            )
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)?;
        Ok(Response::new(run))
    }

    async fn stop_capture(
        &self,
        req: Request<StopCaptureRequest>,
    ) -> Result<Response<Run>, Status> {
        let id = req.into_inner().run_id;
        let engine = self.engine.clone();
        let run = tokio::task::spawn_blocking(move || engine.stop_capture(&id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        Ok(Response::new(run))
    }

    async fn renew_capture(
        &self,
        req: Request<RenewCaptureRequest>,
    ) -> Result<Response<Run>, Status> {
        let id = req.into_inner().run_id;
        let run = self.engine.renew(&id).map_err(status)?;
        Ok(Response::new(run))
    }

    async fn list_runs(
        &self,
        _: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let runs = blocking(|| self.engine.store.list_runs())?;
        Ok(Response::new(ListRunsResponse { runs }))
    }

    async fn get_run(&self, req: Request<GetRunRequest>) -> Result<Response<Run>, Status> {
        let id = req.into_inner().run_id;
        match blocking(|| self.engine.store.get_run(&id))? {
            Some(r) => Ok(Response::new(r)),
            None => Err(Status::not_found(format!("no run {id}"))),
        }
    }

    async fn delete_run(
        &self,
        req: Request<DeleteRunRequest>,
    ) -> Result<Response<DeleteRunResponse>, Status> {
        let id = req.into_inner().run_id;
        if self.engine.active_run().as_deref() == Some(id.as_str()) {
            return Err(Status::failed_precondition(format!(
                "run {id} is still capturing; stop it first"
            )));
        }
        match blocking(|| self.engine.store.delete_run(&id))? {
            Some(n) => Ok(Response::new(DeleteRunResponse {
                deleted: true,
                records: n,
            })),
            None => Err(Status::not_found(format!("no run {id}"))),
        }
    }

    type QueryExchangesStream = Streamed<Exchange>;
    async fn query_exchanges(
        &self,
        req: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryExchangesStream>, Status> {
        Ok(Response::new(self.query(req.into_inner())?))
    }

    type QueryConnectionsStream = Streamed<Connection>;
    async fn query_connections(
        &self,
        req: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryConnectionsStream>, Status> {
        Ok(Response::new(self.query(req.into_inner())?))
    }

    type QueryDnsStream = Streamed<DnsLookup>;
    async fn query_dns(
        &self,
        req: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryDnsStream>, Status> {
        Ok(Response::new(self.query(req.into_inner())?))
    }

    async fn upload_requests(
        &self,
        req: Request<tonic::Streaming<ClientRecord>>,
    ) -> Result<Response<UploadResponse>, Status> {
        let mut stream = req.into_inner();
        let mut stored = 0u64;
        let mut batch = Vec::with_capacity(512);
        let mut run_id: Option<String> = None;
        while let Some(rec) = stream.next().await {
            let rec = rec?;
            // The run is checked once per run id, not once per record.
            if run_id.as_deref() != Some(rec.run_id.as_str()) {
                run_id = Some(rec.run_id.clone());
                if blocking(|| self.engine.store.get_run(&rec.run_id))?.is_none() {
                    return Err(Status::not_found(format!("no run {}", rec.run_id)));
                }
            }
            batch.push(Record::new(rec));
            if batch.len() == 512 {
                blocking(|| self.engine.store.append(&batch))?;
                stored += batch.len() as u64;
                batch.clear();
            }
        }
        blocking(|| self.engine.store.append(&batch))?;
        stored += batch.len() as u64;
        let store = &self.engine.store;
        blocking(|| {
            if let Some(mut run) = run_id.and_then(|id| store.get_run(&id).ok().flatten()) {
                run.client_records = store.count::<tb_proto::v1::ClientRecord>(&run.run_id)?;
                store.put_run(&run)?;
            }
            store.flush()
        })?;
        Ok(Response::new(UploadResponse { stored }))
    }

    type QueryEnergyStream = Streamed<EnergySample>;
    async fn query_energy(
        &self,
        req: Request<EnergyQuery>,
    ) -> Result<Response<Self::QueryEnergyStream>, Status> {
        let q = req.into_inner();
        if !self.sampler.any_present() {
            return Err(Status::failed_precondition(no_sensor(&self.sampler)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let sampler = self.sampler.clone();
        tokio::task::spawn_blocking(move || {
            let r = sampler.for_each(q.from_ns, q.to_ns, |m| tx.blocking_send(Ok(m)).is_ok());
            if let Err(e) = r {
                let _ = tx.blocking_send(Err(status(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchEnergyStream = Streamed<EnergySample>;
    async fn watch_energy(
        &self,
        _: Request<WatchEnergyRequest>,
    ) -> Result<Response<Self::WatchEnergyStream>, Status> {
        if !self.sampler.any_present() {
            return Err(Status::failed_precondition(no_sensor(&self.sampler)));
        }
        let stream = tokio_stream::wrappers::BroadcastStream::new(self.sampler.subscribe())
            // A slow watcher skips samples rather than holding the sampler.
            .filter_map(|r| r.ok().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    type TailExchangesStream = Streamed<Exchange>;
    async fn tail_exchanges(
        &self,
        req: Request<TailRequest>,
    ) -> Result<Response<Self::TailExchangesStream>, Status> {
        let run_id = req.into_inner().run_id;
        let rx = self.engine.tail.subscribe();
        let stream =
            tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |r| match r {
                Ok(e) if run_id.is_empty() || e.run_id == run_id => Some(Ok(e)),
                Ok(_) => None,
                // A slow reader skips what it missed rather than stalling the capture.
                Err(_) => None,
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The one line a caller gets when the host has no energy sensor: each source and why.
fn no_sensor(sampler: &Sampler) -> String {
    format!(
        "no energy sensor on this host: {}",
        sampler
            .info()
            .iter()
            .map(|s| format!("{}: {}", s.name, s.reason))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
