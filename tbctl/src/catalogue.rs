//! The metric catalogue: every figure tbctl reports (summary, kernel split, trace, report,
//! compare), with its unit, what one sample is and its formula. Nothing names a figure or
//! prints a formula without coming through here.

/// Where a figure's samples come from, which is also the section it is reported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The client's records (requests.jsonl): summary.json `metrics`.
    Client,
    /// Whole-run rates from the client's records: summary.json top level.
    Rate,
    /// Kernel exchanges joined to the client's records: summary.json `kernel.metrics`.
    Kernel,
    /// `tbctl trace`: the network view of kernel.jsonl.
    Trace,
    /// tbd's energy samples (energy.jsonl) and the client's records: summary.json `energy`.
    Energy,
}

impl Scope {
    /// The scope's name, as JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Client => "client",
            Scope::Rate => "rate",
            Scope::Kernel => "kernel",
            Scope::Trace => "trace",
            Scope::Energy => "energy",
        }
    }
}

/// One figure of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MetricDef {
    /// Key in summary.json, trace and report output.
    pub name: &'static str,
    /// Unit of every sample.
    pub unit: &'static str,
    /// Which records it is computed from.
    pub scope: Scope,
    /// Whose kernel lines (client, server) or records (client) it reads.
    pub side: &'static str,
    /// What one sample is ("request", "token gap", "exchange", ...); rates have one per run.
    pub per: &'static str,
    /// How one sample is computed.
    pub formula: &'static str,
}

const fn m(
    name: &'static str,
    unit: &'static str,
    scope: Scope,
    side: &'static str,
    per: &'static str,
    formula: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        unit,
        scope,
        side,
        per,
        formula,
    }
}

use Scope::{Client, Energy, Kernel, Rate, Trace};

const C: &str = "client";
const S: &str = "server";

/// Every figure, in report order within each scope.
pub const CATALOGUE: &[MetricDef] = &[
    m(
        "ttft_ms",
        "ms",
        Client,
        C,
        "successful request",
        "first chunk with non-empty (or reasoning) content - actual send time",
    ),
    m(
        "e2e_ms",
        "ms",
        Client,
        C,
        "successful request",
        "last content chunk - actual send time",
    ),
    m(
        "scheduled_latency_ms",
        "ms",
        Client,
        C,
        "successful request",
        "last content chunk - intended send time (shows coordinated omission)",
    ),
    m(
        "dispatch_lag_ms",
        "ms",
        Client,
        C,
        "request sent",
        "actual send time - intended send time",
    ),
    m(
        "tpot_ms",
        "ms",
        Client,
        C,
        "successful request with >= 2 output tokens",
        "(e2e - ttft) / (output_tokens - 1), for output_tokens >= 2",
    ),
    m(
        "itl_ms",
        "ms",
        Client,
        C,
        "token gap",
        "gaps between content tokens; a chunk of k tokens gives k equal gaps of its interval",
    ),
    m(
        "icl_ms",
        "ms",
        Client,
        C,
        "chunk gap",
        "gaps between consecutive content chunks",
    ),
    m(
        "output_tokens",
        "tokens",
        Client,
        C,
        "successful request",
        "server usage (completion_tokens / eval_count), else local count",
    ),
    m(
        "input_tokens",
        "tokens",
        Client,
        C,
        "successful request",
        "server usage (prompt_tokens / prompt_eval_count), else local estimate",
    ),
    m(
        "ttft_sock_ms",
        "ms",
        Client,
        C,
        "successful request whose first content chunk ended its read (--socket-arrivals)",
        "arrival at the client socket (SO_TIMESTAMPING receive stamp) of the last segment of \
         the read that ended with the first content chunk - actual send time",
    ),
    m(
        "ttft_sock_late_ms",
        "ms",
        Client,
        C,
        "successful request whose first content chunk ended its read (--socket-arrivals)",
        "ttft_ms - ttft_sock_ms: how long after reaching the socket the client saw its first \
         token (its own TTFT error, measured without tbd)",
    ),
    m(
        "itl_sock_ms",
        "ms",
        Client,
        C,
        "token gap after the first chunk that ended its read (--socket-arrivals)",
        "between consecutive chunks that each ended their read, the difference of their \
         reads' socket arrivals split evenly over the tokens in between (a read's stamp is \
         its last segment's, so it places only the read's last chunk)",
    ),
    m(
        "request_throughput",
        "req/s",
        Rate,
        C,
        "run",
        "successful requests / (last response - first send)",
    ),
    m(
        "output_token_throughput",
        "tokens/s",
        Rate,
        C,
        "run",
        "output tokens of successful requests / (last response - first send)",
    ),
    m(
        "goodput",
        "req/s",
        Rate,
        C,
        "run",
        "requests meeting every SLO / (last response - first send)",
    ),
    m(
        "client_send_lag_ms",
        "ms",
        Kernel,
        C,
        "request",
        "kernel client first request write - client t_sent",
    ),
    m(
        "client_read_lag_ms",
        "ms",
        Kernel,
        C,
        "request",
        "client first-token stamp - kernel client read that carried it",
    ),
    m(
        "network_ms",
        "ms",
        Kernel,
        C,
        "request seen on both sides",
        "kernel client first response read - kernel server first response write",
    ),
    m(
        "ttft_arrival_ms",
        "ms",
        Kernel,
        C,
        "request whose response arrivals tbd saw whole",
        "arrival at the client socket (cgroup_skb ingress) of the last byte of the read carrying the \
         first token - client t_sent",
    ),
    m(
        "ttft_late_ms",
        "ms",
        Kernel,
        C,
        "request whose response arrivals tbd saw whole",
        "client ttft_ms - ttft_arrival_ms: how long after reaching the socket the client saw \
         its first token (the client's own TTFT error)",
    ),
    m(
        "itl_arrival_ms",
        "ms",
        Kernel,
        C,
        "token gap of a request whose response arrivals tbd saw whole",
        "itl_ms with each content chunk at the arrival of the last byte of the read carrying it",
    ),
    m(
        "server_ttft_ms",
        "ms",
        Kernel,
        S,
        "request seen on both sides",
        "kernel server write carrying the first token - kernel server last request read",
    ),
    m(
        "kernel_ttfb_ms",
        "ms",
        Kernel,
        C,
        "request",
        "kernel client first response read - kernel client first request write",
    ),
    m(
        "server_chunk_gap_ms",
        "ms",
        Kernel,
        S,
        "server write gap",
        "gaps between the server's response writes (as it emitted them)",
    ),
    m(
        "read_delay_ms",
        "ms",
        Trace,
        C,
        "client read whose exchange's arrivals tbd saw whole",
        "read exit - arrival (cgroup_skb ingress) of the oldest byte it returned: how long data waited \
         in the client's socket",
    ),
    m(
        "server_read_delay_ms",
        "ms",
        Trace,
        S,
        "request whose arrivals tbd saw whole",
        "the server's first request read - arrival of the request's first byte",
    ),
    m(
        "connect_ms",
        "ms",
        Trace,
        C,
        "new connection",
        "conn.connect_ns: connect() to established, per new connection",
    ),
    m(
        "exchanges_per_conn",
        "exchanges",
        Trace,
        C,
        "connection",
        "client exchanges per connection id",
    ),
    m(
        "dns_ms",
        "ms",
        Trace,
        C,
        "lookup",
        "dns.t_end_ns - dns.t_start_ns, per lookup before a new connection",
    ),
    m(
        "request_send_ms",
        "ms",
        Trace,
        C,
        "exchange",
        "t_request_last - t_request_first",
    ),
    m(
        "ttfb_ms",
        "ms",
        Trace,
        C,
        "exchange",
        "t_response_first - t_request_first",
    ),
    m(
        "ttlb_ms",
        "ms",
        Trace,
        C,
        "exchange",
        "t_response_last - t_request_first",
    ),
    m(
        "transfer_ratio",
        "ratio",
        Trace,
        C,
        "exchange",
        "(TTLB - TTFB) / TTFB: streaming time over waiting time",
    ),
    m(
        "chunks_per_request",
        "reads",
        Trace,
        C,
        "exchange",
        "len(chunks): response reads that moved data",
    ),
    m(
        "icl_ms",
        "ms",
        Trace,
        C,
        "read gap",
        "gaps between consecutive response reads, from the read carrying the first token \
         (from the first read without a client record)",
    ),
    m(
        "chunk_bytes",
        "bytes",
        Trace,
        C,
        "read",
        "bytes moved by each response read",
    ),
    m(
        "request_bytes",
        "bytes",
        Trace,
        C,
        "exchange",
        "request_bytes per exchange",
    ),
    m(
        "response_bytes",
        "bytes",
        Trace,
        C,
        "exchange",
        "response_bytes per exchange",
    ),
    m(
        "bytes_per_token",
        "bytes/token",
        Trace,
        C,
        "exchange with a client record",
        "response_bytes / output_tokens of the client record",
    ),
    m(
        "tokens_per_chunk",
        "tokens/read",
        Trace,
        C,
        "exchange with a client record",
        "output_tokens of the client record / len(chunks)",
    ),
    m(
        "server_first_write_ms",
        "ms",
        Trace,
        S,
        "server exchange",
        "server t_response_first - t_request_last",
    ),
    m(
        "server_ttft_ms",
        "ms",
        Trace,
        S,
        "server exchange",
        "kernel.jsonl server_ttft_ms: server write carrying the first token - server t_request_last",
    ),
    m(
        "server_write_gap_ms",
        "ms",
        Trace,
        S,
        "server write gap",
        "gaps between consecutive server response writes, from the write carrying the first \
         token (from the first write without a client record)",
    ),
    m(
        "energy_j",
        "J",
        Energy,
        "host",
        "run",
        "sum over in_total domains of E(last response) - E(first send); E is the cumulative \
         counter, interpolated between its updates",
    ),
    m(
        "avg_power_w",
        "W",
        Energy,
        "host",
        "run",
        "energy_j / window (first send to last response)",
    ),
    m(
        "peak_power_w",
        "W",
        Energy,
        "host",
        "run",
        "highest host-total energy / time between consecutive counter updates in the window",
    ),
    m(
        "j_per_output_token",
        "J/token",
        Energy,
        "host",
        "run",
        "energy_j / output tokens of successful measured requests",
    ),
    m(
        "j_per_token",
        "J/token",
        Energy,
        "host",
        "run",
        "energy_j / (input + output tokens) of successful measured requests",
    ),
    m(
        "output_tokens_per_j",
        "tokens/J",
        Energy,
        "host",
        "run",
        "output tokens of successful measured requests / energy_j",
    ),
    m(
        "request_energy_j",
        "J",
        Energy,
        "host",
        "successful request",
        "sum over update intervals of interval energy x the request's tokens emitted in it / all \
         active requests' tokens in it (the first token spread over send..first token)",
    ),
    m(
        "prefill_energy_j",
        "J",
        Energy,
        "host",
        "successful request",
        "request_energy_j's share from its first token, spread over send..first token",
    ),
    m(
        "decode_energy_j",
        "J",
        Energy,
        "host",
        "successful request",
        "request_energy_j's share from the tokens after the first, at their chunks' arrival",
    ),
    m(
        "unattributed_energy_j",
        "J",
        Energy,
        "host",
        "run",
        "energy of update intervals in the window with no request active",
    ),
    m(
        "idle_power_w",
        "W",
        Energy,
        "host",
        "run",
        "average host-total power over --idle-baseline before the run, no load",
    ),
    m(
        "energy_above_idle_j",
        "J",
        Energy,
        "host",
        "run",
        "energy_j - idle_power_w x window",
    ),
];

/// The figures of one scope, in catalogue order.
pub fn of(scope: Scope) -> impl Iterator<Item = &'static MetricDef> {
    CATALOGUE.iter().filter(move |d| d.scope == scope)
}

/// The figure `name` of `scope`.
pub fn get(scope: Scope, name: &str) -> Option<&'static MetricDef> {
    of(scope).find(|d| d.name == name)
}

/// The figure `name` of `scope`, for names the code itself uses: a missing one is a bug.
pub fn def(scope: Scope, name: &str) -> &'static MetricDef {
    get(scope, name).unwrap_or_else(|| panic!("{name} is not in the {scope:?} catalogue"))
}

/// Every scope's figures as `--help` text: name, unit, formula.
pub fn help(scope: Scope, title: &str) -> String {
    let mut s = format!("{title}\n");
    for d in of(scope) {
        s.push_str(&format!("  {:<24} {:<12} {}\n", d.name, d.unit, d.formula));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_within_a_scope_and_every_figure_has_a_formula() {
        for (i, a) in CATALOGUE.iter().enumerate() {
            assert!(!a.formula.is_empty() && !a.unit.is_empty(), "{}", a.name);
            for b in &CATALOGUE[i + 1..] {
                assert!(
                    a.scope != b.scope || a.name != b.name,
                    "{} twice in {:?}",
                    a.name,
                    a.scope
                );
            }
        }
        assert_eq!(def(Scope::Client, "ttft_ms").unit, "ms");
        assert!(get(Scope::Client, "connect_ms").is_none());
    }
}
