//! `tbctl profile`: resolve the target, build the workload, run it with kernel capture, write
//! the run directory and print the summary.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context};
use clap::Args;

use crate::{
    api::{discover, flavour::ApiFlavour},
    cli::{output, progress},
    client::{RequestTemplate, Target},
    clock::{mono_ns, unix_ns},
    daemon,
    kernel::{capture::Capture, join},
    profile::{self, dispatch::Plan, worker::RequestSettings, LoadConfig},
    record::RunMeta,
    rundir::{
        self,
        config::{ClockPair, DaemonUse, HostInfo},
        RunConfig, RunData,
    },
    slo::Slo,
    workload::{
        dataset::{Dataset, SpanSize},
        duration::{parse_duration, parse_duration_range, parse_range},
        schedule::{Pattern, Schedule},
        trace::{self, ReplayOptions, TraceFormat},
    },
};

fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// Arguments of `tbctl profile`.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProfileArgs {
    /// The endpoint, e.g. http://127.0.0.1:8080 (OpenAI-compatible or Ollama).
    #[arg(long, required_unless_present = "from")]
    pub url: Option<String>,
    /// Repeat the run in this run directory: every argument it was profiled with, except
    /// --url (give one to send the same workload elsewhere), --out, --json, --label and the
    /// daemon flags, which come from this command line.
    #[arg(long, value_name = "RUN")]
    #[serde(skip)]
    pub from: Option<PathBuf>,
    /// Run the same workload N times, each its own run directory, and report every metric's
    /// 95% confidence interval across the runs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    #[serde(skip, default = "one")]
    pub repeat: u32,
    /// openai-chat | openai-completions | ollama-chat | ollama-generate (detected when absent).
    #[arg(long)]
    pub api: Option<String>,
    /// Model name (the server's first model when absent).
    #[arg(long)]
    pub model: Option<String>,
    /// Bearer token for the endpoint.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Open loop: requests per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Arrival pattern for --rate: uniform, poisson or gamma.
    #[arg(long, default_value = "poisson")]
    pub pattern: String,
    /// Gamma shape: 1 is Poisson, below 1 burstier.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Closed loop: requests in flight; with --rate, a cap on requests in flight.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Ramp the rate linearly FROM..TO requests/s over --duration (or 60s).
    #[arg(long)]
    pub ramp: Option<String>,
    /// Measured requests to send (default 100, or the whole trace).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Stop dispatching after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = dur)]
    pub duration: Option<Duration>,
    /// Warm-up requests sent first and excluded from results.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Seed for prompts and arrivals: the same seed sends byte-identical requests.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Replay a trace: azure-code, azure-conv, or a file (Azure CSV, Mooncake JSONL, BurstGPT CSV, our JSONL).
    #[arg(long)]
    pub trace: Option<String>,
    /// The trace's format when it cannot be told from the file: azure, mooncake, burstgpt, jsonl.
    #[arg(long)]
    pub trace_format: Option<String>,
    /// Multiply the trace's gaps (0.5 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Multiply the trace's request rate.
    #[arg(long, default_value_t = 1.0)]
    pub rate_scale: f64,
    /// Replay only START..END of the trace, e.g. 0s..60s.
    #[arg(long)]
    pub trace_window: Option<String>,
    /// Built-in dataset prompt sizes: small (50-200 tokens), medium (200-500), large (500+), mixed.
    #[arg(long, default_value = "mixed")]
    pub span_size: String,
    /// Also time each chunk at its arrival in the client's socket (kernel receive stamps,
    /// SO_TIMESTAMPING), without tbd: adds ttft_sock_ms, ttft_sock_late_ms and itl_sock_ms.
    #[arg(long)]
    pub socket_arrivals: bool,
    /// Output tokens to ask for (otherwise the dataset or trace decides).
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Ask the server to ignore end-of-sequence so outputs have exactly --max-tokens (vLLM, SGLang, llama.cpp).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Ask for whole (non-streamed) responses.
    #[arg(long)]
    pub no_stream: bool,
    /// Per-request timeout.
    #[arg(long, default_value = "10m", value_parser = dur)]
    pub timeout: Duration,
    /// Service-level objectives for goodput, e.g. ttft=200ms,tpot=50ms,e2e=5s.
    #[arg(long)]
    pub slo: Option<String>,
    /// Where run directories go.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Print summary.json on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Do not use tbd (client-side timing only).
    #[arg(long)]
    pub no_daemon: bool,
    /// tbd's socket (unix:PATH or PATH).
    #[arg(long)]
    pub daemon: Option<String>,
    /// The port the server process listens on, when it differs from the URL's (a container's
    /// port mapping, a local TCP proxy): tbd times that server's side. Default: the URL's port,
    /// when the target is on this host.
    #[arg(long, value_name = "PORT")]
    pub server_port: Option<u16>,
    /// Connections opened before the clock starts in open loop.
    #[arg(long, default_value_t = 16)]
    pub preconnect: usize,
    /// A label stored with the run.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Measure the host's idle power for this long before the load (e.g. 10s), so energy
    /// figures are also given above idle. Needs tbd with an energy sensor.
    #[arg(long, value_parser = dur)]
    pub idle_baseline: Option<Duration>,
}

type Items = Box<dyn Iterator<Item = crate::workload::item::WorkItem> + Send>;
type Arrivals = Box<dyn Iterator<Item = u64> + Send>;

/// Builds what to send and when.
fn plan(a: &ProfileArgs) -> anyhow::Result<(Plan, String)> {
    let mut describe;
    let requests = a.requests.or(if a.trace.is_some() || a.duration.is_some() {
        None
    } else {
        Some(100)
    });
    let schedule = |rate: f64| -> anyhow::Result<Schedule> {
        let pattern = match a.pattern.as_str() {
            "gamma" => Pattern::Gamma {
                burstiness: a.burstiness,
            },
            p => p.parse::<Pattern>().map_err(anyhow::Error::msg)?,
        };
        let mut s = Schedule::new(pattern, rate, a.seed).map_err(anyhow::Error::msg)?;
        if let Some(r) = &a.ramp {
            let (from, to) = parse_range(r).map_err(anyhow::Error::msg)?;
            let over = a.duration.unwrap_or(Duration::from_secs(60));
            s = s.with_ramp(from, to, over).map_err(anyhow::Error::msg)?;
        }
        Ok(s)
    };
    let rate = match (a.rate, &a.ramp) {
        (Some(r), _) => Some(r),
        (None, Some(r)) => Some(parse_range(r).map_err(anyhow::Error::msg)?.1),
        (None, None) => None,
    };
    if let Some(c) = a.concurrency {
        if c == 0 {
            bail!("--concurrency must be at least 1");
        }
    }
    let (items, arrivals): (Items, Option<Arrivals>) = if let Some(spec) = &a.trace {
        let format = a
            .trace_format
            .as_deref()
            .map(|f| f.parse::<TraceFormat>().map_err(anyhow::Error::msg))
            .transpose()?;
        let entries = trace::load(spec, format)?;
        let opts = ReplayOptions {
            time_scale: a.time_scale,
            rate_scale: a.rate_scale,
            window: a
                .trace_window
                .as_deref()
                .map(parse_duration_range)
                .transpose()
                .map_err(anyhow::Error::msg)?,
            max_requests: requests.map(|n| (n + a.warmup) as usize),
        };
        let entries = trace::apply(entries, &opts)?;
        describe = format!("trace {spec}: {} requests", entries.len());
        let items = trace::to_items(&entries, a.seed);
        let arrivals: Arrivals = match rate {
            Some(r) => Box::new(schedule(r)?),
            None if a.concurrency.is_some() => {
                describe
                    .push_str(", closed loop (--concurrency without --rate ignores trace times)");
                return Ok((
                    Plan {
                        items: Box::new(items.into_iter()),
                        arrivals: None,
                        requests,
                        duration: a.duration,
                        warmup: a.warmup,
                    },
                    describe,
                ));
            }
            None => Box::new(
                entries
                    .iter()
                    .map(|e| e.offset_ns)
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
        };
        (Box::new(items.into_iter()), Some(arrivals))
    } else {
        let span: SpanSize = a.span_size.parse().map_err(anyhow::Error::msg)?;
        let mut ds = Dataset::new(a.seed, span);
        describe = format!("dataset ({} prompts, seed {})", a.span_size, a.seed);
        let items = Box::new(std::iter::from_fn(move || Some(ds.next_item())));
        (
            items,
            rate.map(|r| schedule(r).map(|s| Box::new(s) as Arrivals))
                .transpose()?,
        )
    };
    match (rate, a.concurrency) {
        (Some(r), Some(c)) => describe.push_str(&format!(
            ", {} arrivals at {r}/s, at most {c} in flight",
            a.pattern
        )),
        (Some(r), None) => describe.push_str(&format!(", {} arrivals at {r}/s", a.pattern)),
        (None, c) if arrivals.is_none() => {
            describe.push_str(&format!(", closed loop, concurrency {}", c.unwrap_or(1)))
        }
        _ => describe.push_str(", trace arrival times"),
    }
    Ok((
        Plan {
            items,
            arrivals,
            requests,
            duration: a.duration,
            warmup: a.warmup,
        },
        describe,
    ))
}

fn one() -> u32 {
    1
}

/// One finished run: its summary, and whether every request failed (with the line saying so).
pub struct Finished {
    pub dir: PathBuf,
    pub summary: crate::summary::Summary,
    pub all_failed: Option<String>,
}

/// Runs `tbctl profile`: once, `--repeat N` times, or as a repeat of `--from RUN`.
pub async fn run(a: ProfileArgs) -> anyhow::Result<ExitCode> {
    let a = match &a.from {
        Some(dir) => super::profile_from::merge(super::profile_from::load(dir)?, a),
        None => a,
    };
    if a.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let mut runs = Vec::new();
    for i in 0..a.repeat {
        if a.repeat > 1 && !a.json {
            eprintln!("tbctl profile: run {} of {}", i + 1, a.repeat);
        }
        let f = run_once(&a).await?;
        if a.repeat == 1 && a.json {
            println!("{}", serde_json::to_string_pretty(&f.summary)?);
        } else if !a.json {
            output::print_summary(&f.summary);
        }
        if let Some(line) = &f.all_failed {
            eprintln!("tbctl: {line}");
            return Ok(ExitCode::from(1));
        }
        runs.push(f);
    }
    if a.repeat > 1 {
        let r = super::repeat::aggregate(&runs);
        let name = format!("repeat-{}.json", r.runs[0]);
        rundir::write_json(&a.out, &name, &r)?;
        let path = a.out.join(name);
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            super::repeat::print(&r);
            println!("{}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One run of the workload `a` describes.
pub(crate) async fn run_once(a: &ProfileArgs) -> anyhow::Result<Finished> {
    let url = a
        .url
        .as_deref()
        .context("no --url: give the endpoint, or --from RUN")?;
    let target = Target::parse(url)?;
    let slo: Option<Slo> = a
        .slo
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let (plan, describe) = plan(a)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("http client")?;
    let base = format!("http://{}{}", target.authority(), target.base_path);
    let key = a.api_key.as_deref();
    let (flavour, models) = match &a.api {
        Some(name) => {
            let f: ApiFlavour = name
                .parse()
                .map_err(|e: crate::api::flavour::UnknownFlavour| anyhow::anyhow!("{e}"))?;
            let models = match &a.model {
                Some(_) => discover::list_models(&http, &base, f, key).await.ok(),
                None => Some(discover::list_models(&http, &base, f, key).await?),
            };
            (f, models)
        }
        None => {
            let d = discover::detect(&http, &base, key).await?;
            (d.flavour, Some(d.models))
        }
    };
    let model = match (&a.model, &models) {
        (Some(m), Some(list)) if !list.is_empty() && !list.contains(m) => {
            bail!(
                "unknown model '{m}': {} serves {}; pass one of them with --model",
                target.url,
                list.join(", ")
            )
        }
        (Some(m), _) => m.clone(),
        (None, Some(list)) if !list.is_empty() => list[0].clone(),
        _ => bail!("{} lists no models; pass --model", target.url),
    };
    let addr = target.resolve().await?;
    let server_port = a
        .server_port
        .or_else(|| target.is_local(&addr).then_some(target.port));

    let (clock_mono_ns, clock_unix_ns) = (mono_ns(), unix_ns());
    let run_id = rundir::new_run_id(clock_unix_ns);
    let dir = rundir::create(&a.out, &run_id)
        .with_context(|| format!("cannot create {}; pass a writable --out", a.out.display()))?;
    let mut notes = Vec::new();

    let socket = daemon::socket_path(a.daemon.as_deref().unwrap_or(daemon::DEFAULT_SOCKET));
    let (energy, idle_baseline) = if a.no_daemon {
        notes.push("energy absent: --no-daemon".to_string());
        (None, None)
    } else {
        energy_start(&socket, a, &mut notes).await?
    };
    let capture = if a.no_daemon {
        notes.push("kernel timing absent: --no-daemon".to_string());
        None
    } else {
        match Capture::start(&socket, &run_id, &a.label, server_port).await {
            Ok(c) => Some(c),
            Err(e) if a.daemon.is_some() => return Err(e.into()),
            Err(e) => {
                notes.push(format!("kernel timing absent: {e}"));
                None
            }
        }
    };
    if capture.is_some() && server_port.is_none() {
        notes.push("server-side kernel timing absent: the target is not on this host".into());
    }

    let meta = RunMeta {
        run_id: run_id.clone(),
        target: target.url.clone(),
        model: model.clone(),
        api: flavour.name().into(),
        tool: "tbctl".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        clock_mono_ns,
        clock_unix_ns,
    };
    let mut config = RunConfig {
        format: rundir::config::FORMAT,
        run_id: run_id.clone(),
        tool: "tbctl".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("TB_GIT_COMMIT").map(String::from),
        command: std::env::args().collect(),
        target: target.url.clone(),
        api: flavour.name().into(),
        model: model.clone(),
        workload: describe.clone(),
        config: serde_json::to_value(a)?,
        label: a.label.clone(),
        slo: slo.clone().filter(Slo::is_set),
        timeout_s: a.timeout.as_secs_f64(),
        duration_s: a.duration.map(|d| d.as_secs_f64()),
        host: HostInfo::here(),
        clock: ClockPair {
            mono_ns: clock_mono_ns,
            unix_ns: clock_unix_ns,
        },
        daemon: DaemonUse {
            used: capture.is_some(),
            socket: socket.display().to_string(),
            server_port,
        },
        notes: notes.clone(),
        start_unix_ns: clock_unix_ns,
        ..Default::default()
    };
    rundir::write_json(&dir, rundir::RUN_JSON, &config)?;
    if !a.json {
        eprintln!(
            "tbctl profile: {} ({} {}), {describe}",
            target.url,
            flavour.name(),
            model
        );
        eprintln!("run {run_id} -> {}", dir.display());
    }

    let template = RequestTemplate {
        path: format!("{}{}", target.base_path, flavour.path()),
        host_header: target.host_header(),
        authorization: a.api_key.as_ref().map(|k| format!("Bearer {k}")),
        flavour,
        stream: !a.no_stream,
    };
    let expected = plan.requests.map(|n| n + plan.warmup);
    let outcome = profile::run(
        LoadConfig {
            run_dir: dir.clone(),
            meta,
            req: RequestSettings {
                addr,
                template,
                model: model.clone(),
                max_tokens: a.max_tokens,
                ignore_eos: a.ignore_eos,
                timeout: a.timeout,
                socket_arrivals: a.socket_arrivals,
            },
            concurrency: a.concurrency,
            preconnect: a.preconnect,
            grace: a.timeout.min(Duration::from_secs(5)),
            plan,
        },
        progress::reporter(expected, a.json),
    )
    .await?;
    if outcome.interrupted {
        notes.push(format!(
            "interrupted by Ctrl-C after {} requests",
            outcome.records.len()
        ));
    }

    let mut kernel = None;
    if let Some(c) = capture {
        let lapse = c.lapse();
        match c.finish(&outcome.records).await {
            Ok(data) => {
                let measured: Vec<_> = outcome
                    .records
                    .iter()
                    .filter(|r| !r.warmup)
                    .cloned()
                    .collect();
                let joined = join::join(&measured, &data);
                rundir::write_jsonl(&dir.join(rundir::KERNEL), &joined.lines)?;
                config.capture = Some(joined.facts);
                kernel = Some(joined.lines);
            }
            Err(e) => notes.push(match lapse {
                Some(l) => format!(
                    "kernel timing lost: tbd stopped answering {:.1} s into the run ({}); the \
                     client records in requests.jsonl are whole",
                    l.after.as_secs_f64(),
                    l.error
                ),
                None => format!(
                    "kernel timing lost: tbd failed when the run ended ({e}); the client \
                     records in requests.jsonl are whole"
                ),
            }),
        }
    }
    let mut energy_samples = None;
    if let Some(rec) = energy {
        let measured = outcome.records.iter().filter(|r| !r.warmup);
        let from = measured.clone().filter_map(|r| r.t_sent_ns).min();
        let to = measured
            .filter_map(|r| r.t_end_ns.or(r.t_last_token_ns))
            .max();
        match (from, to) {
            (Some(from), Some(to)) if to > from => {
                match rec.finish(from, to, idle_baseline).await {
                    Ok((meta, samples)) => {
                        rundir::write_jsonl(&dir.join(rundir::ENERGY), &samples)?;
                        config.energy = Some(meta);
                        energy_samples = Some(samples);
                    }
                    Err(e) => {
                        notes.push(format!("energy lost: tbd failed when the run ended ({e})"))
                    }
                }
            }
            _ => notes.push("energy absent: no request completed, so the run has no window".into()),
        }
    }
    config.notes = notes;
    config.end_unix_ns = Some(unix_ns());
    rundir::write_json(&dir, rundir::RUN_JSON, &config)?;
    // The same function `tbctl report` re-summarises a run directory with, on the records
    // already in memory.
    let run = RunData {
        dir: dir.clone(),
        config,
        records: outcome.records,
        kernel,
        energy: energy_samples,
    };
    let summary = run.summary();
    rundir::write_json(&dir, rundir::SUMMARY, &summary)?;
    let all_failed = (summary.requests.total > 0 && summary.requests.succeeded == 0).then(|| {
        let top = summary
            .errors_by_class
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, _)| c.as_str())
            .unwrap_or("unknown");
        let example = run
            .records
            .iter()
            .find_map(|r| r.error.clone())
            .unwrap_or_default();
        format!("every request failed ({top}): {example}")
    });
    Ok(Finished {
        dir,
        summary,
        all_failed,
    })
}

/// Asks tbd for its energy sensors and, with `--idle-baseline`, measures idle power first.
/// A tbd without sensors or without an answer is a note, unless `--idle-baseline` needs it.
async fn energy_start(
    socket: &std::path::Path,
    a: &ProfileArgs,
    notes: &mut Vec<String>,
) -> anyhow::Result<(
    Option<crate::energy::collect::Recorder>,
    Option<crate::energy::IdleBaseline>,
)> {
    use crate::energy::collect::{Recorder, Sensors};
    let mut need = |why: String| -> anyhow::Result<()> {
        if a.idle_baseline.is_some() {
            bail!("--idle-baseline needs tbd's energy sensors: {why}");
        }
        notes.push(why);
        Ok(())
    };
    match Recorder::connect(socket).await {
        Ok(Sensors::Present(mut rec)) => {
            let baseline = match a.idle_baseline {
                Some(d) => {
                    if !a.json {
                        eprintln!("measuring idle power for {:.0} s", d.as_secs_f64());
                    }
                    Some(rec.idle_baseline(d).await?)
                }
                None => None,
            };
            Ok((Some(rec), baseline))
        }
        Ok(Sensors::Absent(line)) => need(line).map(|()| (None, None)),
        Err(e) => need(format!("energy absent: {e}")).map(|()| (None, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: ProfileArgs,
    }

    fn args(extra: &[&str]) -> ProfileArgs {
        let mut v = vec!["tbctl", "--url", "http://127.0.0.1:1"];
        v.extend(extra);
        Cli::try_parse_from(v).expect("parses").a
    }

    fn arrivals(extra: &[&str], n: usize) -> Option<Vec<u64>> {
        let (p, _) = plan(&args(extra)).unwrap();
        p.arrivals.map(|a| a.take(n).collect())
    }

    fn schedule(pattern: Pattern, rate: f64, n: usize) -> Vec<u64> {
        Schedule::new(pattern, rate, 42).unwrap().take(n).collect()
    }

    #[test]
    fn rates_and_patterns_become_the_schedule_with_the_seed() {
        assert_eq!(
            arrivals(&["--rate", "20"], 50).unwrap(),
            schedule(Pattern::Poisson, 20.0, 50)
        );
        assert_eq!(
            arrivals(&["--rate", "20", "--pattern", "uniform"], 50).unwrap(),
            schedule(Pattern::Uniform, 20.0, 50)
        );
        assert_eq!(
            arrivals(
                &["--rate", "5", "--pattern", "gamma", "--burstiness", "0.3"],
                50
            )
            .unwrap(),
            schedule(Pattern::Gamma { burstiness: 0.3 }, 5.0, 50)
        );
        let seeded = arrivals(&["--rate", "20", "--seed", "7"], 50).unwrap();
        let want: Vec<u64> = Schedule::new(Pattern::Poisson, 20.0, 7)
            .unwrap()
            .take(50)
            .collect();
        assert_eq!(seeded, want);
        // Closed loop: no arrivals, concurrency decides.
        assert!(arrivals(&["--concurrency", "4"], 5).is_none());
        assert!(arrivals(&[], 5).is_none());
    }

    #[test]
    fn a_ramp_without_a_rate_ramps_to_its_end_over_the_duration() {
        let want = |over: u64| -> Vec<u64> {
            Schedule::new(Pattern::Poisson, 50.0, 42)
                .unwrap()
                .with_ramp(1.0, 50.0, Duration::from_secs(over))
                .unwrap()
                .take(100)
                .collect()
        };
        assert_eq!(arrivals(&["--ramp", "1..50"], 100).unwrap(), want(60));
        assert_eq!(
            arrivals(&["--ramp", "1..50", "--duration", "2m"], 100).unwrap(),
            want(120)
        );
        let (p, describe) = plan(&args(&["--ramp", "1..50", "--duration", "2m"])).unwrap();
        assert_eq!(
            (p.requests, p.duration),
            (None, Some(Duration::from_secs(120)))
        );
        assert!(describe.contains("arrivals at 50/s"), "{describe}");
    }

    #[test]
    fn traces_give_their_times_a_rate_or_a_closed_loop() {
        let window = ["--trace", "azure-conv", "--trace-window", "0s..20s"];
        let (p, _) = plan(&args(&window)).unwrap();
        let entries = trace::apply(
            trace::load("azure-conv", None).unwrap(),
            &ReplayOptions {
                time_scale: 1.0,
                rate_scale: 1.0,
                window: Some((Duration::ZERO, Duration::from_secs(20))),
                max_requests: None,
            },
        )
        .unwrap();
        let times: Vec<u64> = p.arrivals.unwrap().collect();
        assert_eq!(
            times,
            entries.iter().map(|e| e.offset_ns).collect::<Vec<_>>()
        );
        assert_eq!(p.items.count(), entries.len());
        assert_eq!(p.requests, None, "the whole trace");
        // With a rate, the schedule's times and the trace's requests.
        let mut with_rate = window.to_vec();
        with_rate.extend(["--rate", "3"]);
        assert_eq!(
            arrivals(&with_rate, 10).unwrap(),
            schedule(Pattern::Poisson, 3.0, 10)
        );
        // With only a concurrency: a closed loop over the trace's requests.
        let mut closed = window.to_vec();
        closed.extend(["--concurrency", "2"]);
        let (p, describe) = plan(&args(&closed)).unwrap();
        assert!(p.arrivals.is_none());
        assert!(describe.contains("ignores trace times"), "{describe}");
        // --requests bounds the trace, warm-up included.
        let mut bounded = window.to_vec();
        bounded.extend(["--requests", "5", "--warmup", "2"]);
        let (p, _) = plan(&args(&bounded)).unwrap();
        assert_eq!((p.requests, p.warmup), (Some(5), 2));
        assert_eq!(p.items.count(), 7);
    }

    #[test]
    fn bad_values_are_one_clear_line() {
        let err = |extra: &[&str]| plan(&args(extra)).err().expect("refused").to_string();
        assert!(err(&["--rate", "5", "--pattern", "zigzag"]).contains("unknown arrival pattern"));
        assert!(
            err(&["--rate", "5", "--pattern", "gamma", "--burstiness", "0"]).contains("burstiness")
        );
        assert!(!err(&["--ramp", "5"]).is_empty());
        assert!(!err(&["--ramp", "0..0"]).is_empty());
        assert!(err(&["--concurrency", "0"]).contains("--concurrency must be at least 1"));
        assert!(err(&["--span-size", "huge"]).contains("huge"));
        assert!(err(&["--trace", "azure-conv", "--trace-format", "xml"])
            .contains("unknown trace format 'xml'"));
        assert!(!err(&["--trace", "azure-conv", "--trace-window", "10s..1s"]).is_empty());
        for e in [
            err(&["--ramp", "5"]),
            err(&["--trace", "azure-conv", "--trace-window", "1.."]),
        ] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        assert!(
            Cli::try_parse_from(["tbctl"]).is_err(),
            "--url or --from is required"
        );
    }
}
