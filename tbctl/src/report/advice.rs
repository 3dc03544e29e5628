//! Recommendations drawn from a run's figures: each names the figure and the threshold that
//! produced it, so a reader can check it.

use crate::{
    analysis::regression,
    kernel::trace::{Insight, Level, TraceReport},
    record::RequestRecord,
    summary::Summary,
};

/// Dispatch lag p99 above this means the load generator fell behind its schedule.
pub const DISPATCH_LAG_P99_MS: f64 = 1.0;
/// The client's share of TTFT above which it is worth a warning.
pub const CLIENT_SHARE_WARN: f64 = 0.05;
/// A fit explains a trend when its R² reaches this.
pub const TREND_R2: f64 = 0.3;
/// Fewest requests to fit a trend to.
pub const TREND_MIN_POINTS: usize = 10;

fn advice(topic: &'static str, level: Level, text: String) -> Insight {
    Insight { topic, level, text }
}

fn p50(summary: &Summary, name: &str) -> Option<f64> {
    summary.metrics.get(name).map(|m| m.dist.p50)
}

fn kernel_p50(summary: &Summary, name: &str) -> Option<f64> {
    summary
        .kernel
        .as_ref()?
        .metrics
        .get(name)
        .map(|m| m.dist.p50)
}

/// Every recommendation for the run, most pressing first.
pub fn recommend(
    summary: &Summary,
    measured: &[&RequestRecord],
    network: Option<&TraceReport>,
) -> Vec<Insight> {
    let mut out = Vec::new();
    out.extend(errors(summary, measured));
    out.extend(dispatch(summary));
    out.extend(client_share(summary));
    out.extend(server_share(summary));
    out.extend(input_length(measured));
    out.extend(drift(summary, measured));
    out.extend(tokens(summary));
    out.extend(goodput(summary));
    if let Some(n) = network {
        out.extend(n.insights.iter().cloned());
    }
    out.sort_by_key(|i| i.level != Level::Warn);
    out
}

fn errors(summary: &Summary, measured: &[&RequestRecord]) -> Option<Insight> {
    let r = &summary.requests;
    if r.failed == 0 {
        return None;
    }
    let (class, n) = summary.errors_by_class.iter().max_by_key(|(_, n)| **n)?;
    let example = measured
        .iter()
        .find(|r| r.error_class.is_some_and(|c| c.as_str() == class))
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    Some(advice(
        "errors",
        Level::Warn,
        format!(
            "{} of {} requests failed; most ({n}) as {class}: {example}",
            r.failed, r.total
        ),
    ))
}

fn dispatch(summary: &Summary) -> Option<Insight> {
    let lag = summary.metrics.get("dispatch_lag_ms")?.dist.p99;
    (lag > DISPATCH_LAG_P99_MS).then(|| {
        advice(
            "dispatch_lag",
            Level::Warn,
            format!(
                "requests left p99 {lag:.2} ms after their intended time (over \
                 {DISPATCH_LAG_P99_MS} ms): the load generator or its host fell behind the \
                 schedule, or the concurrency cap held requests back; scheduled_latency_ms \
                 counts that wait, e2e_ms does not"
            ),
        )
    })
}

fn client_share(summary: &Summary) -> Option<Insight> {
    let ttft = p50(summary, "ttft_ms")?;
    let send = kernel_p50(summary, "client_send_lag_ms")?;
    let read = kernel_p50(summary, "client_read_lag_ms")?;
    let added = send + read;
    let share = if ttft > 0.0 { added / ttft } else { 0.0 };
    let level = if share > CLIENT_SHARE_WARN {
        Level::Warn
    } else {
        Level::Info
    };
    Some(advice(
        "client_time",
        level,
        format!(
            "the kernel says the client added {added:.3} ms to TTFT at the median (before its \
             write {send:.3} ms, after the kernel delivered the token {read:.3} ms): {:.1}% of \
             the TTFT p50 of {ttft:.2} ms{}",
            share * 100.0,
            if level == Level::Warn {
                "; the load generator's host is busy: fewer streams per client host or a \
                 second client host would measure the server more truly"
            } else {
                ""
            }
        ),
    ))
}

fn server_share(summary: &Summary) -> Option<Insight> {
    let ttft = p50(summary, "ttft_ms")?;
    let server = kernel_p50(summary, "server_ttft_ms")?;
    Some(advice(
        "server_time",
        Level::Info,
        format!(
            "the server itself took {server:.2} ms from reading the request to writing the \
             first token (median), of a client TTFT p50 of {ttft:.2} ms; the rest is the \
             client and the network"
        ),
    ))
}

fn input_length(measured: &[&RequestRecord]) -> Option<Insight> {
    let pts: Vec<(f64, f64)> = measured
        .iter()
        .filter(|r| r.success)
        .filter_map(|r| Some((r.input_tokens? as f64, r.ttft_ms?)))
        .collect();
    if pts.len() < TREND_MIN_POINTS {
        return None;
    }
    let f = regression::fit(&pts)?;
    let text = if f.r2 >= TREND_R2 && f.slope > 0.0 {
        format!(
            "TTFT grows with input length: {:.2} ms per 1,000 input tokens (least squares, \
             R² {:.2}, {} requests): prefill sets TTFT here, so shorter prompts or prefix \
             caching would cut it",
            f.slope * 1000.0,
            f.r2,
            f.n
        )
    } else {
        format!(
            "TTFT does not follow input length (R² {:.2} over {} requests, under {TREND_R2}): \
             queueing or scheduling, not prefill, sets TTFT at this load",
            f.r2, f.n
        )
    };
    Some(advice("input_length", Level::Info, text))
}

fn drift(summary: &Summary, measured: &[&RequestRecord]) -> Option<Insight> {
    let t0 = measured.iter().filter_map(|r| r.t_sent_ns).min()?;
    let pts: Vec<(f64, f64)> = measured
        .iter()
        .filter(|r| r.success)
        .filter_map(|r| Some(((r.t_sent_ns? - t0) as f64 / 1e9, r.ttft_ms?)))
        .collect();
    if pts.len() < TREND_MIN_POINTS {
        return None;
    }
    let f = regression::fit(&pts)?;
    let growth = f.slope * summary.duration_s;
    let ttft = p50(summary, "ttft_ms")?;
    (f.r2 >= TREND_R2 && f.slope > 0.0 && growth > 0.5 * ttft).then(|| {
        advice(
            "saturation",
            Level::Warn,
            format!(
                "TTFT grew by {growth:.1} ms over the run ({:.2} ms/s, R² {:.2}), more than half \
                 its median: requests are queueing, so this load is past what the server \
                 sustains; `tbctl sweep` finds the knee",
                f.slope, f.r2
            ),
        )
    })
}

fn tokens(summary: &Summary) -> Option<Insight> {
    let other: u64 = summary
        .token_sources
        .iter()
        .filter(|(k, _)| k.as_str() != "usage")
        .map(|(_, n)| *n)
        .sum();
    (other > 0).then(|| {
        advice(
            "token_source",
            Level::Warn,
            format!(
                "{other} successful requests counted output tokens locally ({:?}): the server \
                 sent no usage, so TPOT and token throughput are estimates; enable usage in \
                 streams (stream_options.include_usage) on the server",
                summary.token_sources
            ),
        )
    })
}

fn goodput(summary: &Summary) -> Option<Insight> {
    let g = summary.goodput.as_ref()?.value;
    let t = summary.request_throughput.value;
    let share = if t > 0.0 { g / t } else { 0.0 };
    Some(advice(
        "goodput",
        if share < 0.9 {
            Level::Warn
        } else {
            Level::Info
        },
        format!(
            "goodput {g:.2} req/s is {:.0}% of the successful request throughput {t:.2} req/s: \
             the rest missed an SLO",
            share * 100.0
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        record::TokenSource,
        summary::{summarize, RunInfo},
    };

    fn info() -> RunInfo<'static> {
        RunInfo {
            run_id: "r",
            target: "t",
            model: "m",
            api: "a",
        }
    }

    fn rec(id: u64, sent_s: f64, input: u64, ttft: f64) -> RequestRecord {
        let sent = (sent_s * 1e9) as u64;
        let first = sent + (ttft * 1e6) as u64;
        let mut r = RequestRecord {
            request_id: id,
            t_intended_ns: sent,
            t_sent_ns: Some(sent),
            t_first_token_ns: Some(first),
            t_last_token_ns: Some(first + 1_000_000),
            t_end_ns: Some(first + 1_000_000),
            chunks: vec![[first, 1], [first + 1_000_000, 1]],
            input_tokens: Some(input),
            output_tokens: Some(2),
            token_source: Some(TokenSource::Usage),
            success: true,
            ..Default::default()
        };
        r.derive(|m| m);
        r
    }

    #[test]
    fn ttft_growing_with_input_length_is_named_with_its_slope() {
        // TTFT = 10 ms + 0.05 ms per input token, exactly.
        let recs: Vec<RequestRecord> = (0..20)
            .map(|i| {
                rec(
                    i,
                    i as f64,
                    100 + 50 * i,
                    10.0 + 0.05 * (100 + 50 * i) as f64,
                )
            })
            .collect();
        let refs: Vec<&RequestRecord> = recs.iter().collect();
        let s = summarize(info(), &recs, None);
        let a = recommend(&s, &refs, None);
        let input = a.iter().find(|i| i.topic == "input_length").unwrap();
        assert!(
            input.text.contains("50.00 ms per 1,000 input tokens"),
            "{}",
            input.text
        );
        assert!(input.text.contains("R² 1.00"), "{}", input.text);
    }

    #[test]
    fn ttft_rising_through_the_run_warns_of_saturation_and_flat_input_does_not_fit() {
        // Same input length; TTFT rises 10 ms per second of run.
        let recs: Vec<RequestRecord> = (0..20)
            .map(|i| rec(i, i as f64, 100, 20.0 + 10.0 * i as f64))
            .collect();
        let refs: Vec<&RequestRecord> = recs.iter().collect();
        let s = summarize(info(), &recs, None);
        let a = recommend(&s, &refs, None);
        let sat = a.iter().find(|i| i.topic == "saturation").unwrap();
        assert_eq!(sat.level, Level::Warn);
        assert!(sat.text.contains("10.00 ms/s"), "{}", sat.text);
        assert!(a.iter().all(|i| i.topic != "input_length"));
        assert!(a.iter().all(|i| i.topic != "dispatch_lag"));
    }
}
