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
    /// (cgroup_skb ingress, in stream order). Whole when they add up to the bytes read ([`KernelLine::whole_arrivals`]).
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
#[path = "join_tests.rs"]
mod tests;
