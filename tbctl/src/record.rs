//! The request record of DESIGN.md: one line of requests.jsonl per request, written as it
//! completes. Times are CLOCK_MONOTONIC ns; a time that did not happen is None (null).

use serde::{Deserialize, Serialize};

/// Where a record's output-token count came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// The server's `usage` (OpenAI `completion_tokens`, Ollama `eval_count`).
    Usage,
    /// A tokenizer run on the output text.
    Tokenizer,
    /// Counted from the streamed chunks (local estimate per chunk).
    Chunks,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Could not connect or send.
    Connect,
    /// The per-request timeout passed.
    Timeout,
    /// The server answered with a non-2xx status.
    Http,
    /// The stream ended before the server said it was done.
    StreamCut,
    /// The response could not be parsed.
    Malformed,
}

impl ErrorClass {
    /// The name used in records and summaries.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Http => "http",
            ErrorClass::StreamCut => "stream_cut",
            ErrorClass::Malformed => "malformed",
        }
    }
}

/// One request as the client measured it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    pub request_id: u64,
    pub t_intended_ns: u64,
    pub t_sent_ns: Option<u64>,
    pub t_first_byte_ns: Option<u64>,
    pub t_first_token_ns: Option<u64>,
    pub t_last_token_ns: Option<u64>,
    pub t_end_ns: Option<u64>,
    /// Every content chunk as it arrived: [t_ns, tokens].
    pub chunks: Vec<[u64; 2]>,
    /// With `--socket-arrivals`: for each content chunk, when the last segment of the read
    /// that carried it reached the client's socket (kernel receive stamp, monotonic ns).
    /// Empty otherwise, or when any read of the response came without a stamp.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_arrivals_ns: Vec<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub token_source: Option<TokenSource>,
    pub http_status: Option<u16>,
    pub success: bool,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub dispatch_lag_ms: Option<f64>,
    /// Portable fields (Unix seconds), for tools that read other benchmarks' formats.
    pub timestamp_start: Option<f64>,
    pub timestamp_end: Option<f64>,
    pub latency_s: Option<f64>,
    pub service_type: String,
    pub model: String,
    /// True for warm-up requests, which are excluded from results.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warmup: bool,
    /// Times the request was sent again on a new connection because its kept-alive one had
    /// closed before any response byte (at most 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

const MS: f64 = 1e6;

impl RequestRecord {
    /// Fills the derived fields (ttft_ms, e2e_ms, tpot_ms, dispatch_lag_ms, portable fields)
    /// from the raw times, by the formulas of DESIGN.md. `mono_to_unix_ns` maps a monotonic
    /// time to Unix ns (the run's clock pair).
    pub fn derive(&mut self, mono_to_unix_ns: impl Fn(u64) -> u64) {
        let sent = self.t_sent_ns;
        self.dispatch_lag_ms = sent.map(|s| s.saturating_sub(self.t_intended_ns) as f64 / MS);
        self.ttft_ms = match (sent, self.t_first_token_ns) {
            (Some(s), Some(f)) => Some(f.saturating_sub(s) as f64 / MS),
            _ => None,
        };
        self.e2e_ms = match (sent, self.t_last_token_ns) {
            (Some(s), Some(l)) if self.success => Some(l.saturating_sub(s) as f64 / MS),
            _ => None,
        };
        self.tpot_ms = match (self.e2e_ms, self.ttft_ms, self.output_tokens) {
            (Some(e), Some(t), Some(n)) if n >= 2 => Some((e - t) / (n - 1) as f64),
            _ => None,
        };
        self.timestamp_start = sent.map(|s| mono_to_unix_ns(s) as f64 / 1e9);
        self.timestamp_end = self.t_end_ns.map(|e| mono_to_unix_ns(e) as f64 / 1e9);
        self.latency_s = match (sent, self.t_end_ns) {
            (Some(s), Some(e)) => Some(e.saturating_sub(s) as f64 / 1e9),
            _ => None,
        };
    }

    /// Per-token gaps (ITL) in ns: a chunk carrying k tokens contributes k gaps that split its
    /// interval from the previous content chunk evenly. The first chunk has no predecessor, so
    /// its tokens beyond the first are not gaps with a known start and are skipped.
    pub fn token_gaps_ns(&self) -> impl Iterator<Item = f64> + '_ {
        self.token_gaps_at_ns().map(|(_, g)| g)
    }

    /// The ITL gaps of [`Self::token_gaps_ns`], each with the arrival time of the chunk that
    /// ended it (for plots over time).
    pub fn token_gaps_at_ns(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.chunks.windows(2).flat_map(|w| {
            let dt = w[1][0].saturating_sub(w[0][0]) as f64;
            let k = w[1][1].max(1);
            std::iter::repeat_n((w[1][0], dt / k as f64), k as usize)
        })
    }

    /// ITL at socket arrival, from exact arrivals only (see [`Self::socket_exact`]): between
    /// two consecutive exactly placed chunks, the interval split evenly over the tokens after
    /// the first up to the second. Tokens before the first exact chunk have no gap.
    pub fn socket_token_gaps_ns(&self) -> impl Iterator<Item = f64> + '_ {
        let arrivals = self.socket_arrivals().unwrap_or_default();
        // Consecutive exact chunks (a, b), in one pass.
        let pairs = (0..arrivals.len())
            .filter(|&i| self.socket_exact(i))
            .scan(None, |prev: &mut Option<usize>, b| {
                Some(prev.replace(b).map(|a| (a, b)))
            })
            .flatten();
        pairs.flat_map(move |(a, b)| {
            let k: u64 = self.chunks[a + 1..=b].iter().map(|c| c[1].max(1)).sum();
            let dt = arrivals[b].saturating_sub(arrivals[a]) as f64;
            std::iter::repeat_n(dt / k as f64, k as usize)
        })
    }

    /// TTFT at socket arrival in ms, when the first content chunk's arrival is exact.
    pub fn socket_ttft_ms(&self) -> Option<f64> {
        let first = *self.socket_arrivals()?.first()?;
        let sent = self.t_sent_ns?;
        self.socket_exact(0)
            .then(|| first.saturating_sub(sent) as f64 / MS)
    }

    /// Each content chunk's socket arrival, when every chunk has one.
    pub fn socket_arrivals(&self) -> Option<&[u64]> {
        (!self.chunks.is_empty() && self.chunk_arrivals_ns.len() == self.chunks.len())
            .then_some(&self.chunk_arrivals_ns[..])
    }

    /// Whether chunk `i`'s socket arrival is its own: a read's stamp is its last segment's, so
    /// it places only the last chunk the read delivered. Chunks of one read share its read
    /// time; any but the last of them would be given a later chunk's arrival.
    pub fn socket_exact(&self, i: usize) -> bool {
        self.chunks
            .get(i + 1)
            .is_none_or(|next| next[0] != self.chunks[i][0])
    }

    /// Gaps between consecutive content chunks (ICL) in ns.
    pub fn chunk_gaps_ns(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks
            .windows(2)
            .map(|w| w[1][0].saturating_sub(w[0][0]))
    }
}

/// First line of requests.jsonl: what the run was.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    pub run_id: String,
    pub target: String,
    pub model: String,
    pub api: String,
    pub tool: String,
    pub tool_version: String,
    /// The (CLOCK_MONOTONIC ns, Unix ns) pair taken at run start.
    pub clock_mono_ns: u64,
    pub clock_unix_ns: u64,
}

#[cfg(test)]
impl RunMeta {
    /// A run's metadata for tests: id `run_id`, clocks at zero.
    pub(crate) fn fixture(run_id: &str) -> Self {
        RunMeta {
            run_id: run_id.into(),
            target: "http://127.0.0.1:1".into(),
            model: "m".into(),
            api: "openai-chat".into(),
            tool: "tbctl".into(),
            tool_version: "0".into(),
            clock_mono_ns: 0,
            clock_unix_ns: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> RequestRecord {
        RequestRecord {
            t_intended_ns: 1_000_000,
            t_sent_ns: Some(2_000_000),
            t_first_token_ns: Some(12_000_000),
            t_last_token_ns: Some(42_000_000),
            t_end_ns: Some(43_000_000),
            chunks: vec![[12_000_000, 1], [22_000_000, 1], [42_000_000, 2]],
            output_tokens: Some(4),
            success: true,
            ..Default::default()
        }
    }

    #[test]
    fn derived_metrics_follow_the_design_formulas() {
        let mut r = rec();
        r.derive(|m| m + 1_000_000_000);
        assert_eq!(r.ttft_ms, Some(10.0));
        assert_eq!(r.e2e_ms, Some(40.0));
        assert_eq!(r.tpot_ms, Some(10.0)); // (40 - 10) / (4 - 1)
        assert_eq!(r.dispatch_lag_ms, Some(1.0));
        assert_eq!(r.latency_s, Some(0.041));
    }

    #[test]
    fn multi_token_chunk_splits_its_interval() {
        let gaps: Vec<f64> = rec().token_gaps_ns().collect();
        assert_eq!(gaps, vec![10e6, 10e6, 10e6]);
        let icl: Vec<u64> = rec().chunk_gaps_ns().collect();
        assert_eq!(icl, vec![10_000_000, 20_000_000]);
    }

    #[test]
    fn tpot_needs_two_tokens_and_failed_requests_have_no_e2e() {
        let mut r = rec();
        r.output_tokens = Some(1);
        r.derive(|m| m);
        assert_eq!(r.tpot_ms, None);
        let mut f = rec();
        f.success = false;
        f.derive(|m| m);
        assert_eq!(f.e2e_ms, None);
    }
}
