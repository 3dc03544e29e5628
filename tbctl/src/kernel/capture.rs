//! A tbd capture around a load run: start with this process and the server's port as
//! filters, stop, then fetch what the kernel saw.

use std::path::Path;

use tb_proto::v1::{
    tbd_client::TbdClient, ClientRecord, QueryRequest, StartCaptureRequest, StopCaptureRequest,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::{
    daemon::{self, DaemonError},
    kernel::{
        join::KernelData,
        lease::{Lapse, LeaseKeeper, LEASE},
    },
    record::RequestRecord,
};

/// A capture in progress, its lease renewed until it is finished or dropped.
pub struct Capture {
    client: TbdClient<Channel>,
    pub run_id: String,
    lease: LeaseKeeper,
}

impl Capture {
    /// Starts capturing this process's traffic, and the server side of `server_port` when the
    /// server runs on this host.
    pub async fn start(
        socket: &Path,
        run_id: &str,
        label: &str,
        server_port: Option<u16>,
    ) -> Result<Self, DaemonError> {
        let mut client = daemon::connect(socket).await?;
        let run = client
            .start_capture(StartCaptureRequest {
                client_pids: vec![std::process::id()],
                server_ports: server_port.map(u32::from).into_iter().collect(),
                label: label.into(),
                sensors: vec![],
                run_id: run_id.into(),
                lease_ms: LEASE.as_millis() as u32,
            })
            .await?
            .into_inner();
        Ok(Self {
            lease: LeaseKeeper::start(client.clone(), run.run_id.clone()),
            client,
            run_id: run.run_id,
        })
    }

    /// When tbd stopped renewing the lease during the run, if it did (tbd died or restarted).
    pub fn lapse(&self) -> Option<Lapse> {
        self.lease.lapse()
    }

    /// Stops the capture, uploads the client's records, and fetches the kernel's view.
    pub async fn finish(mut self, records: &[RequestRecord]) -> Result<KernelData, DaemonError> {
        let run = self
            .client
            .stop_capture(StopCaptureRequest {
                run_id: self.run_id.clone(),
            })
            .await?
            .into_inner();
        let uploads: Vec<ClientRecord> = records
            .iter()
            .map(|r| ClientRecord {
                run_id: self.run_id.clone(),
                json: serde_json::to_string(r).unwrap_or_default(),
                t_sent_ns: r.t_sent_ns.unwrap_or(r.t_intended_ns),
            })
            .collect();
        self.client
            .upload_requests(tokio_stream::iter(uploads))
            .await?;
        let mut data = fetch(&mut self.client, &self.run_id).await?;
        data.run = run;
        Ok(data)
    }
}

/// Everything the daemon stored for a run.
pub async fn fetch(
    client: &mut TbdClient<Channel>,
    run_id: &str,
) -> Result<KernelData, DaemonError> {
    let q = || QueryRequest {
        run_id: run_id.into(),
        from_ns: 0,
        to_ns: 0,
    };
    let run = client
        .get_run(tb_proto::v1::GetRunRequest {
            run_id: run_id.into(),
        })
        .await?
        .into_inner();
    let mut s = client.query_exchanges(q()).await?.into_inner();
    let mut exchanges = Vec::new();
    while let Some(e) = s.next().await {
        exchanges.push(e?);
    }
    let mut s = client.query_connections(q()).await?.into_inner();
    let mut connections = Vec::new();
    while let Some(c) = s.next().await {
        connections.push(c?);
    }
    let mut s = client.query_dns(q()).await?.into_inner();
    let mut dns = Vec::new();
    while let Some(d) = s.next().await {
        dns.push(d?);
    }
    Ok(KernelData {
        run,
        exchanges,
        connections,
        dns,
    })
}
