//! A capture's lease, renewed in the background while its client lives: when the client dies
//! (kill -9), renewals stop and tbd ends the capture on its own.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tb_proto::v1::{tbd_client::TbdClient, RenewCaptureRequest};
use tonic::transport::Channel;

/// The lease tbctl asks for: tbd ends a capture this long after its client's last renewal.
pub const LEASE: Duration = Duration::from_secs(10);

/// When renewals began to fail, and why: tbd went away under the run.
#[derive(Clone, Debug)]
pub struct Lapse {
    pub after: Duration,
    pub error: String,
}

/// Renews a capture's lease every third of [`LEASE`] until dropped.
pub struct LeaseKeeper {
    task: tokio::task::JoinHandle<()>,
    lapse: Arc<Mutex<Option<Lapse>>>,
}

impl LeaseKeeper {
    /// Starts renewing `run_id`'s lease.
    pub fn start(mut client: TbdClient<Channel>, run_id: String) -> Self {
        let lapse = Arc::new(Mutex::new(None));
        let seen = lapse.clone();
        let t0 = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                let r = client
                    .renew_capture(RenewCaptureRequest {
                        run_id: run_id.clone(),
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!("tbd did not renew the capture's lease: {e}");
                    let mut l = seen.lock().expect("lapse lock");
                    l.get_or_insert(Lapse {
                        after: t0.elapsed(),
                        error: e.message().to_string(),
                    });
                }
            }
        });
        Self { task, lapse }
    }

    /// The first failed renewal, if any.
    pub fn lapse(&self) -> Option<Lapse> {
        self.lapse.lock().expect("lapse lock").clone()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
