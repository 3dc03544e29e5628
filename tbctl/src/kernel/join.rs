//! Joining tbd's kernel exchanges to the client's records: kernel.jsonl lines, and the split
//! of TTFT into client, network and server time.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tb_proto::v1::{Connection, DnsLookup, Exchange, Run};

use crate::{
    catalogue::{self, Scope},
    record::RequestRecord,
    stats::Distribution,
};

/// Everything tbd recorded for a run.
#[derive(Clone, Debug, Default)]
pub struct KernelData {
    pub run: Run,
    pub exchanges: Vec<Exchange>,
    pub connections: Vec<Connection>,
    pub dns: Vec<DnsLookup>,
}

/// The connection an exchange travelled on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnInfo {
    pub id: u64,
    pub src: String,
    pub dst: String,
    pub new: bool,
    /// connect() to established, client side.
    pub connect_ns: Option<u64>,
    pub retransmits: u32,
    /// Who ended the TCP connection first: "client", "server" (its FIN) or "reset"; absent
    /// when the kernel did not see it end during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
}

/// The DNS lookup before a new connection.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DnsInfo {
    pub name: String,
    pub t_start_ns: u64,
    pub t_end_ns: u64,
    /// No wire query (UDP port 53) happened during the lookup.
    pub cached: bool,
}

/// One line of kernel.jsonl (DESIGN.md "Kernel exchange record"), with the joined differences
/// on client-side lines.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelLine {
    pub request_id: Option<u64>,
    pub side: String,
    pub pid: u32,
    pub comm: String,
    pub conn: ConnInfo,
    pub dns: Option<DnsInfo>,
    pub t_request_first_ns: Option<u64>,
    pub t_request_last_ns: Option<u64>,
    pub t_response_first_ns: Option<u64>,
    pub t_response_last_ns: Option<u64>,
    pub chunks: Vec<[u64; 2]>,
    /// When the bytes this side read reached its socket, per TCP segment: [t_ns, bytes]
    /// (tcp_probe). Whole when they add up to the bytes read ([`KernelLine::whole_arrivals`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arrivals: Vec<[u64; 2]>,
    pub http_status: Option<u32>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Kernel's first request write - client's t_sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_send_lag_ms: Option<f64>,
    /// Client's first-token stamp - the kernel read that carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_read_lag_ms: Option<f64>,
    /// Client-side first response read - server-side first response write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_ms: Option<f64>,
    /// Server-side write that carried the first token - server-side last request read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_ttft_ms: Option<f64>,
    /// Arrival of the last byte of the client read that carried the first token - client
    /// t_sent: TTFT as the socket saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_arrival_ms: Option<f64>,
    /// Per content chunk of the client's record, in its order: the arrival of the last byte of
    /// the read that carried it. Empty unless tbd saw the whole response arrive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_arrivals_ns: Vec<u64>,
}

impl KernelLine {
    /// Bytes this side read in the exchange: the response on the client side, the request
    /// on the server side.
    pub fn read_bytes(&self) -> u64 {
        if self.side == "client" {
            self.response_bytes
        } else {
            self.request_bytes
        }
    }

    /// The arrivals, when they cover every byte this side read; None otherwise: bytes that
    /// came before the capture, or whose arrival was lost, leave the offsets of the rest
    /// unknown.
    pub fn whole_arrivals(&self) -> Option<&[[u64; 2]]> {
        let total: u64 = self.arrivals.iter().map(|a| a[1]).sum();
        (total == self.read_bytes() && total > 0).then_some(&self.arrivals[..])
    }

    /// For each read in `chunks`, when its first and its last byte reached the socket, in
    /// one pass over reads and arrivals; None unless the arrivals are whole.
    pub fn read_arrivals(&self) -> Option<Vec<[u64; 2]>> {
        let arrivals = self.whole_arrivals()?;
        let (mut seg, mut seg_end) = (0, arrivals[0][1]);
        // The arrival of byte `offset`: segments before it are passed once, for all reads.
        let mut at = |offset: u64| {
            while offset >= seg_end && seg + 1 < arrivals.len() {
                seg += 1;
                seg_end += arrivals[seg][1];
            }
            arrivals[seg][0]
        };
        let mut start = 0;
        Some(
            self.chunks
                .iter()
                .map(|[_, bytes]| {
                    let first = at(start);
                    start += bytes;
                    [first, at(start.saturating_sub(1))]
                })
                .collect(),
        )
    }
}

fn nz(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn ms(a: u64, b: u64) -> f64 {
    (a as f64 - b as f64) / 1e6
}

fn endpoint(e: &Option<tb_proto::v1::Endpoint>) -> String {
    e.as_ref()
        .map(|e| format!("{}:{}", e.addr, e.port))
        .unwrap_or_default()
}

/// Index of the client read that carried the first token, and the response bytes read
/// through it: the last read at or before the client's first-token stamp (the client stamps
/// after the read returns).
pub fn first_token_read(chunks: &[[u64; 2]], stamp: u64) -> Option<(usize, u64)> {
    let mut through = 0;
    let mut found = None;
    for (i, [t, bytes]) in chunks.iter().enumerate() {
        if *t > stamp {
            break;
        }
        through += bytes;
        found = Some((i, through));
    }
    found
}

/// Index of the server write that carried response byte `offset` (0-based); of any list of
/// [t, bytes] in byte order (reads, arrivals), the entry holding that byte.
pub fn write_carrying(chunks: &[[u64; 2]], offset: u64) -> Option<usize> {
    let mut end = 0;
    chunks.iter().position(|[_, bytes]| {
        end += bytes;
        offset < end
    })
}

/// What the capture saw beyond the joined lines, kept in run.json so the kernel summary is a
/// function of the run directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CaptureFacts {
    /// Exchanges of tracked processes that no request of this run claims.
    pub unmatched_exchanges: u64,
    /// Connections the kernel saw.
    pub connections: u64,
    /// DNS lookups the kernel saw.
    pub dns_lookups: u64,
    /// Events lost in the kernel, by reason.
    pub lost_events: BTreeMap<String, u64>,
    /// Earlier attempts of retried requests: exchanges carrying a request id that a later or
    /// answered exchange of the same side also carries (a kept-alive connection the server had
    /// closed, then the retry on a new one).
    #[serde(default)]
    pub superseded_attempts: u64,
    /// How long the capture's exchanges took from their last event to being queryable in tbd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_latency: Option<ExportLatencyFacts>,
}

/// tbd's export latency of a capture (see the API's `ExportLatency`), µs.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportLatencyFacts {
    pub exchanges: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The joined result.
pub struct Joined {
    /// kernel.jsonl: the measured requests' exchanges, both sides, annotated.
    pub lines: Vec<KernelLine>,
    /// Counts for run.json.
    pub facts: CaptureFacts,
}

/// Kernel figures for summary.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelSummary {
    pub requests: u64,
    pub seen_client_side: u64,
    pub seen_server_side: u64,
    /// Requests the kernel did not see, per side: counted, never hidden.
    pub unseen_client_side: u64,
    pub unseen_server_side: u64,
    /// Exchanges of tracked processes that no request of this run claims.
    pub unmatched_exchanges: u64,
    /// Earlier attempts of retried requests (see [`CaptureFacts`]).
    #[serde(default)]
    pub superseded_attempts: u64,
    pub connections: u64,
    pub dns_lookups: u64,
    pub lost_events: BTreeMap<String, u64>,
    pub metrics: BTreeMap<String, KernelMetric>,
}

/// A kernel-derived metric with its formula.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelMetric {
    pub formula: String,
    #[serde(flatten)]
    pub dist: Distribution,
}

/// Joins kernel exchanges to client records by request id (the x-tb-rid header).
pub fn join(records: &[RequestRecord], data: &KernelData) -> Joined {
    let conns: HashMap<(&str, u64), &Connection> = data
        .connections
        .iter()
        .map(|c| ((c.side.as_str(), c.conn_id), c))
        .collect();
    let rids: HashSet<u64> = records.iter().map(|r| r.request_id).collect();
    let mut by_rid: HashMap<(u64, &str), &Exchange> = HashMap::new();
    let (mut unmatched, mut superseded) = (0, 0);
    for e in &data.exchanges {
        match e.request_id.parse::<u64>() {
            Ok(id) if rids.contains(&id) => {
                // A retried request sends its id twice on one side: the attempt that was
                // answered is the request's, the later one if both (or neither) were.
                let slot = by_rid.entry((id, e.side.as_str())).or_insert(e);
                if !std::ptr::eq(*slot, e) {
                    superseded += 1;
                    let answered = |x: &Exchange| x.t_response_first_ns > 0;
                    let later = e.t_request_first_ns >= slot.t_request_first_ns;
                    if (answered(e), later) > (answered(slot), !later) {
                        *slot = e;
                    }
                }
            }
            _ => unmatched += 1,
        }
    }
    let mut lines = Vec::new();
    for r in records {
        for side in ["client", "server"] {
            if let Some(ex) = by_rid.get(&(r.request_id, side)) {
                let conn = conns.get(&(side, ex.conn_id)).copied();
                let mut line = line_for(ex, conn, &data.dns);
                line.request_id = Some(r.request_id);
                lines.push(line);
            }
        }
    }
    annotate(&mut lines, records);
    Joined {
        lines,
        facts: CaptureFacts {
            unmatched_exchanges: unmatched,
            superseded_attempts: superseded,
            export_latency: data.run.export_latency.map(|e| ExportLatencyFacts {
                exchanges: e.exchanges,
                p50_us: e.p50_us,
                p95_us: e.p95_us,
                p99_us: e.p99_us,
                max_us: e.max_us,
            }),
            connections: data.connections.len() as u64,
            dns_lookups: data.dns.len() as u64,
            lost_events: data
                .run
                .lost
                .iter()
                .map(|l| (l.reason.clone(), l.count))
                .collect(),
        },
    }
}

/// Sets the joined differences of each line from its client record and the other side's
/// line: the one place they are computed.
pub fn annotate(lines: &mut [KernelLine], records: &[RequestRecord]) {
    let recs: HashMap<u64, &RequestRecord> = records.iter().map(|r| (r.request_id, r)).collect();
    // Per request: the client's first response read, and the bytes read through the read
    // that carried the first token.
    let mut client_side: HashMap<u64, (Option<u64>, Option<u64>)> = HashMap::new();
    let mut server_first_write: HashMap<u64, u64> = HashMap::new();
    for l in lines.iter() {
        let Some(id) = l.request_id else { continue };
        if l.side == "client" {
            let through = recs
                .get(&id)
                .and_then(|r| r.t_first_token_ns)
                .and_then(|t| first_token_read(&l.chunks, t))
                .map(|(_, b)| b);
            client_side.insert(id, (l.t_response_first_ns, through));
        } else if let Some(w) = l.t_response_first_ns {
            server_first_write.insert(id, w);
        }
    }
    for l in lines.iter_mut() {
        let Some(id) = l.request_id else { continue };
        let rec = recs.get(&id).copied();
        if l.side == "client" {
            l.client_send_lag_ms = rec
                .and_then(|r| r.t_sent_ns)
                .zip(l.t_request_first_ns)
                .map(|(sent, k)| ms(k, sent));
            l.client_read_lag_ms = rec
                .and_then(|r| r.t_first_token_ns)
                .and_then(|t| Some((t, first_token_read(&l.chunks, t)?)))
                .map(|(t, (i, _))| ms(t, l.chunks[i][0]));
            l.network_ms = l
                .t_response_first_ns
                .zip(server_first_write.get(&id))
                .map(|(c, s)| ms(c, *s));
            l.content_arrivals_ns = rec
                .zip(l.read_arrivals())
                .and_then(|(r, reads)| {
                    r.chunks
                        .iter()
                        .map(|&[t, _]| Some(reads[first_token_read(&l.chunks, t)?.0][1]))
                        .collect::<Option<Vec<u64>>>()
                })
                .unwrap_or_default();
            l.ttft_arrival_ms = rec
                .and_then(|r| r.t_sent_ns)
                .zip(l.content_arrivals_ns.first())
                .map(|(sent, a)| ms(*a, sent));
        } else {
            let through = client_side.get(&id).and_then(|c| c.1);
            l.server_ttft_ms = through
                .and_then(|b| write_carrying(&l.chunks, b.saturating_sub(1)))
                .zip(l.t_request_last_ns)
                .map(|(i, req)| ms(l.chunks[i][0], req));
        }
    }
}

/// ITL as the socket saw it: the record's token gaps (one formula, the record's) with each
/// content chunk at its arrival (see [`KernelLine::content_arrivals_ns`]).
pub fn arrival_token_gaps_ns(line: &KernelLine, rec: &RequestRecord) -> Vec<f64> {
    if line.content_arrivals_ns.len() != rec.chunks.len() {
        return Vec::new();
    }
    RequestRecord {
        chunks: line
            .content_arrivals_ns
            .iter()
            .zip(&rec.chunks)
            .map(|(a, c)| [*a, c[1]])
            .collect(),
        ..Default::default()
    }
    .token_gaps_ns()
    .collect()
}

/// Every sample of each kernel metric of the catalogue, from a run's kernel.jsonl lines and
/// its measured records, with the requests seen on each side. The summary and compare both
/// read their kernel figures from here.
pub struct KernelSamples {
    pub samples: BTreeMap<&'static str, Vec<f64>>,
    /// Request ids seen on the client side and on the server side.
    pub seen: [HashSet<u64>; 2],
}

impl KernelSamples {
    /// The samples of `lines` that belong to `records`.
    pub fn of(lines: &[KernelLine], records: &[&RequestRecord]) -> Self {
        let recs: HashMap<u64, &RequestRecord> =
            records.iter().map(|r| (r.request_id, *r)).collect();
        let mut seen: [HashSet<u64>; 2] = Default::default();
        let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        let mut push = |k: &'static str, v: Option<f64>| {
            if let Some(v) = v {
                samples.entry(k).or_default().push(v);
            }
        };
        for l in lines {
            let Some((id, rec)) = l.request_id.and_then(|id| Some((id, *recs.get(&id)?))) else {
                continue;
            };
            if l.side == "client" {
                seen[0].insert(id);
                push("client_send_lag_ms", l.client_send_lag_ms);
                push("client_read_lag_ms", l.client_read_lag_ms);
                push("network_ms", l.network_ms);
                push("ttft_arrival_ms", l.ttft_arrival_ms);
                push(
                    "ttft_late_ms",
                    l.ttft_arrival_ms.zip(rec.ttft_ms).map(|(a, t)| t - a),
                );
                for g in arrival_token_gaps_ns(l, rec) {
                    push("itl_arrival_ms", Some(g / 1e6));
                }
                push(
                    "kernel_ttfb_ms",
                    l.t_response_first_ns
                        .zip(l.t_request_first_ns)
                        .map(|(a, b)| ms(a, b)),
                );
            } else {
                seen[1].insert(id);
                push("server_ttft_ms", l.server_ttft_ms);
                for w in l.chunks.windows(2) {
                    push("server_chunk_gap_ms", Some(ms(w[1][0], w[0][0])));
                }
            }
        }
        Self { samples, seen }
    }
}

impl KernelSummary {
    /// The kernel section of summary.json, from a run's kernel.jsonl lines, its measured
    /// records and the capture's counts.
    pub fn of(lines: &[KernelLine], records: &[&RequestRecord], facts: &CaptureFacts) -> Self {
        let KernelSamples { mut samples, seen } = KernelSamples::of(lines, records);
        let metrics = catalogue::of(Scope::Kernel)
            .filter_map(|d| {
                Some((
                    d.name.to_string(),
                    KernelMetric {
                        formula: d.formula.to_string(),
                        dist: Distribution::of(samples.get_mut(d.name)?)?,
                    },
                ))
            })
            .collect();
        let n = records.len() as u64;
        let (c, s) = (seen[0].len() as u64, seen[1].len() as u64);
        KernelSummary {
            requests: n,
            seen_client_side: c,
            seen_server_side: s,
            unseen_client_side: n - c,
            unseen_server_side: n - s,
            unmatched_exchanges: facts.unmatched_exchanges,
            superseded_attempts: facts.superseded_attempts,
            connections: facts.connections,
            dns_lookups: facts.dns_lookups,
            lost_events: facts.lost_events.clone(),
            metrics,
        }
    }
}

/// A kernel.jsonl line for one exchange (request-independent fields).
pub fn line_for(ex: &Exchange, conn: Option<&Connection>, dns: &[DnsLookup]) -> KernelLine {
    let dns_before = conn.filter(|_| ex.conn_new).and_then(|c| {
        dns.iter()
            .filter(|d| {
                d.pid == c.pid && d.t_end_ns <= c.t_connect_start_ns && d.source == "getaddrinfo"
            })
            .max_by_key(|d| d.t_end_ns)
            .map(|d| DnsInfo {
                name: d.name.clone(),
                t_start_ns: d.t_start_ns,
                t_end_ns: d.t_end_ns,
                cached: !dns.iter().any(|u| {
                    u.source == "udp53" && u.t_start_ns >= d.t_start_ns && u.t_end_ns <= d.t_end_ns
                }),
            })
    });
    KernelLine {
        request_id: ex.request_id.parse().ok(),
        side: ex.side.clone(),
        pid: ex.pid,
        comm: ex.comm.clone(),
        conn: ConnInfo {
            id: ex.conn_id,
            src: conn.map(|c| endpoint(&c.src)).unwrap_or_default(),
            dst: conn.map(|c| endpoint(&c.dst)).unwrap_or_default(),
            new: ex.conn_new,
            connect_ns: conn.and_then(|c| {
                nz(c.t_established_ns).map(|e| e.saturating_sub(c.t_connect_start_ns))
            }),
            retransmits: ex.retransmits,
            closed_by: conn.map(|c| c.closed_by.clone()).filter(|w| !w.is_empty()),
        },
        dns: dns_before,
        t_request_first_ns: nz(ex.t_request_first_ns),
        t_request_last_ns: nz(ex.t_request_last_ns),
        t_response_first_ns: nz(ex.t_response_first_ns),
        t_response_last_ns: nz(ex.t_response_last_ns),
        chunks: ex.chunks.iter().map(|c| [c.t_ns, c.bytes]).collect(),
        arrivals: ex.arrivals.iter().map(|c| [c.t_ns, c.bytes]).collect(),
        http_status: (ex.http_status != 0).then_some(ex.http_status),
        request_bytes: ex.request_bytes,
        response_bytes: ex.response_bytes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_proto::v1::Chunk;

    fn chunk(t: u64, b: u64) -> Chunk {
        Chunk { t_ns: t, bytes: b }
    }

    #[test]
    fn each_read_gets_the_arrivals_of_its_first_and_last_byte_when_they_are_whole() {
        let mut l = KernelLine {
            side: "client".into(),
            response_bytes: 100,
            // Reads of 30, 50 and 20 bytes over segments of 40, 40 and 20.
            chunks: vec![[1_000, 30], [2_000, 50], [3_000, 20]],
            arrivals: vec![[500, 40], [900, 40], [2_500, 20]],
            ..Default::default()
        };
        assert_eq!(
            l.read_arrivals(),
            Some(vec![[500, 500], [500, 900], [2_500, 2_500]])
        );
        // A segment whose arrival was not seen: no offsets are known.
        l.arrivals.pop();
        assert_eq!(l.read_arrivals(), None);
    }

    #[test]
    fn ttft_splits_into_client_network_and_server_time() {
        let rec = RequestRecord {
            request_id: 7,
            t_sent_ns: Some(1_000_000),
            t_first_token_ns: Some(9_100_000),
            success: true,
            ..Default::default()
        };
        let client = Exchange {
            side: "client".into(),
            request_id: "7".into(),
            t_request_first_ns: 1_010_000,
            t_request_last_ns: 1_020_000,
            t_response_first_ns: 5_100_000,
            // headers (100 B) at 5.1 ms, role prelude (50 B) at 5.2 ms, first token at 9.05 ms
            chunks: vec![
                chunk(5_100_000, 100),
                chunk(5_200_000, 50),
                chunk(9_050_000, 60),
            ],
            ..Default::default()
        };
        let server = Exchange {
            side: "server".into(),
            request_id: "7".into(),
            t_request_first_ns: 1_050_000,
            t_request_last_ns: 1_060_000,
            t_response_first_ns: 5_000_000,
            chunks: vec![
                chunk(5_000_000, 100),
                chunk(5_150_000, 50),
                chunk(9_000_000, 60),
            ],
            ..Default::default()
        };
        let data = KernelData {
            exchanges: vec![
                client,
                server,
                Exchange {
                    request_id: "99".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let recs = [rec];
        let j = join(&recs, &data);
        let summary = KernelSummary::of(&j.lines, &recs.iter().collect::<Vec<_>>(), &j.facts);
        assert_eq!(j.lines.len(), 2);
        let c = &j.lines[0];
        assert!((c.client_send_lag_ms.unwrap() - 0.01).abs() < 1e-9);
        assert!((c.client_read_lag_ms.unwrap() - 0.05).abs() < 1e-9);
        assert!((c.network_ms.unwrap() - 0.1).abs() < 1e-9);
        // The first token rode the third server write, 7.94 ms after the request was read.
        assert!((j.lines[1].server_ttft_ms.unwrap() - 7.94).abs() < 1e-9);
        assert_eq!((summary.seen_client_side, summary.seen_server_side), (1, 1));
        assert_eq!(summary.unmatched_exchanges, 1);
        assert_eq!(summary.metrics["server_ttft_ms"].dist.count, 1);
        // Two server write gaps from three writes; kernel TTFB 5.1 - 1.01 ms.
        assert_eq!(summary.metrics["server_chunk_gap_ms"].dist.count, 2);
        assert!((summary.metrics["kernel_ttfb_ms"].dist.p50 - 4.09).abs() < 1e-9);
    }

    #[test]
    fn a_retried_request_joins_its_answered_attempt_whatever_the_order() {
        let rec = RequestRecord {
            request_id: 5,
            t_sent_ns: Some(1_000),
            success: true,
            retries: 1,
            ..Default::default()
        };
        // The first attempt went out on a kept-alive connection the server had closed: no
        // response. The retry, on a new connection, was answered.
        let dead = Exchange {
            side: "client".into(),
            request_id: "5".into(),
            conn_id: 1,
            t_request_first_ns: 1_000,
            ..Default::default()
        };
        let answered = Exchange {
            conn_id: 2,
            t_request_first_ns: 2_000,
            t_response_first_ns: 9_000,
            ..dead.clone()
        };
        for exchanges in [
            vec![dead.clone(), answered.clone()],
            vec![answered.clone(), dead.clone()],
        ] {
            let data = KernelData {
                exchanges,
                ..Default::default()
            };
            let j = join(std::slice::from_ref(&rec), &data);
            assert_eq!(j.lines.len(), 1);
            assert_eq!(j.lines[0].conn.id, 2, "the answered attempt");
            assert_eq!(j.facts.superseded_attempts, 1);
            assert_eq!(j.facts.unmatched_exchanges, 0);
        }
    }

    #[test]
    fn unseen_requests_are_counted() {
        let recs: Vec<RequestRecord> = (0..3)
            .map(|i| RequestRecord {
                request_id: i,
                ..Default::default()
            })
            .collect();
        let data = KernelData {
            exchanges: vec![Exchange {
                side: "client".into(),
                request_id: "1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let j = join(&recs, &data);
        let summary = KernelSummary::of(&j.lines, &recs.iter().collect::<Vec<_>>(), &j.facts);
        assert_eq!(
            (summary.unseen_client_side, summary.unseen_server_side),
            (2, 3)
        );
    }
    fn ep(addr: &str, port: u32) -> Option<tb_proto::v1::Endpoint> {
        Some(tb_proto::v1::Endpoint {
            addr: addr.into(),
            port,
        })
    }

    fn lookup(pid: u32, name: &str, start: u64, end: u64, source: &str) -> DnsLookup {
        DnsLookup {
            pid,
            name: name.into(),
            t_start_ns: start,
            t_end_ns: end,
            source: source.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_line_carries_the_exchange_its_connection_and_the_lookup_before_it() {
        let conn = Connection {
            conn_id: 3,
            side: "client".into(),
            pid: 40,
            src: ep("127.0.0.1", 50_000),
            dst: ep("10.1.2.3", 8_000),
            t_connect_start_ns: 10_000,
            t_established_ns: 10_250,
            closed_by: "server".into(),
            ..Default::default()
        };
        let ex = Exchange {
            side: "client".into(),
            pid: 40,
            comm: "tbctl".into(),
            conn_id: 3,
            conn_new: true,
            request_id: "17".into(),
            t_request_first_ns: 11_000,
            t_request_last_ns: 11_500,
            t_response_first_ns: 20_000,
            t_response_last_ns: 30_000,
            chunks: vec![chunk(20_000, 90), chunk(30_000, 10)],
            arrivals: vec![chunk(19_000, 100)],
            http_status: 200,
            request_bytes: 300,
            response_bytes: 100,
            retransmits: 2,
            ..Default::default()
        };
        let dns = [
            // The lookup before the connect: the latest of this pid's getaddrinfo calls that
            // ended by the time connect() began; a wire query inside it means it was not
            // cached.
            lookup(40, "old.example", 1_000, 2_000, "getaddrinfo"),
            lookup(40, "api.example", 5_000, 10_000, "getaddrinfo"),
            lookup(40, "", 6_000, 8_000, "udp53"),
            // Another process's lookup, one ending after connect() began, and a wire query
            // alone are not it.
            lookup(41, "other.example", 9_100, 9_200, "getaddrinfo"),
            lookup(40, "late.example", 9_500, 10_001, "getaddrinfo"),
            lookup(40, "wire.example", 9_300, 9_400, "udp53"),
        ];
        let l = line_for(&ex, Some(&conn), &dns);
        assert_eq!(
            l,
            KernelLine {
                request_id: Some(17),
                side: "client".into(),
                pid: 40,
                comm: "tbctl".into(),
                conn: ConnInfo {
                    id: 3,
                    src: "127.0.0.1:50000".into(),
                    dst: "10.1.2.3:8000".into(),
                    new: true,
                    connect_ns: Some(250),
                    retransmits: 2,
                    closed_by: Some("server".into()),
                },
                dns: Some(DnsInfo {
                    name: "api.example".into(),
                    t_start_ns: 5_000,
                    t_end_ns: 10_000,
                    cached: false,
                }),
                t_request_first_ns: Some(11_000),
                t_request_last_ns: Some(11_500),
                t_response_first_ns: Some(20_000),
                t_response_last_ns: Some(30_000),
                chunks: vec![[20_000, 90], [30_000, 10]],
                arrivals: vec![[19_000, 100]],
                http_status: Some(200),
                request_bytes: 300,
                response_bytes: 100,
                ..Default::default()
            }
        );

        // A lookup with no wire query inside it was answered from a cache.
        let cached = [lookup(40, "api.example", 5_000, 10_000, "getaddrinfo")];
        assert!(line_for(&ex, Some(&conn), &cached).dns.unwrap().cached);
        // A query that only overlaps the lookup's start or end is another lookup's.
        let around = [
            lookup(40, "api.example", 5_000, 10_000, "getaddrinfo"),
            lookup(40, "", 4_000, 6_000, "udp53"),
            lookup(40, "", 8_000, 10_500, "udp53"),
        ];
        assert!(line_for(&ex, Some(&conn), &around).dns.unwrap().cached);
        // One that spans the lookup exactly is its own.
        let exact = [
            lookup(40, "api.example", 5_000, 10_000, "getaddrinfo"),
            lookup(40, "", 5_000, 10_000, "udp53"),
        ];
        assert!(!line_for(&ex, Some(&conn), &exact).dns.unwrap().cached);

        // A reused connection had no lookup before this exchange; unseen times and an
        // unseen status are absent, not zero.
        let reused = Exchange {
            conn_new: false,
            request_id: "not a number".into(),
            t_request_last_ns: 0,
            t_response_first_ns: 0,
            t_response_last_ns: 0,
            http_status: 0,
            ..ex.clone()
        };
        let unseen = Connection {
            t_established_ns: 0,
            closed_by: String::new(),
            ..conn.clone()
        };
        let l = line_for(&reused, Some(&unseen), &dns);
        assert_eq!(l.dns, None);
        assert_eq!(l.request_id, None);
        assert_eq!(
            (l.t_request_first_ns, l.t_request_last_ns),
            (Some(11_000), None)
        );
        assert_eq!((l.t_response_first_ns, l.t_response_last_ns), (None, None));
        assert_eq!(l.http_status, None);
        assert_eq!((l.conn.connect_ns, l.conn.closed_by), (None, None));
        // Without its connection a line still has the exchange's own facts.
        let l = line_for(&ex, None, &dns);
        assert_eq!((l.conn.src.as_str(), l.conn.dst.as_str()), ("", ""));
        assert_eq!((l.conn.id, l.conn.new, l.dns), (3, true, None));
    }

    #[test]
    fn of_two_attempts_alike_the_later_is_the_requests() {
        let rec = RequestRecord {
            request_id: 5,
            ..Default::default()
        };
        let first = Exchange {
            side: "client".into(),
            request_id: "5".into(),
            conn_id: 1,
            t_request_first_ns: 1_000,
            ..Default::default()
        };
        let second = Exchange {
            conn_id: 2,
            t_request_first_ns: 2_000,
            ..first.clone()
        };
        // Neither answered, then both answered: the later attempt, in either order.
        for answered in [0, 9_000] {
            let (a, b) = (
                Exchange {
                    t_response_first_ns: answered,
                    ..first.clone()
                },
                Exchange {
                    t_response_first_ns: answered,
                    ..second.clone()
                },
            );
            for exchanges in [vec![a.clone(), b.clone()], vec![b, a]] {
                let data = KernelData {
                    exchanges,
                    ..Default::default()
                };
                let j = join(std::slice::from_ref(&rec), &data);
                assert_eq!(j.lines.len(), 1);
                assert_eq!(j.lines[0].conn.id, 2, "answered: {answered}");
                assert_eq!(j.facts.superseded_attempts, 1);
            }
        }
    }

    #[test]
    fn a_read_ending_on_a_segment_boundary_gets_that_segments_arrival() {
        let l = KernelLine {
            side: "server".into(),
            request_bytes: 100,
            chunks: vec![[1_000, 40], [2_000, 40], [3_000, 20]],
            arrivals: vec![[500, 40], [900, 40], [2_500, 20]],
            ..Default::default()
        };
        assert_eq!(
            l.read_arrivals(),
            Some(vec![[500, 500], [900, 900], [2_500, 2_500]])
        );
        // Nothing read, nothing arrived: no arrivals to speak of.
        let empty = KernelLine {
            side: "client".into(),
            ..Default::default()
        };
        assert_eq!(empty.whole_arrivals(), None);
        assert_eq!(empty.read_arrivals(), None);
    }

    #[test]
    fn a_read_stamped_at_the_first_token_carried_it() {
        let reads = [[100, 10], [200, 20], [300, 30]];
        assert_eq!(first_token_read(&reads, 200), Some((1, 30)));
        assert_eq!(first_token_read(&reads, 299), Some((1, 30)));
        assert_eq!(first_token_read(&reads, 99), None);
        // Byte 29 is the second write's last, byte 30 the third's first.
        assert_eq!(write_carrying(&reads, 29), Some(1));
        assert_eq!(write_carrying(&reads, 30), Some(2));
        assert_eq!(write_carrying(&reads, 60), None);
    }

    #[test]
    fn arrival_gaps_spread_each_chunk_over_its_tokens() {
        let rec = RequestRecord {
            chunks: vec![[1_000, 1], [5_000, 1], [9_000, 2]],
            ..Default::default()
        };
        let line = KernelLine {
            content_arrivals_ns: vec![900, 1_900, 5_900],
            ..Default::default()
        };
        assert_eq!(
            arrival_token_gaps_ns(&line, &rec),
            vec![1_000.0, 2_000.0, 2_000.0]
        );
        // Arrivals that do not match the record's chunks give no gaps.
        let short = KernelLine {
            content_arrivals_ns: vec![900, 1_900],
            ..Default::default()
        };
        assert!(arrival_token_gaps_ns(&short, &rec).is_empty());
    }

    #[test]
    fn samples_are_the_lines_figures_in_their_units() {
        let rec = RequestRecord {
            request_id: 1,
            ttft_ms: Some(4.5),
            chunks: vec![[1_000_000, 1], [3_000_000, 2]],
            ..Default::default()
        };
        let client = KernelLine {
            request_id: Some(1),
            side: "client".into(),
            t_request_first_ns: Some(1_000_000),
            t_response_first_ns: Some(3_500_000),
            client_send_lag_ms: Some(0.01),
            client_read_lag_ms: Some(0.02),
            network_ms: Some(0.03),
            ttft_arrival_ms: Some(4.0),
            content_arrivals_ns: vec![1_000_000, 4_000_000],
            ..Default::default()
        };
        let server = KernelLine {
            request_id: Some(1),
            side: "server".into(),
            server_ttft_ms: Some(3.0),
            chunks: vec![[1_000_000, 10], [1_250_000, 10], [2_000_000, 10]],
            ..Default::default()
        };
        // A line of a request that is not among the records counts nowhere.
        let other = KernelLine {
            request_id: Some(2),
            ..client.clone()
        };
        let s = KernelSamples::of(&[client, server, other], &[&rec]);
        let expect: BTreeMap<&str, Vec<f64>> = [
            ("client_send_lag_ms", vec![0.01]),
            ("client_read_lag_ms", vec![0.02]),
            ("network_ms", vec![0.03]),
            ("ttft_arrival_ms", vec![4.0]),
            ("ttft_late_ms", vec![0.5]),
            ("itl_arrival_ms", vec![1.5, 1.5]),
            ("kernel_ttfb_ms", vec![2.5]),
            ("server_ttft_ms", vec![3.0]),
            ("server_chunk_gap_ms", vec![0.25, 0.75]),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.samples, expect);
        assert_eq!(s.seen, [HashSet::from([1]), HashSet::from([1])]);
    }

    #[test]
    fn the_summary_carries_the_captures_counts() {
        let facts = CaptureFacts {
            unmatched_exchanges: 3,
            connections: 4,
            dns_lookups: 5,
            lost_events: BTreeMap::from([("ringbuf_full".to_string(), 6)]),
            superseded_attempts: 7,
            export_latency: None,
        };
        let s = KernelSummary::of(&[], &[], &facts);
        assert_eq!(
            (
                s.requests,
                s.unmatched_exchanges,
                s.connections,
                s.dns_lookups,
                s.superseded_attempts
            ),
            (0, 3, 4, 5, 7)
        );
        assert_eq!(s.lost_events, facts.lost_events);
        assert!(s.metrics.is_empty());
    }
}
