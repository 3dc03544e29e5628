//! The network view of the run's kernel data: what `tbctl trace` prints.

use super::Outcome;
use crate::{kernel::trace, rundir::RunData};

pub const NAME: &str = "network";
pub const ABOUT: &str =
    "connections, reuse, DNS, TTFB/TTLB, reads and the server's writes from kernel.jsonl";

pub fn run(run: &RunData) -> Result<Outcome, String> {
    let lines = run.kernel.as_ref().ok_or(
        "no kernel.jsonl: the run was profiled without tbd; profile again with tbd running",
    )?;
    let r = trace::analyze(lines, &run.records);
    let mut out: Vec<String> = r
        .figures
        .iter()
        .map(|f| {
            format!(
                "{} ({}): p50 {:.3}, p99 {:.3}, {} samples",
                f.name, f.unit, f.dist.p50, f.dist.p99, f.dist.count
            )
        })
        .collect();
    out.extend(r.insights.iter().map(|i| i.text.clone()));
    Ok(Outcome {
        analysis: NAME,
        lines: out,
        data: serde_json::to_value(&r).map_err(|e| e.to_string())?,
        plots: Vec::new(),
    })
}
