//! Joining tbd's kernel exchanges to the client's records: kernel.jsonl lines, and the split
//! of TTFT into client, network and server time.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tb_proto::v1::{Connection, DnsLookup, Exchange, Run};

use crate::{record::RequestRecord, stats::Distribution};

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

/// The byte offset (in the response stream) where a read at or before `t_ns` ended.
fn bytes_through(chunks: &[tb_proto::v1::Chunk], t_ns: u64) -> Option<(u64, u64)> {
    let mut total = 0;
    let mut found = None;
    for c in chunks {
        if c.t_ns > t_ns {
            break;
        }
        total += c.bytes;
        found = Some((c.t_ns, total));
    }
    found
}

/// The time of the server write that carried response byte `offset` (0-based).
fn write_carrying(chunks: &[tb_proto::v1::Chunk], offset: u64) -> Option<u64> {
    let mut end = 0;
    for c in chunks {
        end += c.bytes;
        if offset < end {
            return Some(c.t_ns);
        }
    }
    None
}

/// The joined result.
pub struct Joined {
    pub lines: Vec<KernelLine>,
    pub summary: KernelSummary,
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
    pub connections: u64,
    pub dns_lookups: u64,
    pub lost_events: HashMap<String, u64>,
    pub metrics: std::collections::BTreeMap<String, KernelMetric>,
}

/// A kernel-derived metric with its formula.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelMetric {
    pub formula: String,
    #[serde(flatten)]
    pub dist: Distribution,
}

const KMETRICS: &[(&str, &str)] = &[
    (
        "client_send_lag_ms",
        "kernel client first request write - client t_sent",
    ),
    (
        "client_read_lag_ms",
        "client first-token stamp - kernel client read that carried it",
    ),
    (
        "network_ms",
        "kernel client first response read - kernel server first response write",
    ),
    (
        "server_ttft_ms",
        "kernel server write carrying the first token - kernel server last request read",
    ),
    (
        "kernel_ttfb_ms",
        "kernel client first response read - kernel client first request write",
    ),
    (
        "server_chunk_gap_ms",
        "gaps between the server's response writes (as it emitted them)",
    ),
];

/// Joins kernel exchanges to client records by request id (the x-tb-rid header).
pub fn join(records: &[RequestRecord], data: &KernelData) -> Joined {
    let conns: HashMap<(String, u64), &Connection> = data
        .connections
        .iter()
        .map(|c| ((c.side.clone(), c.conn_id), c))
        .collect();
    let mut by_rid: HashMap<(u64, &str), &Exchange> = HashMap::new();
    let mut unmatched = 0;
    let rids: std::collections::HashSet<u64> = records.iter().map(|r| r.request_id).collect();
    for e in &data.exchanges {
        match e.request_id.parse::<u64>() {
            Ok(id) if rids.contains(&id) => {
                by_rid.insert((id, e.side.as_str()), e);
            }
            _ => unmatched += 1,
        }
    }
    let mut lines = Vec::new();
    let mut samples: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut seen = [0u64; 2];
    for r in records {
        let client = by_rid.get(&(r.request_id, "client")).copied();
        let server = by_rid.get(&(r.request_id, "server")).copied();
        seen[0] += client.is_some() as u64;
        seen[1] += server.is_some() as u64;
        let first_token_read = match (client, r.t_first_token_ns) {
            (Some(c), Some(t)) => bytes_through(&c.chunks, t),
            _ => None,
        };
        let mut mine: Vec<KernelLine> = Vec::with_capacity(2);
        for (side, ex) in [("client", client), ("server", server)] {
            let Some(ex) = ex else { continue };
            let mut line = line_for(
                ex,
                conns.get(&(side.to_string(), ex.conn_id)).copied(),
                &data.dns,
            );
            line.request_id = Some(r.request_id);
            if side == "client" {
                line.client_send_lag_ms = r
                    .t_sent_ns
                    .zip(nz(ex.t_request_first_ns))
                    .map(|(sent, k)| ms(k, sent));
                line.client_read_lag_ms = r
                    .t_first_token_ns
                    .zip(first_token_read)
                    .map(|(t, (k, _))| ms(t, k));
                if let Some(s) = server {
                    line.network_ms = nz(ex.t_response_first_ns)
                        .zip(nz(s.t_response_first_ns))
                        .map(|(c, s)| ms(c, s));
                }
                if let (Some(k1), Some(k0)) =
                    (nz(ex.t_response_first_ns), nz(ex.t_request_first_ns))
                {
                    samples
                        .entry("kernel_ttfb_ms")
                        .or_default()
                        .push(ms(k1, k0));
                }
            } else {
                let carried = first_token_read
                    .and_then(|(_, through)| write_carrying(&ex.chunks, through.saturating_sub(1)));
                line.server_ttft_ms = carried
                    .zip(nz(ex.t_request_last_ns))
                    .map(|(w, req)| ms(w, req));
                for w in ex.chunks.windows(2) {
                    samples
                        .entry("server_chunk_gap_ms")
                        .or_default()
                        .push(ms(w[1].t_ns, w[0].t_ns));
                }
            }
            mine.push(line);
        }
        let server_ttft = mine.iter().find_map(|l| l.server_ttft_ms);
        let client_line = mine.iter().find(|l| l.side == "client");
        for (k, v) in [
            (
                "client_send_lag_ms",
                client_line.and_then(|l| l.client_send_lag_ms),
            ),
            (
                "client_read_lag_ms",
                client_line.and_then(|l| l.client_read_lag_ms),
            ),
            ("network_ms", client_line.and_then(|l| l.network_ms)),
            ("server_ttft_ms", server_ttft),
        ] {
            if let Some(v) = v {
                samples.entry(k).or_default().push(v);
            }
        }
        lines.extend(mine);
    }
    let n = records.len() as u64;
    let metrics = KMETRICS
        .iter()
        .filter_map(|(k, f)| {
            Some((
                k.to_string(),
                KernelMetric {
                    formula: f.to_string(),
                    dist: Distribution::of(samples.get_mut(k)?)?,
                },
            ))
        })
        .collect();
    Joined {
        lines,
        summary: KernelSummary {
            requests: n,
            seen_client_side: seen[0],
            seen_server_side: seen[1],
            unseen_client_side: n - seen[0],
            unseen_server_side: n - seen[1],
            unmatched_exchanges: unmatched,
            connections: data.connections.len() as u64,
            dns_lookups: data.dns.len() as u64,
            lost_events: data
                .run
                .lost
                .iter()
                .map(|l| (l.reason.clone(), l.count))
                .collect(),
            metrics,
        },
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
        let j = join(&[rec], &data);
        assert_eq!(j.lines.len(), 2);
        let c = &j.lines[0];
        assert!((c.client_send_lag_ms.unwrap() - 0.01).abs() < 1e-9);
        assert!((c.client_read_lag_ms.unwrap() - 0.05).abs() < 1e-9);
        assert!((c.network_ms.unwrap() - 0.1).abs() < 1e-9);
        // The first token rode the third server write, 7.94 ms after the request was read.
        assert!((j.lines[1].server_ttft_ms.unwrap() - 7.94).abs() < 1e-9);
        assert_eq!(
            (j.summary.seen_client_side, j.summary.seen_server_side),
            (1, 1)
        );
        assert_eq!(j.summary.unmatched_exchanges, 1);
        assert_eq!(j.summary.metrics["server_ttft_ms"].dist.count, 1);
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
        assert_eq!(
            (j.summary.unseen_client_side, j.summary.unseen_server_side),
            (2, 3)
        );
    }
}
