//! Whether two runs sent the same thing: a comparison of runs that differ in seed, dataset,
//! trace, output length, load or API measures the difference in workload, not in the server.

use crate::{rundir::RunData, summary::Summary};

/// run.json `config` keys that decide what was sent, with what each means.
const SENT: &[(&str, &str)] = &[
    ("seed", "seed"),
    ("span_size", "dataset prompt sizes"),
    ("trace", "trace"),
    ("trace_window", "trace window"),
    ("time_scale", "trace time scale"),
    ("rate_scale", "trace rate scale"),
    ("max_tokens", "max tokens"),
    ("ignore_eos", "ignore_eos"),
    ("no_stream", "streaming"),
    ("concurrency", "concurrency"),
    ("rate", "rate"),
    ("pattern", "arrival pattern"),
    ("burstiness", "burstiness"),
    ("ramp", "ramp"),
    ("requests", "request count"),
    ("warmup", "warm-up"),
];

/// One warning per difference in what the two runs sent.
pub fn check(base: &RunData, bs: &Summary, current: &RunData, cs: &Summary) -> Vec<String> {
    let (b, c) = (&base.config, &current.config);
    let mut out = Vec::new();
    let mut differ = |what: &str, x: String, y: String| {
        if x != y {
            out.push(format!(
                "not comparable: {what} differs ({} {x}, {} {y})",
                b.run_id, c.run_id
            ));
        }
    };
    for (key, what) in SENT {
        let v = |cfg: &serde_json::Value| cfg.get(*key).cloned().unwrap_or_default().to_string();
        differ(what, v(&b.config), v(&c.config));
    }
    differ("API flavour", b.api.clone(), c.api.clone());
    let sources = |s: &Summary| {
        s.token_sources
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join("+")
    };
    differ("token source", sources(bs), sources(cs));
    if b.config.is_null() || c.config.is_null() {
        out.push("run.json of a run has no profile configuration: what was sent is unknown".into());
    }
    out
}
