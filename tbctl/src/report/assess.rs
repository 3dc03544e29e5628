//! Pass / warn / fail against the run's SLOs and its error rate, each check naming the
//! threshold that decided it.

use serde::Serialize;

use crate::{record::RequestRecord, slo::Slo, summary::Summary};

/// A check passes when at least this share of requests meets its objective.
pub const PASS_SHARE: f64 = 0.99;
/// A check warns (rather than fails) when at least this share meets it.
pub const WARN_SHARE: f64 = 0.90;
/// The error rate that still warns rather than fails.
pub const WARN_ERROR_RATE: f64 = 0.01;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

impl Level {
    /// The word printed in reports.
    pub fn word(self) -> &'static str {
        match self {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// e.g. "ttft <= 500 ms", "error rate".
    pub name: String,
    pub level: Level,
    /// The share of requests meeting the objective, or the error rate.
    pub value: f64,
    /// The sentence, with the thresholds.
    pub text: String,
}

impl Level {
    /// Pass from `pass` up, warn from `warn` up, fail below: for shares where more is better.
    pub fn of_share(share: f64, pass: f64, warn: f64) -> Level {
        if share >= pass {
            Level::Pass
        } else if share >= warn {
            Level::Warn
        } else {
            Level::Fail
        }
    }
}

/// Reads one figure of a record.
type Figure = fn(&RequestRecord) -> Option<f64>;

/// Checks every objective of `slo` and the error rate over the measured requests.
pub fn assess(summary: &Summary, measured: &[&RequestRecord], slo: Option<&Slo>) -> Vec<Check> {
    let mut checks = Vec::new();
    let total = measured.len();
    if total == 0 {
        return checks;
    }
    let objectives: [(&str, Option<f64>, Figure); 3] = [
        ("ttft", slo.and_then(|s| s.ttft_ms), |r| r.ttft_ms),
        ("tpot", slo.and_then(|s| s.tpot_ms), |r| r.tpot_ms),
        ("e2e", slo.and_then(|s| s.e2e_ms), |r| r.e2e_ms),
    ];
    for (name, limit, value) in objectives {
        let Some(limit) = limit else { continue };
        // A failed request, or one without the figure, misses the objective.
        let met = measured
            .iter()
            .filter(|r| r.success && value(r).is_some_and(|v| v <= limit))
            .count();
        let share = met as f64 / total as f64;
        let p99 = summary
            .metrics
            .get(&format!("{name}_ms"))
            .map(|m| format!("; p99 {:.1} ms", m.dist.p99))
            .unwrap_or_default();
        checks.push(Check {
            name: format!("{name} <= {limit} ms"),
            level: Level::of_share(share, PASS_SHARE, WARN_SHARE),
            value: share,
            text: format!(
                "{met} of {total} requests ({:.1}%) met {name} <= {limit} ms{p99}",
                share * 100.0
            ),
        });
    }
    let failed = summary.requests.failed;
    let rate = failed as f64 / total as f64;
    checks.push(Check {
        name: "error rate".into(),
        level: if failed == 0 {
            Level::Pass
        } else if rate <= WARN_ERROR_RATE {
            Level::Warn
        } else {
            Level::Fail
        },
        value: rate,
        text: format!("{failed} of {total} requests failed ({:.2}%)", rate * 100.0),
    });
    checks
}

/// The worst level of `checks`; Pass when there are none.
pub fn overall(checks: &[Check]) -> Level {
    checks.iter().map(|c| c.level).max().unwrap_or(Level::Pass)
}

/// How the levels are decided, for the report.
pub fn rule() -> String {
    format!(
        "an objective passes when at least {:.0}% of requests meet it and warns from {:.0}%; \
         failed requests miss every objective; the error rate passes at 0 and warns up to {:.0}%",
        PASS_SHARE * 100.0,
        WARN_SHARE * 100.0,
        WARN_ERROR_RATE * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{summarize, RunInfo};

    fn rec(id: u64, ttft: f64, ok: bool) -> RequestRecord {
        RequestRecord {
            request_id: id,
            ttft_ms: Some(ttft),
            success: ok,
            ..Default::default()
        }
    }

    #[test]
    fn shares_decide_pass_warn_and_fail() {
        // 95 of 100 meet 100 ms: warn; one failed request: error rate 1% warns.
        let mut recs: Vec<RequestRecord> = (0..94).map(|i| rec(i, 50.0, true)).collect();
        recs.extend((94..99).map(|i| rec(i, 150.0, true)));
        recs.push(rec(99, 50.0, false));
        let refs: Vec<&RequestRecord> = recs.iter().collect();
        let info = RunInfo {
            run_id: "r",
            target: "t",
            model: "m",
            api: "a",
        };
        let summary = summarize(info, &recs, None);
        let slo: Slo = "ttft=100ms".parse().unwrap();
        let checks = assess(&summary, &refs, Some(&slo));
        assert_eq!(checks.len(), 2);
        assert_eq!((checks[0].level, checks[0].value), (Level::Warn, 0.94));
        assert!(
            checks[0].text.starts_with("94 of 100 requests (94.0%)"),
            "{}",
            checks[0].text
        );
        assert_eq!((checks[1].level, checks[1].value), (Level::Warn, 0.01));
        assert_eq!(overall(&checks), Level::Warn);
        let strict: Slo = "ttft=40ms".parse().unwrap();
        assert_eq!(assess(&summary, &refs, Some(&strict))[0].level, Level::Fail);
        let loose: Slo = "ttft=1s".parse().unwrap();
        assert_eq!(assess(&summary, &refs, Some(&loose))[0].level, Level::Pass);
    }
}
