//! The run's power over time beside its token throughput, in fixed bins: what `tbctl energy
//! RUN` writes to energy_series.csv and what the power plot draws.

use super::{series::Series, EnergyMeta, Sample};
use crate::record::RequestRecord;

/// energy_series.csv.
pub const SERIES_CSV: &str = "energy_series.csv";

/// One bin of the series.
#[derive(Clone, Debug, PartialEq)]
pub struct Bin {
    /// Seconds from the window's start to the bin's start.
    pub t_s: f64,
    /// Average power per domain over the bin, W (None where the updates do not cover it).
    pub power_w: Vec<Option<f64>>,
    /// Average host-total power, W.
    pub total_w: Option<f64>,
    /// Output tokens that arrived in the bin, per second.
    pub output_tokens_per_s: f64,
}

/// Power per domain and tokens/s in bins of `bin_ns` over the run's window.
pub fn bins(
    meta: &EnergyMeta,
    samples: &[Sample],
    records: &[RequestRecord],
    bin_ns: u64,
) -> Vec<Bin> {
    let (from, to) = (meta.window_from_ns, meta.window_to_ns);
    if to <= from || bin_ns == 0 {
        return Vec::new();
    }
    let series: Vec<Series> = meta
        .domains
        .iter()
        .map(|d| Series::of(samples, &d.name))
        .collect();
    let n = (to - from).div_ceil(bin_ns) as usize;
    let mut tokens = vec![0u64; n];
    for r in records.iter().filter(|r| !r.warmup) {
        for c in &r.chunks {
            if c[0] >= from && c[0] < to {
                tokens[((c[0] - from) / bin_ns) as usize] += c[1];
            }
        }
    }
    (0..n)
        .map(|i| {
            let a = from + i as u64 * bin_ns;
            let b = (a + bin_ns).min(to);
            let secs = (b - a) as f64 / 1e9;
            let power_w: Vec<Option<f64>> = series
                .iter()
                .map(|s| s.between(a, b).map(|e| e / secs))
                .collect();
            let total: Vec<f64> = meta
                .domains
                .iter()
                .zip(&power_w)
                .filter(|(d, _)| d.in_total)
                .filter_map(|(_, p)| *p)
                .collect();
            Bin {
                t_s: (a - from) as f64 / 1e9,
                total_w: (!total.is_empty()).then(|| total.iter().sum()),
                power_w,
                output_tokens_per_s: tokens[i] as f64 / secs,
            }
        })
        .collect()
}

/// The bins as CSV: t_s, one power column per domain, total_w, output_tokens_per_s.
pub fn csv(meta: &EnergyMeta, bins: &[Bin]) -> String {
    let mut out = String::from("t_s");
    for d in &meta.domains {
        out.push_str(&format!(",{}_w", d.name));
    }
    out.push_str(",total_w,output_tokens_per_s\n");
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for b in bins {
        out.push_str(&format!("{:.3}", b.t_s));
        for p in &b.power_w {
            out.push(',');
            out.push_str(&cell(*p));
        }
        out.push_str(&format!(
            ",{},{:.3}\n",
            cell(b.total_w),
            b.output_tokens_per_s
        ));
    }
    out
}
