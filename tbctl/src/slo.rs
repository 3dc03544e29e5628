//! Service-level objectives for goodput: `--slo ttft=200ms,tpot=50ms,e2e=5s`.

use serde::{Deserialize, Serialize};

use crate::{record::RequestRecord, workload::duration::parse_duration};

/// Thresholds in ms; a request meets the SLO when it succeeded and meets every one given.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
}

impl std::str::FromStr for Slo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut slo = Slo::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("bad --slo '{part}': use e.g. ttft=200ms,tpot=50ms,e2e=5s")
            })?;
            let ms = parse_duration(v)?.as_secs_f64() * 1e3;
            match k.trim() {
                "ttft" => slo.ttft_ms = Some(ms),
                "tpot" => slo.tpot_ms = Some(ms),
                "e2e" => slo.e2e_ms = Some(ms),
                other => {
                    return Err(format!(
                        "bad --slo key '{other}': known keys are ttft, tpot, e2e"
                    ))
                }
            }
        }
        Ok(slo)
    }
}

impl Slo {
    /// Whether any threshold is set.
    pub fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some() || self.e2e_ms.is_some()
    }

    /// Whether `r` succeeded and meets every threshold (a metric a request lacks fails it).
    pub fn met_by(&self, r: &RequestRecord) -> bool {
        let ok =
            |limit: Option<f64>, v: Option<f64>| limit.is_none_or(|l| v.is_some_and(|v| v <= l));
        r.success
            && ok(self.ttft_ms, r.ttft_ms)
            && ok(self.tpot_ms, r.tpot_ms)
            && ok(self.e2e_ms, r.e2e_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_applies_every_threshold() {
        let slo: Slo = "ttft=200ms,tpot=50ms,e2e=5s".parse().unwrap();
        assert_eq!(slo.ttft_ms, Some(200.0));
        assert_eq!(slo.e2e_ms, Some(5000.0));
        let mut r = RequestRecord {
            success: true,
            ttft_ms: Some(150.0),
            tpot_ms: Some(40.0),
            e2e_ms: Some(4000.0),
            ..Default::default()
        };
        assert!(slo.met_by(&r));
        r.tpot_ms = Some(60.0);
        assert!(!slo.met_by(&r));
        r.tpot_ms = None;
        assert!(!slo.met_by(&r), "missing TPOT cannot meet a TPOT objective");
        assert!("ttft=2x".parse::<Slo>().is_err());
        assert!("speed=1s".parse::<Slo>().is_err());
    }
}
