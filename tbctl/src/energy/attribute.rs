//! Energy per request: each interval between counter updates is split across the requests
//! active in it by the tokens each emitted in it.
//!
//! A request's first token is the product of its prefill, so that token is spread evenly over
//! the prefill (send to first token): a request waiting for its first token takes a share of
//! every interval it overlaps, in proportion to the overlap. Later tokens count where their
//! chunk arrived (decode). A request that failed before any token counts as one token spread
//! over its whole life. Energy of an interval no request was active in is idle: left
//! unattributed, so the requests' energy plus the unattributed energy is the window's energy.

use crate::record::RequestRecord;

/// One request's share of the window's energy, J.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestEnergy {
    pub request_id: u64,
    pub prefill_j: f64,
    pub decode_j: f64,
}

impl RequestEnergy {
    pub fn total_j(&self) -> f64 {
        self.prefill_j + self.decode_j
    }
}

/// The split of a window's energy.
#[derive(Clone, Debug, Default)]
pub struct Attribution {
    /// One per record given, in the same order.
    pub requests: Vec<RequestEnergy>,
    /// Energy of intervals with no active request.
    pub unattributed_j: f64,
}

/// A request's weight in an interval: (prefill, decode) tokens.
fn weights(r: &RequestRecord, a: u64, b: u64) -> (f64, f64) {
    let Some(sent) = r.t_sent_ns else {
        return (0.0, 0.0);
    };
    let spread = |from: u64, to: u64| -> f64 {
        if to <= from {
            // A zero-length span: its one token falls where it is.
            return if from > a && from <= b { 1.0 } else { 0.0 };
        }
        let overlap = to.min(b).saturating_sub(from.max(a));
        overlap as f64 / (to - from) as f64
    };
    match r.t_first_token_ns {
        Some(first) => {
            let prefill = spread(sent, first);
            let mut decode = 0.0;
            if r.chunks.is_empty() {
                // Not streamed: every token but the first arrives with the response.
                let at = r.t_last_token_ns.or(r.t_end_ns).unwrap_or(first);
                let n = r.output_tokens.unwrap_or(1).saturating_sub(1) as f64;
                if at > a && at <= b {
                    decode += n;
                }
            } else {
                for (i, c) in r.chunks.iter().enumerate() {
                    let tokens = if i == 0 { c[1].saturating_sub(1) } else { c[1] };
                    // A token arriving at t was made before t: it counts in (a, b].
                    if c[0] > a && c[0] <= b {
                        decode += tokens as f64;
                    }
                }
            }
            (prefill, decode)
        }
        None => (spread(sent, r.t_end_ns.unwrap_or(sent)), 0.0),
    }
}

/// Splits `intervals` ((start, end, J), in time order, not overlapping) across `records`.
pub fn attribute(records: &[&RequestRecord], intervals: &[(u64, u64, f64)]) -> Attribution {
    let mut total_w = vec![0.0; intervals.len()];
    // The intervals a request can touch: from its send to its end.
    let span = |r: &RequestRecord| -> Option<std::ops::Range<usize>> {
        let sent = r.t_sent_ns?;
        let end = r
            .t_end_ns
            .into_iter()
            .chain(r.t_last_token_ns)
            .chain(r.chunks.last().map(|c| c[0]))
            .max()
            .unwrap_or(sent);
        let lo = intervals.partition_point(|iv| iv.1 <= sent);
        let hi = intervals.partition_point(|iv| iv.0 <= end);
        Some(lo..hi.max(lo))
    };
    for r in records {
        for k in span(r).unwrap_or(0..0) {
            let (p, d) = weights(r, intervals[k].0, intervals[k].1);
            total_w[k] += p + d;
        }
    }
    let requests = records
        .iter()
        .map(|r| {
            let mut e = RequestEnergy {
                request_id: r.request_id,
                ..Default::default()
            };
            for k in span(r).unwrap_or(0..0) {
                if total_w[k] <= 0.0 {
                    continue;
                }
                let (p, d) = weights(r, intervals[k].0, intervals[k].1);
                let j = intervals[k].2 / total_w[k];
                e.prefill_j += p * j;
                e.decode_j += d * j;
            }
            e
        })
        .collect();
    let unattributed_j = intervals
        .iter()
        .zip(&total_w)
        .filter(|(_, w)| **w <= 0.0)
        .map(|(iv, _)| iv.2)
        .sum();
    Attribution {
        requests,
        unattributed_j,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn req(id: u64, sent: u64, chunks: &[[u64; 2]]) -> RequestRecord {
        RequestRecord {
            request_id: id,
            t_sent_ns: Some(sent),
            t_first_token_ns: chunks.first().map(|c| c[0]),
            t_last_token_ns: chunks.last().map(|c| c[0]),
            t_end_ns: chunks.last().map(|c| c[0]),
            chunks: chunks.to_vec(),
            output_tokens: Some(chunks.iter().map(|c| c[1]).sum()),
            success: true,
            ..Default::default()
        }
    }

    #[test]
    fn overlapping_requests_split_each_interval_by_tokens_emitted() {
        // Intervals of 10 ms at 10 J each (1 kW), 0-40 ms.
        let iv: Vec<(u64, u64, f64)> = (0..4)
            .map(|k| (k * 10 * MS, (k + 1) * 10 * MS, 10.0))
            .collect();
        // A: sent at 0, first token at 10 ms (prefill fills interval 0), then 1 token at 15,
        // 25 and 35 ms. B: sent at 10 ms, first token at 20 ms, then 3 tokens at 25 ms.
        let a = req(
            1,
            0,
            &[[10 * MS, 1], [15 * MS, 1], [25 * MS, 1], [35 * MS, 1]],
        );
        let b = req(2, 10 * MS, &[[20 * MS, 1], [25 * MS, 3]]);
        let out = attribute(&[&a, &b], &iv);
        // Interval 0: A prefill alone, 10 J. Interval 1 (10-20): A decode 1 (its first chunk
        // at 10 ms has no decode token; the one at 15 ms), B prefill 1: 5 J each. Interval 2
        // (20-30): A 1 token, B 3 tokens: 2.5 J and 7.5 J. Interval 3: A alone, 10 J.
        let (ea, eb) = (&out.requests[0], &out.requests[1]);
        assert!((ea.prefill_j - 10.0).abs() < 1e-9, "{ea:?}");
        assert!((ea.decode_j - 17.5).abs() < 1e-9, "{ea:?}");
        assert!((eb.prefill_j - 5.0).abs() < 1e-9, "{eb:?}");
        assert!((eb.decode_j - 7.5).abs() < 1e-9, "{eb:?}");
        assert_eq!(out.unattributed_j, 0.0);
    }

    #[test]
    fn idle_intervals_stay_unattributed_and_energy_is_conserved() {
        let iv = vec![
            (0, 10 * MS, 4.0),
            (10 * MS, 20 * MS, 6.0),
            (20 * MS, 30 * MS, 5.0),
            (30 * MS, 40 * MS, 3.0),
        ];
        // One request inside 10-20 ms only: prefill 10-12 ms, tokens at 12 and 18 ms.
        let r = req(7, 10 * MS, &[[12 * MS, 1], [18 * MS, 1]]);
        let out = attribute(&[&r], &iv);
        assert!((out.requests[0].total_j() - 6.0).abs() < 1e-9);
        // Prefill: 1 token's weight, decode: 1 token: half each.
        assert!((out.requests[0].prefill_j - 3.0).abs() < 1e-9);
        assert_eq!(out.unattributed_j, 12.0);
        let total: f64 = iv.iter().map(|i| i.2).sum();
        assert!((out.requests[0].total_j() + out.unattributed_j - total).abs() < 1e-9);
    }

    #[test]
    fn a_failed_request_before_any_token_takes_its_share_over_its_life() {
        let iv = vec![(0, 10 * MS, 10.0)];
        let mut f = req(3, 0, &[]);
        f.t_end_ns = Some(5 * MS);
        f.success = false;
        let ok = req(4, 0, &[[10 * MS - 1, 1]]);
        let out = attribute(&[&f, &ok], &iv);
        // The failure: one token over 0-5 ms, all inside; the other: its prefill, all inside.
        assert!((out.requests[0].total_j() - 5.0).abs() < 1e-9, "{out:?}");
        assert!((out.requests[1].total_j() - 5.0).abs() < 1e-9);
    }
}
