//! `tbctl trace`: the network view of a run from kernel.jsonl (connections, DNS, TTFB/TTLB,
//! response reads, bytes per token, the server's own writes) and insights drawn from it, each
//! with the threshold that decided it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::{
    catalogue::{self, Scope},
    kernel::join::{first_token_read, write_carrying, KernelLine},
    record::RequestRecord,
    stats::Distribution,
};

const CLIENT: &str = "client";
const SERVER: &str = "server";

/// Server-bound when the server's part of TTFB is at least this share.
pub const SERVER_BOUND_SHARE: f64 = 0.8;
/// Connection reuse below this rate is examined for missing keep-alive.
pub const REUSE_HEALTHY_RATE: f64 = 0.5;
/// Inter-chunk latency with a coefficient of variation below this is stable.
pub const ICL_STABLE_CV: f64 = 0.5;

/// One figure: its distribution, unit and formula.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figure {
    /// Key, one of the trace figures of the catalogue.
    pub name: &'static str,
    /// Unit of every sample.
    pub unit: &'static str,
    /// "client" or "server".
    pub side: &'static str,
    /// How one sample is computed.
    pub formula: &'static str,
    /// The samples' statistics.
    #[serde(flatten)]
    pub dist: Distribution,
}

/// Connection counts from the client side.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Connections {
    /// Client-side exchanges.
    pub exchanges: u64,
    /// Distinct connection ids whose first exchange is in the run (conn.new).
    pub created: u64,
    /// Exchanges on a connection that had carried one before (!conn.new).
    pub reused_exchanges: u64,
    /// reused_exchanges / exchanges.
    pub reuse_rate: Option<f64>,
    /// Most exchanges in flight at once (t_request_first to t_response_last): fewer
    /// connections than this cannot carry the run.
    pub peak_in_flight: u64,
    /// (exchanges - peak_in_flight) / exchanges: the reuse rate perfect keep-alive would give.
    pub best_reuse_rate: Option<f64>,
    /// Who ended the client-side connections first, by the kernel's TCP states.
    pub closed_first_by: ClosedBy,
}

/// Connections by who ended them first (`conn.closed_by`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ClosedBy {
    /// The client sent its FIN first.
    pub client: u64,
    /// The server sent its FIN first.
    pub server: u64,
    /// Ended by a reset.
    pub reset: u64,
    /// Still open at the end of the run, or not seen ending.
    pub unseen: u64,
}

/// DNS lookups before new client connections.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Dns {
    /// Client lines with a lookup.
    pub lookups: u64,
    /// Lookups answered without a wire query (dns.cached).
    pub cache_hits: u64,
}

/// TCP retransmits during exchanges.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Retransmits {
    /// On client sockets (request data, ACKs).
    pub client: u64,
    /// On server sockets (response data).
    pub server: u64,
    /// client + server.
    pub total: u64,
    /// Exchanges, either side, with at least one retransmit.
    pub exchanges_affected: u64,
}

/// TTFB split into server time and network + client time, from requests seen on both sides.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TtfbSplit {
    /// Requests with a client and a server line.
    pub requests: u64,
    /// Median client TTFB of those requests.
    pub ttfb_p50_ms: f64,
    /// Median of (client TTFB - server time to first write).
    pub network_client_p50_ms: f64,
    /// Median server time to first write.
    pub server_p50_ms: f64,
    /// 1 - network_client_p50_ms / ttfb_p50_ms, clamped to 0..=1.
    pub server_share: f64,
}

/// How much an insight asks for attention.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A finding.
    #[default]
    Info,
    /// Something likely wrong or costly.
    Warn,
}

/// One sentence drawn from the figures, naming the threshold that decided it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Insight {
    /// "bound", "connection_reuse", "icl_stability" or "retransmits".
    pub topic: &'static str,
    /// Whether it needs attention.
    pub level: Level,
    /// The sentence.
    pub text: String,
}

/// The whole analysis of one run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TraceReport {
    /// The run directory or daemon run id (set by the caller).
    pub run: String,
    /// Where the lines came from: "kernel.jsonl" or "tbd" (set by the caller).
    pub source: String,
    /// Client-side lines.
    pub client_exchanges: u64,
    /// Server-side lines.
    pub server_exchanges: u64,
    /// Client-side lines joined to a client record (per-token figures need one).
    pub joined_records: u64,
    /// Connection creation and reuse.
    pub connections: Connections,
    /// DNS lookups.
    pub dns: Dns,
    /// TCP retransmits.
    pub retransmits: Retransmits,
    /// TTFB split, when the server side was seen.
    pub ttfb_split: Option<TtfbSplit>,
    /// Every figure with samples, in catalogue order.
    pub figures: Vec<Figure>,
    /// Sentences drawn from the figures.
    pub insights: Vec<Insight>,
    /// Why something is missing, so absence is never read as zero.
    pub notes: Vec<String>,
}

impl TraceReport {
    /// The figure named `name`, when it had samples.
    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }
}

fn ms(later: u64, earlier: u64) -> f64 {
    (later as f64 - earlier as f64) / 1e6
}

fn gap_ms(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    Some(ms(a?, b?))
}

fn chunk_gaps_ms(chunks: &[[u64; 2]]) -> impl Iterator<Item = f64> + '_ {
    chunks.windows(2).map(|w| ms(w[1][0], w[0][0]))
}

/// Most intervals open at once; an interval ending when another starts does not overlap it,
/// as a connection freed at t can carry an exchange starting at t.
fn peak_overlap(intervals: impl Iterator<Item = (u64, u64)>) -> u64 {
    let mut events: Vec<(u64, i64)> = intervals.flat_map(|(a, b)| [(a, 1), (b, -1)]).collect();
    events.sort_unstable();
    let (mut open, mut peak) = (0i64, 0i64);
    for (_, d) in events {
        open += d;
        peak = peak.max(open);
    }
    peak as u64
}

#[derive(Default)]
struct Samples(HashMap<&'static str, Vec<f64>>);

impl Samples {
    fn push(&mut self, name: &'static str, v: f64) {
        debug_assert!(
            catalogue::get(Scope::Trace, name).is_some(),
            "{name} is not in the trace catalogue"
        );
        self.0.entry(name).or_default().push(v);
    }

    fn figures(mut self) -> Vec<Figure> {
        catalogue::of(Scope::Trace)
            .filter_map(|d| {
                Some(Figure {
                    name: d.name,
                    unit: d.unit,
                    side: d.side,
                    formula: d.formula,
                    dist: Distribution::of(self.0.get_mut(d.name)?)?,
                })
            })
            .collect()
    }
}

/// Analyses a run's kernel lines, joined to its client records by request id for per-token
/// figures and first-token positions.
pub fn analyze(lines: &[KernelLine], records: &[RequestRecord]) -> TraceReport {
    let recs: HashMap<u64, &RequestRecord> = records.iter().map(|r| (r.request_id, r)).collect();
    let client: Vec<&KernelLine> = lines.iter().filter(|l| l.side == CLIENT).collect();
    let server: Vec<&KernelLine> = lines.iter().filter(|l| l.side == SERVER).collect();
    let mut s = Samples::default();
    let mut r = TraceReport {
        client_exchanges: client.len() as u64,
        server_exchanges: server.len() as u64,
        ..Default::default()
    };

    let mut created = HashSet::new();
    let mut per_conn: HashMap<u64, u64> = HashMap::new();
    let mut closed_by: HashMap<u64, Option<&str>> = HashMap::new();
    // Response bytes the client had read when it saw the first token, to find the server
    // write that carried it.
    let mut first_token_offset: HashMap<u64, u64> = HashMap::new();
    let mut client_ttfb: HashMap<u64, f64> = HashMap::new();
    for l in &client {
        *per_conn.entry(l.conn.id).or_default() += 1;
        closed_by.insert(l.conn.id, l.conn.closed_by.as_deref());
        if l.conn.new {
            if created.insert(l.conn.id) {
                if let Some(c) = l.conn.connect_ns {
                    s.push("connect_ms", c as f64 / 1e6);
                }
            }
        } else {
            r.connections.reused_exchanges += 1;
        }
        if let Some(d) = &l.dns {
            r.dns.lookups += 1;
            r.dns.cache_hits += d.cached as u64;
            s.push("dns_ms", ms(d.t_end_ns, d.t_start_ns));
        }
        if let Some(v) = gap_ms(l.t_request_last_ns, l.t_request_first_ns) {
            s.push("request_send_ms", v);
        }
        let ttfb = gap_ms(l.t_response_first_ns, l.t_request_first_ns);
        let ttlb = gap_ms(l.t_response_last_ns, l.t_request_first_ns);
        if let Some(v) = ttfb {
            s.push("ttfb_ms", v);
            if let Some(id) = l.request_id {
                client_ttfb.entry(id).or_insert(v);
            }
        }
        if let Some(v) = ttlb {
            s.push("ttlb_ms", v);
        }
        if let (Some(b), Some(e)) = (ttfb, ttlb) {
            if b > 0.0 {
                s.push("transfer_ratio", (e - b) / b);
            }
        }
        s.push("chunks_per_request", l.chunks.len() as f64);
        for ([t, _], [first, _]) in l.chunks.iter().zip(l.read_arrivals().unwrap_or_default()) {
            s.push("read_delay_ms", ms(*t, first));
        }
        for [_, bytes] in &l.chunks {
            s.push("chunk_bytes", *bytes as f64);
        }
        s.push("request_bytes", l.request_bytes as f64);
        s.push("response_bytes", l.response_bytes as f64);
        r.retransmits.client += u64::from(l.conn.retransmits);
        r.retransmits.exchanges_affected += (l.conn.retransmits > 0) as u64;

        let rec = l.request_id.and_then(|id| recs.get(&id).copied());
        r.joined_records += rec.is_some() as u64;
        let first = rec
            .and_then(|rec| rec.t_first_token_ns)
            .and_then(|t| first_token_read(&l.chunks, t));
        if let (Some(id), Some((_, through))) = (l.request_id, first) {
            first_token_offset.entry(id).or_insert(through);
        }
        // Reads before the first token are headers and role preludes: their gap to the first
        // token is the server's prefill, not streaming jitter.
        let from = first.map_or(0, |(i, _)| i);
        for g in chunk_gaps_ms(&l.chunks[from..]) {
            s.push("icl_ms", g);
        }
        if let Some(n) = rec.and_then(|rec| rec.output_tokens).filter(|n| *n > 0) {
            if l.response_bytes > 0 {
                s.push("bytes_per_token", l.response_bytes as f64 / n as f64);
            }
            if !l.chunks.is_empty() {
                s.push("tokens_per_chunk", n as f64 / l.chunks.len() as f64);
            }
        }
    }
    for n in per_conn.values() {
        s.push("exchanges_per_conn", *n as f64);
    }

    let mut split = Vec::new();
    for l in &server {
        r.retransmits.server += u64::from(l.conn.retransmits);
        r.retransmits.exchanges_affected += (l.conn.retransmits > 0) as u64;
        let first_arrival = l.whole_arrivals().map(|a| a[0][0]);
        if let Some(v) = gap_ms(l.t_request_first_ns, first_arrival) {
            s.push("server_read_delay_ms", v);
        }
        let first_write = gap_ms(l.t_response_first_ns, l.t_request_last_ns);
        if let Some(v) = first_write {
            s.push("server_first_write_ms", v);
        }
        let carrying = l
            .request_id
            .and_then(|id| first_token_offset.get(&id))
            .and_then(|through| write_carrying(&l.chunks, through.saturating_sub(1)));
        // Joined once, by `join::annotate`, into kernel.jsonl.
        if let Some(v) = l.server_ttft_ms {
            s.push("server_ttft_ms", v);
        }
        for g in chunk_gaps_ms(&l.chunks[carrying.unwrap_or(0)..]) {
            s.push("server_write_gap_ms", g);
        }
        let ttfb = l.request_id.and_then(|id| client_ttfb.get(&id));
        if let (Some(ttfb), Some(fw)) = (ttfb, first_write) {
            split.push((*ttfb, fw));
        }
    }

    let c = &mut r.connections;
    for who in closed_by.values() {
        let n = match who {
            Some("client") => &mut c.closed_first_by.client,
            Some("server") => &mut c.closed_first_by.server,
            Some("reset") => &mut c.closed_first_by.reset,
            _ => &mut c.closed_first_by.unseen,
        };
        *n += 1;
    }
    c.exchanges = client.len() as u64;
    c.created = created.len() as u64;
    c.peak_in_flight = peak_overlap(
        client
            .iter()
            .filter_map(|l| Some((l.t_request_first_ns?, l.t_response_last_ns?))),
    );
    if c.exchanges > 0 {
        let n = c.exchanges as f64;
        c.reuse_rate = Some(c.reused_exchanges as f64 / n);
        c.best_reuse_rate = Some(c.exchanges.saturating_sub(c.peak_in_flight) as f64 / n);
    }
    r.retransmits.total = r.retransmits.client + r.retransmits.server;
    r.ttfb_split = ttfb_split(&split);
    r.figures = s.figures();
    r.insights = insights(&r);
    if client.is_empty() {
        r.notes
            .push("no client-side exchanges: the kernel saw none of this run's requests".into());
    } else if r.joined_records == 0 {
        r.notes.push(format!(
            "per-token figures (bytes_per_token, tokens_per_chunk) skipped: {}",
            if records.is_empty() {
                "no client records"
            } else {
                "no client record joins these exchanges by request id"
            }
        ));
    }
    r
}

fn ttfb_split(pairs: &[(f64, f64)]) -> Option<TtfbSplit> {
    let p50 = |mut v: Vec<f64>| Distribution::of(&mut v).map(|d| d.p50);
    let ttfb = p50(pairs.iter().map(|p| p.0).collect())?;
    let net = p50(pairs.iter().map(|p| p.0 - p.1).collect())?;
    let server = p50(pairs.iter().map(|p| p.1).collect())?;
    let share = if ttfb > 0.0 {
        (1.0 - net / ttfb).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Some(TtfbSplit {
        requests: pairs.len() as u64,
        ttfb_p50_ms: ttfb,
        network_client_p50_ms: net,
        server_p50_ms: server,
        server_share: share,
    })
}

/// A number for a sentence: three significant digits or so.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 0.01 || a == 0.0 => format!("{v:.2}"),
        _ => format!("{v:.4}"),
    }
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn insight(topic: &'static str, level: Level, text: String) -> Insight {
    Insight { topic, level, text }
}

fn insights(r: &TraceReport) -> Vec<Insight> {
    if r.client_exchanges == 0 {
        return Vec::new();
    }
    let p50 = |name: &str| r.figure(name).map(|f| f.dist.p50);
    let mut out = vec![bound(r, p50("ttfb_ms"), p50("server_ttft_ms"))];
    out.extend(reuse(&r.connections, p50("connect_ms")));
    out.extend(icl(r.figure("icl_ms"), r.figure("server_write_gap_ms")));
    let x = &r.retransmits;
    out.push(if x.total > 0 {
        insight(
            "retransmits",
            Level::Warn,
            format!(
                "{} TCP retransmits (client {}, server {}) in {} exchanges (warned above 0): packet \
                 loss or congestion; each delays its exchange, by a whole retransmission timeout \
                 (200 ms minimum on Linux) when fast retransmit cannot recover the loss",
                x.total, x.client, x.server, x.exchanges_affected
            ),
        )
    } else {
        insight(
            "retransmits",
            Level::Info,
            "no TCP retransmits during any exchange".into(),
        )
    });
    out
}

fn bound(r: &TraceReport, ttfb_p50: Option<f64>, server_ttft_p50: Option<f64>) -> Insight {
    let Some(sp) = &r.ttfb_split else {
        return insight(
            "bound",
            Level::Info,
            format!(
                "server- or network-bound: unknown, no server-side lines (the server is not on \
                 this host, or its port was not captured); client TTFB p50 {} ms holds both",
                ttfb_p50.map_or("-".into(), num)
            ),
        );
    };
    let server_bound = sp.server_share >= SERVER_BOUND_SHARE;
    let mut text =
        format!(
        "{}: the server takes {} of TTFB (server time to first write p50 {} ms; network + client \
         p50 {} ms = median(client TTFB - server time to first write) of client TTFB p50 {} ms, \
         {} requests; server-bound at >= {})",
        if server_bound { "server-bound" } else { "network-bound" },
        pct(sp.server_share),
        num(sp.server_p50_ms),
        num(sp.network_client_p50_ms),
        num(sp.ttfb_p50_ms),
        sp.requests,
        pct(SERVER_BOUND_SHARE),
    );
    // Streaming servers often write headers at once and the first token after prefill; the
    // first byte then says little about the wait for tokens.
    if let Some(t) = server_ttft_p50.filter(|t| *t > 2.0 * sp.server_p50_ms) {
        text.push_str(&format!(
            "; the first token comes later: server time to first token write p50 {} ms",
            num(t)
        ));
    }
    insight("bound", Level::Info, text)
}

fn reuse(c: &Connections, connect_p50: Option<f64>) -> Option<Insight> {
    let rate = c.reuse_rate?;
    let summary = format!(
        "{} of {} exchanges reused a connection ({}; {} connections opened, at most {} exchanges \
         in flight at once)",
        c.reused_exchanges,
        c.exchanges,
        pct(rate),
        c.created,
        c.peak_in_flight
    );
    if rate >= REUSE_HEALTHY_RATE {
        return Some(insight(
            "connection_reuse",
            Level::Info,
            format!(
                "connection reuse healthy: {summary}; >= {} is healthy",
                pct(REUSE_HEALTHY_RATE)
            ),
        ));
    }
    // Low reuse is only a keep-alive problem when fewer connections could have carried the
    // load: no more connections than exchanges in flight at once is the best possible.
    if c.exchanges > c.peak_in_flight && c.created > c.peak_in_flight {
        let every = if c.created >= c.exchanges {
            "a new connection per request; "
        } else {
            ""
        };
        // The kernel saw who sent the first FIN: a side that did so on most connections is
        // the one dropping keep-alive.
        let by = &c.closed_first_by;
        let ended = by.client + by.server + by.reset;
        let majority = [
            (
                "server",
                by.server,
                "it closes connections after its responses (check its keep-alive settings)",
            ),
            (
                "client",
                by.client,
                "the load generator does not keep connections alive (no pool, or \
                 `Connection: close`)",
            ),
        ]
        .into_iter()
        .find(|(_, n, _)| n * 2 > ended && ended > 0);
        let cause = match majority {
            Some((who, n, why)) => {
                format!("the {who} ended {n} of {ended} connections (its FIN came first): {why}")
            }
            None => "HTTP keep-alive is missing (client pool, server `Connection: close`, or a \
                     proxy)"
                .to_owned(),
        };
        return Some(insight(
            "connection_reuse",
            Level::Warn,
            format!(
                "connection reuse low: {summary}, below {} though keep-alive could reach {}: \
                 {every}{cause}; each new connection pays its connect{}",
                pct(REUSE_HEALTHY_RATE),
                pct(c.best_reuse_rate.unwrap_or(0.0)),
                connect_p50.map_or(String::new(), |v| format!(" (p50 {} ms)", num(v))),
            ),
        ));
    }
    Some(insight(
        "connection_reuse",
        Level::Info,
        format!(
            "connection reuse low but expected: {summary}, below {} because that many exchanges \
             ran at once, not from missing keep-alive",
            pct(REUSE_HEALTHY_RATE)
        ),
    ))
}

/// Coefficient of variation (stddev / mean) and p99 / p50 of a gap distribution.
fn spread(d: &Distribution) -> Option<(f64, f64)> {
    (d.mean > 0.0 && d.p50 > 0.0).then(|| (d.stddev / d.mean, d.p99 / d.p50))
}

fn icl(client: Option<&Figure>, server: Option<&Figure>) -> Option<Insight> {
    let f = client?;
    let (cv, tail) = spread(&f.dist)?;
    let head = format!(
        "inter-chunk latency CV {} (stddev / mean; stable below {}), p99/p50 {} (p50 {} ms, p99 {} \
         ms, {} gaps)",
        num(cv),
        num(ICL_STABLE_CV),
        num(tail),
        num(f.dist.p50),
        num(f.dist.p99),
        f.dist.count
    );
    if cv < ICL_STABLE_CV {
        return Some(insight(
            "icl_stability",
            Level::Info,
            format!("stable {head}"),
        ));
    }
    // The server's own write gaps tell whether the jitter is emitted or added on the way.
    let origin = match server.and_then(|s| spread(&s.dist)) {
        Some((scv, _)) if scv >= ICL_STABLE_CV => format!(
            "; the server's writes are jittery too (CV {}, p99 {} ms), so at least part of it \
             comes from the server",
            num(scv),
            num(server.map_or(0.0, |s| s.dist.p99)),
        ),
        Some((scv, _)) => format!(
            "; the server's writes are steady (CV {}), so it is added between server and client \
             (network, proxy, or client reads)",
            num(scv)
        ),
        None => String::new(),
    };
    Some(insight(
        "icl_stability",
        Level::Warn,
        format!("jittery {head}{origin}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::join::{ConnInfo, DnsInfo};

    const MS: u64 = 1_000_000;

    /// A client line: request written over 1 ms from `t0`, first response byte at t0 + ttfb,
    /// then `n` reads 10 ms apart of 100 bytes each.
    fn client(id: u64, conn: u64, new: bool, t0: u64, ttfb: u64, n: u64) -> KernelLine {
        let chunks: Vec<[u64; 2]> = (0..n).map(|i| [t0 + ttfb + i * 10 * MS, 100]).collect();
        KernelLine {
            request_id: Some(id),
            side: CLIENT.into(),
            conn: ConnInfo {
                id: conn,
                new,
                connect_ns: new.then_some(2 * MS),
                ..Default::default()
            },
            t_request_first_ns: Some(t0),
            t_request_last_ns: Some(t0 + MS),
            t_response_first_ns: Some(t0 + ttfb),
            t_response_last_ns: chunks.last().map(|c| c[0]),
            request_bytes: 500,
            response_bytes: 100 * n,
            chunks,
            ..Default::default()
        }
    }

    /// The server line of the same request: request read at t0 + 0.5 ms, first write after
    /// `first_write`, writes 10 ms apart.
    fn server(id: u64, t0: u64, first_write: u64, n: u64) -> KernelLine {
        let read = t0 + MS / 2;
        let chunks: Vec<[u64; 2]> = (0..n)
            .map(|i| [read + first_write + i * 10 * MS, 100])
            .collect();
        KernelLine {
            request_id: Some(id),
            side: SERVER.into(),
            conn: ConnInfo {
                id: 100 + id,
                new: true,
                ..Default::default()
            },
            t_request_first_ns: Some(read),
            t_request_last_ns: Some(read),
            t_response_first_ns: chunks.first().map(|c| c[0]),
            t_response_last_ns: chunks.last().map(|c| c[0]),
            response_bytes: 100 * n,
            chunks,
            ..Default::default()
        }
    }

    fn rec(id: u64, tokens: u64) -> RequestRecord {
        RequestRecord {
            request_id: id,
            output_tokens: Some(tokens),
            success: true,
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn three_exchanges_on_one_connection_reuse_two() {
        let lines: Vec<KernelLine> = (0..3)
            .map(|i| client(i, 7, i == 0, i * 100 * MS, 20 * MS, 3))
            .collect();
        let r = analyze(&lines, &[]);
        let c = &r.connections;
        assert_eq!(
            (c.exchanges, c.created, c.reused_exchanges, c.peak_in_flight),
            (3, 1, 2, 1)
        );
        assert!(close(c.reuse_rate.unwrap(), 2.0 / 3.0));
        assert_eq!(r.figure("connect_ms").unwrap().dist.count, 1);
        assert_eq!(r.figure("exchanges_per_conn").unwrap().dist.max, 3.0);
        let i = r
            .insights
            .iter()
            .find(|i| i.topic == "connection_reuse")
            .unwrap();
        assert_eq!(i.level, Level::Info);
    }

    #[test]
    fn a_new_connection_per_sequential_request_warns() {
        let lines: Vec<KernelLine> = (0..4)
            .map(|i| client(i, i, true, i * 100 * MS, 20 * MS, 3))
            .collect();
        let r = analyze(&lines, &[]);
        assert_eq!(r.connections.reuse_rate, Some(0.0));
        let i = r
            .insights
            .iter()
            .find(|i| i.topic == "connection_reuse")
            .unwrap();
        assert_eq!(i.level, Level::Warn);
        assert!(
            i.text.contains("a new connection per request")
                && i.text.contains("keep-alive is missing"),
            "{}",
            i.text
        );
        // The kernel saw the server's FIN first on three of the four: the server is named.
        let closed = |who: &[Option<&str>]| {
            let lines: Vec<KernelLine> = (0..4)
                .map(|i| {
                    let mut l = client(i, i, true, i * 100 * MS, 20 * MS, 3);
                    l.conn.closed_by = who[i as usize].map(str::to_owned);
                    l
                })
                .collect();
            let r = analyze(&lines, &[]);
            let text = r
                .insights
                .iter()
                .find(|i| i.topic == "connection_reuse")
                .unwrap()
                .text
                .clone();
            (r.connections.closed_first_by, text)
        };
        let (by, text) = closed(&[Some("server"), Some("server"), Some("server"), None]);
        assert_eq!((by.server, by.client, by.unseen), (3, 0, 1));
        assert!(
            text.contains("the server ended 3 of 3 connections"),
            "{text}"
        );
        let (by, text) = closed(&[
            Some("client"),
            Some("client"),
            Some("reset"),
            Some("server"),
        ]);
        assert_eq!((by.client, by.reset, by.server), (2, 1, 1));
        // Two of four is no majority: no side is blamed.
        assert!(text.contains("keep-alive is missing"), "{text}");
        let (_, text) = closed(&[
            Some("client"),
            Some("client"),
            Some("client"),
            Some("server"),
        ]);
        assert!(
            text.contains("the client ended 3 of 4 connections"),
            "{text}"
        );
        // Four at once need four connections: no keep-alive warning.
        let lines: Vec<KernelLine> = (0..4).map(|i| client(i, i, true, 0, 20 * MS, 3)).collect();
        let r = analyze(&lines, &[]);
        let i = r
            .insights
            .iter()
            .find(|i| i.topic == "connection_reuse")
            .unwrap();
        assert_eq!((r.connections.peak_in_flight, i.level), (4, Level::Info));
    }

    #[test]
    fn ttfb_ttlb_send_time_and_transfer_ratio() {
        // Request written 0..1 ms, first byte at 20 ms, 5 reads 10 ms apart: last at 60 ms.
        let r = analyze(&[client(1, 1, true, 1_000 * MS, 20 * MS, 5)], &[]);
        let p50 = |n: &str| r.figure(n).unwrap().dist.p50;
        assert!(close(p50("request_send_ms"), 1.0));
        assert!(close(p50("ttfb_ms"), 20.0));
        assert!(close(p50("ttlb_ms"), 60.0));
        assert!(close(p50("transfer_ratio"), 2.0)); // (60 - 20) / 20
        assert!(close(p50("chunks_per_request"), 5.0));
        assert!(close(p50("icl_ms"), 10.0));
        assert!(close(p50("chunk_bytes"), 100.0));
        assert!(close(p50("response_bytes"), 500.0));
        assert!(r.figure("bytes_per_token").is_none());
        assert!(r.notes.iter().any(|n| n.contains("per-token figures")));
    }

    #[test]
    fn bytes_and_tokens_per_chunk_use_the_joined_record() {
        let lines = [
            client(1, 1, true, 0, 20 * MS, 5),
            client(2, 1, false, 100 * MS, 20 * MS, 4),
        ];
        let r = analyze(&lines, &[rec(1, 10), rec(2, 8)]);
        assert_eq!(r.joined_records, 2);
        let bpt = &r.figure("bytes_per_token").unwrap().dist;
        assert_eq!((bpt.count, bpt.min, bpt.max), (2, 50.0, 50.0)); // 500 / 10, 400 / 8
        assert!(close(r.figure("tokens_per_chunk").unwrap().dist.mean, 2.0));
    }

    #[test]
    fn icl_starts_at_the_read_carrying_the_first_token() {
        let mut l = client(1, 1, true, 0, 5 * MS, 4);
        // Headers at 5 ms, first token 100 ms later, then 10 ms gaps.
        for c in &mut l.chunks[1..] {
            c[0] += 100 * MS;
        }
        let mut r1 = rec(1, 3);
        r1.t_first_token_ns = Some(l.chunks[1][0] + 50_000);
        let r = analyze(&[l.clone()], &[r1]);
        let icl = &r.figure("icl_ms").unwrap().dist;
        assert_eq!((icl.count, icl.max), (2, 10.0));
        let i = r
            .insights
            .iter()
            .find(|i| i.topic == "icl_stability")
            .unwrap();
        assert!(i.text.starts_with("stable"), "{}", i.text);
        // Without the record the prefill gap counts, and the stream reads as jittery.
        let r = analyze(&[l], &[]);
        assert_eq!(r.figure("icl_ms").unwrap().dist.count, 3);
        let i = r
            .insights
            .iter()
            .find(|i| i.topic == "icl_stability")
            .unwrap();
        assert_eq!(i.level, Level::Warn);
    }

    #[test]
    fn server_bound_when_server_time_dominates_ttfb() {
        // Client TTFB 20 ms; the server reads at 0.5 ms and writes 18 ms later: network +
        // client 2 ms, server share 90%.
        let lines = [client(1, 1, true, 0, 20 * MS, 3), server(1, 0, 18 * MS, 3)];
        let r = analyze(&lines, &[]);
        let sp = r.ttfb_split.as_ref().unwrap();
        assert!(close(sp.network_client_p50_ms, 2.0));
        assert!(close(sp.server_share, 0.9));
        assert!(close(
            r.figure("server_first_write_ms").unwrap().dist.p50,
            18.0
        ));
        assert!(close(
            r.figure("server_write_gap_ms").unwrap().dist.p50,
            10.0
        ));
        let i = r.insights.iter().find(|i| i.topic == "bound").unwrap();
        assert!(i.text.starts_with("server-bound"), "{}", i.text);
    }

    #[test]
    fn network_bound_otherwise() {
        // Server writes 4 ms after reading: 16 of 20 ms are network and client.
        let lines = [client(1, 1, true, 0, 20 * MS, 3), server(1, 0, 4 * MS, 3)];
        let r = analyze(&lines, &[]);
        assert!(close(r.ttfb_split.as_ref().unwrap().server_share, 0.2));
        let i = r.insights.iter().find(|i| i.topic == "bound").unwrap();
        assert!(i.text.starts_with("network-bound"), "{}", i.text);
        // No server lines: undecided, said so.
        let r = analyze(&lines[..1], &[]);
        let i = r.insights.iter().find(|i| i.topic == "bound").unwrap();
        assert!(i.text.contains("unknown"), "{}", i.text);
    }

    #[test]
    fn server_ttft_follows_the_first_token_bytes() {
        let mut c = client(1, 1, true, 0, 20 * MS, 3);
        let s = server(1, 0, 18 * MS, 3);
        // The client read the second 100 bytes at 30 ms and saw the first token then.
        let mut r1 = rec(1, 2);
        r1.t_first_token_ns = Some(c.chunks[1][0] + 1);
        c.dns = Some(DnsInfo {
            name: "x".into(),
            t_start_ns: 0,
            t_end_ns: 3 * MS,
            cached: true,
        });
        c.conn.retransmits = 2;
        let mut lines = [c, s];
        crate::kernel::join::annotate(&mut lines, std::slice::from_ref(&r1));
        let r = analyze(&lines, &[r1]);
        // Server wrote byte 199 in its second write: 18 + 10 ms after reading the request.
        assert!(close(r.figure("server_ttft_ms").unwrap().dist.p50, 28.0));
        assert_eq!(r.figure("server_write_gap_ms").unwrap().dist.count, 1);
        assert_eq!((r.dns.lookups, r.dns.cache_hits), (1, 1));
        assert!(close(r.figure("dns_ms").unwrap().dist.p50, 3.0));
        assert_eq!(
            (r.retransmits.total, r.retransmits.exchanges_affected),
            (2, 1)
        );
        let i = r
            .insights
            .iter()
            .find(|i| i.topic == "retransmits")
            .unwrap();
        assert_eq!(i.level, Level::Warn);
    }

    #[test]
    fn empty_input_gives_an_empty_report() {
        let r = analyze(&[], &[]);
        assert!(r.figures.is_empty() && r.insights.is_empty() && r.ttfb_split.is_none());
        assert_eq!(r.connections, Connections::default());
        assert_eq!(
            (r.client_exchanges, r.dns.lookups, r.retransmits.total),
            (0, 0, 0)
        );
        serde_json::to_string(&r).unwrap();
        // Lines with no times at all do not panic either.
        let r = analyze(
            &[KernelLine {
                side: CLIENT.into(),
                ..Default::default()
            }],
            &[rec(0, 1)],
        );
        assert_eq!(r.client_exchanges, 1);
    }
}
