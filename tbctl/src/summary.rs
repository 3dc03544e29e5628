//! summary.json: every metric of DESIGN.md with its distribution and its formula.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    catalogue::{self, Scope},
    energy::figures::EnergySummary,
    kernel::join::KernelSummary,
    record::{RequestRecord, TokenSource},
    rundir::{RunConfig, RunData},
    slo::Slo,
    stats::Distribution,
};

/// One metric: what it means and how it is distributed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub formula: String,
    pub unit: String,
    #[serde(flatten)]
    pub dist: Distribution,
}

/// Request counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Warm-up requests sent but excluded from every figure.
    pub warmup_excluded: u64,
}

/// A rate and how it was computed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rate {
    pub value: f64,
    pub formula: String,
}

/// The run's summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub run_id: String,
    pub target: String,
    pub model: String,
    pub api: String,
    pub requests: Counts,
    pub errors_by_class: BTreeMap<String, u64>,
    pub token_sources: BTreeMap<String, u64>,
    pub duration_s: f64,
    pub request_throughput: Rate,
    pub output_token_throughput: Rate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    pub metrics: BTreeMap<String, Metric>,
    /// Kernel-side figures, when tbd captured the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelSummary>,
    /// Energy figures, when tbd had a sensor covering the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<EnergySummary>,
    /// Why a section is missing (e.g. no daemon), so readers never mistake absence for zero.
    pub notes: Vec<String>,
}

/// Run identity for the summary.
pub struct RunInfo<'a> {
    pub run_id: &'a str,
    pub target: &'a str,
    pub model: &'a str,
    pub api: &'a str,
}

impl<'a> RunInfo<'a> {
    /// The identity run.json gives a run.
    pub fn of(c: &'a RunConfig) -> Self {
        RunInfo {
            run_id: &c.run_id,
            target: &c.target,
            model: &c.model,
            api: &c.api,
        }
    }
}

/// The summary of a run directory: the client figures from its records, the kernel split
/// from its kernel.jsonl, the notes from its run.json.
pub fn of_run(run: &RunData) -> Summary {
    of_run_with_slo(run, run.config.slo.as_ref())
}

/// [`of_run`] against other SLOs than the run's own (goodput depends on them).
pub fn of_run_with_slo(run: &RunData, slo: Option<&Slo>) -> Summary {
    let c = &run.config;
    let mut s = summarize(RunInfo::of(c), &run.records, slo);
    if let Some(lines) = &run.kernel {
        let measured: Vec<&RequestRecord> = run.measured().collect();
        let facts = c.capture.clone().unwrap_or_default();
        s.kernel = Some(KernelSummary::of(lines, &measured, &facts));
    }
    if let (Some(meta), Some(samples)) = (&c.energy, &run.energy) {
        s.energy = crate::energy::figures::summarize(meta, samples, &run.records);
    }
    s.notes = c.notes.clone();
    s
}

/// A rate of the catalogue.
fn rate(name: &str, value: f64) -> Rate {
    Rate {
        value,
        formula: catalogue::def(Scope::Rate, name).formula.into(),
    }
}

/// Every sample of each client metric of the catalogue, from measured records: dispatch lag
/// from every request sent, the rest from successful requests. Plots and the summary both
/// read their figures from here.
pub fn samples(measured: &[&RequestRecord]) -> BTreeMap<&'static str, Vec<f64>> {
    let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut push = |k: &'static str, v: Option<f64>| {
        if let Some(v) = v {
            samples.entry(k).or_default().push(v);
        }
    };
    for r in measured {
        push("dispatch_lag_ms", r.dispatch_lag_ms);
        if !r.success {
            continue;
        }
        push("ttft_ms", r.ttft_ms);
        push("e2e_ms", r.e2e_ms);
        push(
            "scheduled_latency_ms",
            r.t_last_token_ns
                .map(|l| l.saturating_sub(r.t_intended_ns) as f64 / 1e6),
        );
        push("tpot_ms", r.tpot_ms);
        push("output_tokens", r.output_tokens.map(|n| n as f64));
        push("input_tokens", r.input_tokens.map(|n| n as f64));
        for g in r.token_gaps_ns() {
            push("itl_ms", Some(g / 1e6));
        }
        for g in r.chunk_gaps_ns() {
            push("icl_ms", Some(g as f64 / 1e6));
        }
        let ttft_sock = r.socket_ttft_ms();
        push("ttft_sock_ms", ttft_sock);
        push(
            "ttft_sock_late_ms",
            ttft_sock.zip(r.ttft_ms).map(|(a, t)| t - a),
        );
        for g in r.socket_token_gaps_ns() {
            push("itl_sock_ms", Some(g / 1e6));
        }
    }
    samples
}

/// Builds the summary from the run's records (warm-up records are counted, not measured).
pub fn summarize(info: RunInfo<'_>, records: &[RequestRecord], slo: Option<&Slo>) -> Summary {
    let measured: Vec<&RequestRecord> = records.iter().filter(|r| !r.warmup).collect();
    let ok: Vec<&RequestRecord> = measured.iter().copied().filter(|r| r.success).collect();
    let mut samples = samples(&measured);
    let metrics = catalogue::of(Scope::Client)
        .filter_map(|d| {
            let dist = Distribution::of(samples.get_mut(d.name)?)?;
            Some((
                d.name.to_string(),
                Metric {
                    formula: d.formula.to_string(),
                    unit: d.unit.to_string(),
                    dist,
                },
            ))
        })
        .collect();
    let first_send = measured.iter().filter_map(|r| r.t_sent_ns).min();
    let last_end = measured.iter().filter_map(|r| r.t_end_ns).max();
    let duration_s = match (first_send, last_end) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let per_s = |n: f64| {
        if duration_s > 0.0 {
            n / duration_s
        } else {
            0.0
        }
    };
    let out_tokens: u64 = ok.iter().filter_map(|r| r.output_tokens).sum();
    let mut errors_by_class = BTreeMap::new();
    for r in &measured {
        if let Some(c) = r.error_class {
            *errors_by_class.entry(c.as_str().to_string()).or_insert(0) += 1;
        }
    }
    let mut token_sources = BTreeMap::new();
    for r in &ok {
        let k = match r.token_source {
            Some(TokenSource::Usage) => "usage",
            Some(TokenSource::Tokenizer) => "tokenizer",
            Some(TokenSource::Chunks) => "chunks",
            None => "none",
        };
        *token_sources.entry(k.to_string()).or_insert(0) += 1;
    }
    let slo = slo.filter(|s| s.is_set());
    let goodput = slo.map(|s| {
        rate(
            "goodput",
            per_s(measured.iter().filter(|r| s.met_by(r)).count() as f64),
        )
    });
    Summary {
        run_id: info.run_id.into(),
        target: info.target.into(),
        model: info.model.into(),
        api: info.api.into(),
        requests: Counts {
            total: measured.len() as u64,
            succeeded: ok.len() as u64,
            failed: (measured.len() - ok.len()) as u64,
            warmup_excluded: (records.len() - measured.len()) as u64,
        },
        errors_by_class,
        token_sources,
        duration_s,
        request_throughput: rate("request_throughput", per_s(ok.len() as f64)),
        output_token_throughput: rate("output_token_throughput", per_s(out_tokens as f64)),
        goodput,
        slo: slo.cloned(),
        metrics,
        kernel: None,
        energy: None,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ErrorClass;

    fn ok(id: u64, sent: u64, ttft: u64, gaps: &[u64]) -> RequestRecord {
        let mut t = sent + ttft;
        let mut chunks = vec![[t, 1]];
        for g in gaps {
            t += g;
            chunks.push([t, 1]);
        }
        let mut r = RequestRecord {
            request_id: id,
            t_intended_ns: sent,
            t_sent_ns: Some(sent),
            t_first_token_ns: Some(sent + ttft),
            t_last_token_ns: Some(t),
            t_end_ns: Some(t),
            output_tokens: Some(chunks.len() as u64),
            token_source: Some(TokenSource::Usage),
            chunks,
            success: true,
            ..Default::default()
        };
        r.derive(|m| m);
        r
    }

    #[test]
    fn summary_counts_rates_and_excludes_warmup() {
        let mut warm = ok(0, 0, 50_000_000, &[1_000_000]);
        warm.warmup = true;
        let a = ok(1, 1_000_000_000, 10_000_000, &[5_000_000, 5_000_000]);
        let b = ok(2, 1_500_000_000, 30_000_000, &[5_000_000]);
        let mut failed = RequestRecord {
            request_id: 3,
            t_intended_ns: 1_600_000_000,
            t_sent_ns: Some(1_600_000_000),
            t_end_ns: Some(2_000_000_000),
            error_class: Some(ErrorClass::Http),
            ..Default::default()
        };
        failed.derive(|m| m);
        let info = RunInfo {
            run_id: "r",
            target: "t",
            model: "m",
            api: "openai-chat",
        };
        let slo: Slo = "ttft=20ms".parse().unwrap();
        let s = summarize(info, &[warm, a, b, failed], Some(&slo));
        assert_eq!(
            s.requests,
            Counts {
                total: 3,
                succeeded: 2,
                failed: 1,
                warmup_excluded: 1
            }
        );
        assert_eq!(s.errors_by_class.get("http"), Some(&1));
        let ttft = &s.metrics["ttft_ms"].dist;
        assert_eq!((ttft.count, ttft.min, ttft.max), (2, 10.0, 30.0));
        assert_eq!(s.metrics["itl_ms"].dist.count, 3);
        assert!((s.duration_s - 1.0).abs() < 1e-9);
        assert!((s.output_token_throughput.value - 5.0).abs() < 1e-9);
        assert!((s.goodput.as_ref().unwrap().value - 1.0).abs() < 1e-9);
        assert!(s.metrics["ttft_ms"].formula.contains("send time"));
    }

    #[test]
    fn socket_arrival_figures_use_only_chunks_that_ended_their_read() {
        // Sent at 1 s; chunks read at +10, +15 and +25 ms (the last carries 2 tokens), which
        // reached the socket at +8, +14 and +20 ms.
        let mut a = ok(1, 1_000_000_000, 10_000_000, &[5_000_000, 10_000_000]);
        a.chunks[2][1] = 2;
        a.chunk_arrivals_ns = vec![1_008_000_000, 1_014_000_000, 1_020_000_000];
        // One arrival short: no socket figures from this record, its client figures kept.
        let mut b = ok(2, 2_000_000_000, 10_000_000, &[5_000_000]);
        b.chunk_arrivals_ns = vec![2_009_000_000];
        // The first two chunks came in one read (+10 ms), stamped with its last segment
        // (+9 ms): the first chunk's arrival is not its own, so no TTFT; the third chunk
        // (+16 ms, arrived +15) is 6 ms after the second, the only gap.
        let mut c = ok(3, 3_000_000_000, 10_000_000, &[0, 6_000_000]);
        c.chunk_arrivals_ns = vec![3_009_000_000, 3_009_000_000, 3_015_000_000];
        assert!(!c.socket_exact(0) && c.socket_exact(1) && c.socket_exact(2));
        assert_eq!(c.socket_ttft_ms(), None);
        let info = RunInfo {
            run_id: "r",
            target: "t",
            model: "m",
            api: "openai-chat",
        };
        let s = summarize(info, &[a, b, c], None);
        let dist = |k: &str| s.metrics[k].dist.clone();
        assert_eq!(dist("ttft_ms").count, 3);
        let ttft = dist("ttft_sock_ms");
        assert_eq!(ttft.count, 1);
        assert!((ttft.max - 8.0).abs() < 1e-9, "{ttft:?}");
        let late = dist("ttft_sock_late_ms");
        assert!((late.max - 2.0).abs() < 1e-9 && late.count == 1, "{late:?}");
        // Gaps at arrival: a's 6 ms and 6 ms split over 2 tokens; c's 6 ms.
        let mut itl = dist("itl_sock_ms");
        assert_eq!(itl.count, 4);
        itl.mean = (itl.mean * 1e6).round() / 1e6;
        assert_eq!((itl.min, itl.max, itl.mean), (3.0, 6.0, 4.5));
    }
}
