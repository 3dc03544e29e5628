//! `tbctl profile --from RUN`: the arguments a run was profiled with, read back from its
//! run.json, so the same workload can be sent again (to the same server or, with --url, another).

use std::path::Path;

use anyhow::{bail, Context};

use super::profile::ProfileArgs;
use crate::rundir::RunData;

/// The `tbctl profile` arguments saved in a run directory.
pub fn load(dir: &Path) -> anyhow::Result<ProfileArgs> {
    if !dir.is_dir() {
        bail!(
            "--from {}: not a run directory; pass one that `tbctl profile` wrote",
            dir.display()
        );
    }
    let run = RunData::open(dir)?;
    if run.config.config.is_null() {
        bail!(
            "--from {}: its run.json holds no profile arguments (a run not made by tbctl profile)",
            dir.display()
        );
    }
    serde_json::from_value(run.config.config.clone()).with_context(|| {
        format!(
            "--from {}: its profile arguments are from another version of tbctl",
            dir.display()
        )
    })
}

/// The saved arguments, with what belongs to this invocation taken from `now`: where to send
/// (--url, when given), where to write, how to print, the label, the daemon and the API key.
pub fn merge(saved: ProfileArgs, now: ProfileArgs) -> ProfileArgs {
    ProfileArgs {
        url: now.url.or(saved.url),
        out: now.out,
        json: now.json,
        no_daemon: now.no_daemon,
        daemon: now.daemon,
        label: if now.label.is_empty() {
            saved.label
        } else {
            now.label
        },
        api_key: now.api_key,
        repeat: now.repeat,
        from: now.from,
        ..saved
    }
}
