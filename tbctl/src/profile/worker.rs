//! A connection worker: takes jobs, keeps one keep-alive connection, writes one record per job.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::{
    api::flavour::{build_body, RequestSpec},
    client::{ClientError, Conn, RequestTemplate},
    clock::mono_ns,
    profile::{
        dispatch::{JobSource, Pool},
        writer::RecordSink,
    },
    record::RequestRecord,
};

/// How every request of a run is sent.
pub struct RequestSettings {
    pub addr: SocketAddr,
    pub template: RequestTemplate,
    pub model: String,
    /// Overrides the work item's own output length.
    pub max_tokens: Option<u32>,
    pub ignore_eos: bool,
    pub timeout: Duration,
    /// Stamp each read with its data's socket arrival (`--socket-arrivals`).
    pub socket_arrivals: bool,
}

/// What every worker shares.
pub struct Shared {
    pub req: RequestSettings,
    pub jobs: Arc<JobSource>,
    pub sink: RecordSink,
    pub pool: Arc<Pool>,
    /// Set to true to abandon requests in flight (Ctrl-C after the grace period).
    pub cancel: watch::Receiver<bool>,
    /// Set on Ctrl-C: take no new job.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Dropped when the worker ends; the runner waits for every clone to go.
    pub alive: mpsc::Sender<()>,
}

/// Runs a worker until the job channel closes or it is cancelled. `conn` may be pre-connected.
pub async fn run(shared: Arc<Shared>, mut conn: Option<Conn>) {
    let mut cancel = shared.cancel.clone();
    loop {
        shared.pool.idle.fetch_add(1, Ordering::Relaxed);
        let job = shared.jobs.next().await;
        shared.pool.idle.fetch_sub(1, Ordering::Relaxed);
        let Some(job) = job else { break };
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let max_tokens = shared.req.max_tokens.or(job.item.max_tokens);
        let mut rec = RequestRecord {
            request_id: job.request_id,
            // A chunk per token is the usual stream: room for them all up front, instead of
            // growing the list five times on the way to 16.
            chunks: Vec::with_capacity(max_tokens.unwrap_or(16).min(4096) as usize),
            t_intended_ns: job.intended_ns.unwrap_or_else(mono_ns),
            input_tokens: Some(job.item.input_tokens as u64),
            service_type: shared.req.template.flavour.service_type().into(),
            model: shared.req.model.clone(),
            warmup: job.warmup,
            ..Default::default()
        };
        // Bytes: a retry on a fresh connection sends the same body without copying it.
        let body = Bytes::from(build_body(
            shared.req.template.flavour,
            &RequestSpec {
                model: &shared.req.model,
                prompt: &job.item.prompt,
                max_tokens,
                stream: shared.req.template.stream,
                ignore_eos: shared.req.ignore_eos,
            },
        ));
        let result = tokio::select! {
            r = execute(&shared, &mut conn, body, &mut rec) => r,
            _ = cancel.wait_for(|c| *c) => {
                conn = None;
                rec.t_end_ns = Some(mono_ns());
                Err(ClientError::StreamCut("cancelled by Ctrl-C before the response finished".into()))
            }
        };
        match result {
            Ok(()) => rec.success = true,
            Err(e) => {
                rec.success = false;
                rec.error_class = Some(e.class());
                rec.error = Some(e.to_string());
                rec.t_end_ns.get_or_insert_with(mono_ns);
            }
        }
        shared.sink.send(rec);
        if *cancel.borrow() {
            break;
        }
    }
    shared.pool.workers.fetch_sub(1, Ordering::Relaxed);
}

async fn execute(
    shared: &Shared,
    conn: &mut Option<Conn>,
    body: Bytes,
    rec: &mut RequestRecord,
) -> Result<(), ClientError> {
    // A second attempt only when the kept-alive connection had died unsent (Stale).
    for attempt in 0..2 {
        if !conn.as_ref().is_some_and(Conn::is_usable) {
            *conn = Some(Conn::connect(shared.req.addr, shared.req.socket_arrivals).await?);
        }
        let c = conn.as_mut().expect("connected above");
        let r = c
            .execute(&shared.req.template, body.clone(), rec, shared.req.timeout)
            .await;
        if !c.is_usable() {
            *conn = None;
        }
        match r {
            Err(ClientError::Stale) if attempt == 0 => rec.retries += 1,
            r => return r,
        }
    }
    Err(ClientError::Stale)
}
