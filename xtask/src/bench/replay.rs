//! The replay bench: tbd's user-space CPU per request with nothing else on the machine moving.
//!
//! Records a saturated capture of the fast SSE server (tbctl at 256 streams for 3 s, both
//! sides, `tbd --record-events`), then runs tbd's `replay` cargo bench on the log: the same
//! reader, tracker and store code, fed from memory, timed alone. Whole-machine A/B runs on this
//! VM drift by more than tbd's own few µs per request; a replay resolves a tenth of that.
//! `TBD_REPLAY_LOG=PATH` replays an existing log instead of recording one, so that two builds
//! can be compared on the same events.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{fast_sse::FastSse, fast_sse::URL, load_args, profile, tbd_bench};
use crate::procs;

/// Records a log under `dir`; returns its path.
fn record(dir: &Path) -> anyhow::Result<PathBuf> {
    let _sse = FastSse::start(dir)?;
    let tdir = dir.join("tbd-replay");
    std::fs::create_dir_all(&tdir)?;
    let log = tdir.join("events.log");
    let log_arg = log.to_string_lossy().into_owned();
    let (mut tbd, sock) = procs::start_tbd_with(
        "release",
        &tdir,
        &["--bpf-stats", "off", "--record-events", &log_arg],
    )?;
    let daemon = format!("unix:{}", sock.display());
    profile(dir, &load_args(URL, "256", "3s", Some(&daemon)))?;
    tbd.stop();
    Ok(log)
}

/// Runs the bench; see the module docs.
pub fn replay(dir: &Path) -> anyhow::Result<Value> {
    let log: PathBuf = match std::env::var_os("TBD_REPLAY_LOG") {
        Some(p) => p.into(),
        None => record(dir)?,
    };
    let mut v = tbd_bench("replay", &[("TBD_REPLAY_LOG", log.as_os_str())])?;
    v["log"] = log.to_string_lossy().into();
    v["setup"] = "tbctl 256 streams x 3 s against fast-sse, both sides captured, replayed".into();
    Ok(v)
}
