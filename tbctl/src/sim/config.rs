//! serve-sim's settings: the `tbctl serve-sim` flags and the configuration the server runs with.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::workload::duration::parse_duration;

/// Output tokens when neither the flags nor the request say how many.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 32;

/// Flags of `tbctl serve-sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Port to listen on; 0 picks a free one (see --port-file).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on. Loopback by default: the simulator has no authentication.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Model name served; requests naming another model get 404.
    #[arg(long, default_value = "sim-model")]
    pub model: String,
    /// Time to first token, from the request fully read (e.g. 40ms, 0 for none).
    #[arg(long, default_value = "40ms", value_parser = parse_duration)]
    pub ttft: Duration,
    /// Inter-token latency (e.g. 8ms, 250us, 0 for none).
    #[arg(long, default_value = "8ms", value_parser = parse_duration)]
    pub itl: Duration,
    /// Relative jitter j: each delay d is drawn uniformly from [d*(1-j), d*(1+j)]; 0 <= j <= 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_unit_fraction)]
    pub jitter: f64,
    /// Tokens carried by each streamed content chunk (the last one may carry fewer).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub tokens_per_chunk: u32,
    /// Output tokens per response. Default: the request's max_tokens (or num_predict), else 32.
    /// A request asking for fewer gets fewer.
    #[arg(long)]
    pub output_tokens: Option<u32>,
    /// Fraction of generation requests answered with HTTP 500 (drawn from --seed).
    #[arg(long, default_value_t = 0.0, value_parser = parse_unit_fraction)]
    pub error_rate: f64,
    /// Leave out the role-only first chunk of OpenAI chat streams.
    #[arg(long)]
    pub no_prelude: bool,
    /// Send no usage in streams, even when asked (as some servers do): clients must count
    /// the tokens themselves.
    #[arg(long)]
    pub no_usage: bool,
    /// Seed of the jitter and error draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the ground truth (one JSON line per request, CLOCK_MONOTONIC ns) to this file.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Write the bound port to this file once listening (for use with --port 0).
    #[arg(long)]
    pub port_file: Option<PathBuf>,
    /// Generations served at once, like a server's batch slots: later requests wait in a queue
    /// and their TTFT counts the wait, so load past capacity saturates it. Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: Option<u32>,
}

impl SimArgs {
    /// The server configuration these flags describe (address and port file are `run`'s business).
    pub fn config(&self) -> SimConfig {
        SimConfig {
            model: self.model.clone(),
            ttft: self.ttft,
            itl: self.itl,
            jitter: self.jitter,
            tokens_per_chunk: self.tokens_per_chunk,
            output_tokens: self.output_tokens,
            error_rate: self.error_rate,
            prelude: !self.no_prelude,
            usage: !self.no_usage,
            seed: self.seed,
            truth: self.truth.clone(),
            slots: self.slots,
        }
    }
}

/// How the simulated server answers. `Default` matches the flags' defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The one model served.
    pub model: String,
    /// Time to first token, from the request fully read.
    pub ttft: Duration,
    /// Inter-token latency.
    pub itl: Duration,
    /// Relative jitter of every delay, in [0, 1].
    pub jitter: f64,
    /// Tokens per streamed content chunk, at least 1.
    pub tokens_per_chunk: u32,
    /// Fixed output length; a request's smaller max_tokens still wins.
    pub output_tokens: Option<u32>,
    /// Fraction of generation requests answered with HTTP 500.
    pub error_rate: f64,
    /// Send the role-only first chunk in OpenAI chat streams.
    pub prelude: bool,
    /// Send usage in streams when the request asks for it.
    pub usage: bool,
    /// Seed of the jitter and error draws.
    pub seed: u64,
    /// Ground-truth JSONL file, if wanted.
    pub truth: Option<PathBuf>,
    /// Generations served at once; None for no limit.
    pub slots: Option<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "sim-model".to_string(),
            ttft: Duration::from_millis(40),
            itl: Duration::from_millis(8),
            jitter: 0.5,
            tokens_per_chunk: 1,
            output_tokens: None,
            error_rate: 0.0,
            prelude: true,
            usage: true,
            seed: 0,
            truth: None,
            slots: None,
        }
    }
}

impl SimConfig {
    /// Whether any delay is configured. Without one the server never touches a timer, which is
    /// what capacity benchmarks need.
    pub fn paced(&self) -> bool {
        !self.ttft.is_zero() || !self.itl.is_zero()
    }

    /// Output tokens for a request that asked for `requested` (max_tokens, num_predict).
    pub fn output_tokens_for(&self, requested: Option<u32>) -> u32 {
        match (self.output_tokens, requested) {
            (Some(fixed), Some(asked)) => fixed.min(asked),
            (Some(fixed), None) => fixed,
            (None, Some(asked)) => asked,
            (None, None) => DEFAULT_OUTPUT_TOKENS,
        }
    }
}

/// Parses a number in [0, 1] (jitter, error rate).
fn parse_unit_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid number '{s}': expected a value between 0 and 1"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "'{s}' is out of range: expected a value between 0 and 1"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        // The one parser of the command line: a bare number is seconds.
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }

    #[test]
    fn defaults_match_config_default() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.sim.config(), SimConfig::default());
        assert_eq!(cli.sim.host.to_string(), "127.0.0.1");
        assert_eq!(cli.sim.port, 0);
    }

    #[test]
    fn flags() {
        let cli = Cli::parse_from([
            "x",
            "--ttft",
            "0",
            "--itl",
            "250us",
            "--jitter",
            "0",
            "--tokens-per-chunk",
            "4",
            "--output-tokens",
            "16",
            "--error-rate",
            "0.25",
            "--no-prelude",
            "--seed",
            "7",
            "--truth",
            "t.jsonl",
        ]);
        let cfg = cli.sim.config();
        assert_eq!(cfg.ttft, Duration::ZERO);
        assert_eq!(cfg.itl, Duration::from_micros(250));
        assert_eq!(cfg.tokens_per_chunk, 4);
        assert_eq!(cfg.output_tokens, Some(16));
        assert_eq!(cfg.error_rate, 0.25);
        assert!(!cfg.prelude);
        assert_eq!(cfg.seed, 7);
        assert!(cfg.paced());
        assert!(Cli::try_parse_from(["x", "--jitter", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["x", "--tokens-per-chunk", "0"]).is_err());
    }

    #[test]
    fn output_tokens_smaller_wins() {
        let mut cfg = SimConfig::default();
        assert_eq!(cfg.output_tokens_for(None), DEFAULT_OUTPUT_TOKENS);
        assert_eq!(cfg.output_tokens_for(Some(100)), 100);
        cfg.output_tokens = Some(16);
        assert_eq!(cfg.output_tokens_for(None), 16);
        assert_eq!(cfg.output_tokens_for(Some(8)), 8);
        assert_eq!(cfg.output_tokens_for(Some(100)), 16);
    }
}
