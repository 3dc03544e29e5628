//! tbd's command line and daemon start-up.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use tb_proto::v1::tbd_server::TbdServer;

use crate::{
    capture::Engine,
    http,
    probes::{Probes, StatsMode},
    sensors::{
        sampler::{Sampler, SamplerConfig},
        SensorConfig,
    },
    server::Service,
    socket,
    store::Store,
};

/// The API socket's default path.
pub const DEFAULT_SOCKET: &str = "/run/tbd/tbd.sock";

/// TrafficBench daemon: times inference traffic at the socket with eBPF, stores it in sled
/// and serves it over gRPC on a unix socket. Runs as root.
#[derive(Parser, Debug)]
#[command(name = "tbd", version = None, disable_version_flag = true)]
pub struct Args {
    /// Print the version and the size of the embedded eBPF object, then exit.
    #[arg(short = 'V', long)]
    pub version: bool,
    /// The gRPC API's unix socket (mode 0660, group --socket-group).
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Group allowed to use the socket.
    #[arg(long, default_value = "tbd")]
    pub socket_group: String,
    /// Where the sled store lives.
    #[arg(long, default_value = "/var/lib/tbd")]
    pub data_dir: PathBuf,
    /// Loopback address for /healthz and /metrics; `off` disables it.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub http: String,
    /// Delete finished runs older than this (e.g. 7d, 12h, 30m).
    #[arg(long, default_value = "30d", value_parser = parse_age)]
    pub retention_age: Duration,
    /// Delete the oldest finished runs while the runs' stored records take more than this many
    /// MiB (sled's files run larger until it reclaims deleted space).
    #[arg(long, default_value_t = 4096)]
    pub retention_mib: u64,
    /// When the kernel keeps BPF run-time statistics (probe cost per run): they add two clock
    /// reads to every probe run, so by default only a sample of each capture pays for them.
    #[arg(long, value_enum, default_value_t = StatsMode::Sampled)]
    pub bpf_stats: StatsMode,
    /// Sockets the kernel can track at once (a power of two): client and server sides of every
    /// connection open during a capture. Each takes 856 bytes of kernel memory, allocated when
    /// tbd starts; a socket past a full bucket of 8 is counted lost (`sockets_full`).
    #[arg(long, default_value_t = tbd_common::SOCK_SLOTS, value_parser = parse_max_sockets)]
    pub max_sockets: u32,
    /// Processes a capture can follow through forks at once (tracked clients' children, and
    /// listener holders' children, each); one past it is counted lost (`pids_full`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pids: u32,
    /// Threads that can be inside connect(2), accept(2) or getaddrinfo at once (each); one
    /// past it is counted lost (`inflight_full`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: u32,
    /// Leave chunk arrival out (the cgroup_skb ingress program, one run per segment reaching
    /// the host) for the lowest capture cost; kernel.jsonl then has no arrivals, and tbctl no
    /// figures at arrival.
    #[arg(long)]
    pub no_arrivals: bool,
    /// Also write every ring-buffer record to this file (truncated at start), for replaying
    /// into the tracker and store offline (`cargo xtask bench replay`). Costs a write per
    /// drain and disk space: about 0.8 KB per streamed request of 16 chunks, both sides.
    #[arg(long)]
    pub record_events: Option<PathBuf>,
    /// Give sled's memory back (close and reopen the store) after this many MiB of stored
    /// (compressed) records were written or read, and whenever the store has been idle for 2 s.
    /// Fractions are allowed (0.1 is about 100 KiB).
    #[arg(long, default_value_t = 32.0, value_parser = parse_mib)]
    pub store_release_mib: f64,
    /// Energy sampling interval while no capture runs (e.g. 100ms, 1s).
    #[arg(long, default_value = "100ms", value_parser = parse_interval)]
    pub energy_interval: Duration,
    /// Energy sampling interval while a capture runs.
    #[arg(long, default_value = "20ms", value_parser = parse_interval)]
    pub energy_capture_interval: Duration,
    /// Delete the host's energy samples older than this (e.g. 1d, 12h); runs keep theirs in
    /// their run directory's energy.jsonl.
    #[arg(long, default_value = "1d", value_parser = parse_age)]
    pub energy_retention: Duration,
    /// List the energy sensors (present, or absent and why) and exit.
    #[arg(long)]
    pub list_sensors: bool,
    /// Take `/sys` paths (powercap, the perf power PMU, amdgpu hwmon) under this root: for
    /// fixture trees in tests.
    #[arg(long, default_value = "/", hide = true)]
    pub sysfs_root: PathBuf,
    /// Read GPUs from this JSON fixture instead of NVML: for tests on hosts without a GPU.
    #[arg(long, hide = true)]
    pub gpu_fixture: Option<PathBuf>,
}

/// Parses an interval: `100ms`, `20ms`, `1s` (1 ms to 60 s).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad interval '{s}': use e.g. 100ms, 20ms or 1s (1ms to 60s)");
    let (num, ms) = match s.strip_suffix("ms") {
        Some(n) => (n, true),
        None => (s.strip_suffix('s').ok_or_else(bad)?, false),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = if ms {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n)
    };
    if d < Duration::from_millis(1) || d > Duration::from_secs(60) {
        return Err(bad());
    }
    Ok(d)
}

impl Args {
    fn sensor_config(&self) -> SensorConfig {
        SensorConfig {
            sysfs_root: self.sysfs_root.clone(),
            gpu_fixture: self.gpu_fixture.clone(),
        }
    }
}

/// Parses `--store-release-mib`: a positive number of MiB.
fn parse_mib(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "'{s}' is not a positive number of MiB, e.g. 32 or 0.5"
        )),
    }
}

/// Parses `--max-sockets`: a power of two the socket table can take.
fn parse_max_sockets(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of sockets, e.g. 16384"))?;
    crate::probes::check_sock_slots(n)?;
    Ok(n)
}

/// Parses `30d`, `12h`, `30m`, `90s`.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad age '{s}': use e.g. 30d, 12h, 30m, 90s"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("bad age '{s}': use e.g. 30d, 12h, 30m, 90s")),
    };
    Ok(Duration::from_secs(n * secs))
}

/// Entry point of the `tbd` binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if args.version {
        println!("{}", crate::version_line());
        return ExitCode::SUCCESS;
    }
    if args.list_sensors {
        for s in crate::sensors::discover(&args.sensor_config()).info {
            let state = if s.present { "present" } else { "absent" };
            println!("{} {state}: {}", s.name, s.reason);
            for d in &s.domains {
                let total = if d.in_total {
                    "in total"
                } else {
                    "inside another domain"
                };
                println!("  {} ({}, {total}): {}", d.name, d.device, d.method);
            }
        }
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    crate::heap::use_one_arena();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the probes, opens the store, and serves until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let http_addr: Option<SocketAddr> = match args.http.as_str() {
        "off" => None,
        a => {
            let addr: SocketAddr = a
                .parse()
                .map_err(|_| anyhow::anyhow!("--http {a}: not an address like 127.0.0.1:9464"))?;
            http::check_loopback(&addr).map_err(anyhow::Error::msg)?;
            Some(addr)
        }
    };
    let store = Arc::new(Store::open(&args.data_dir)?.releasing(
        (args.store_release_mib * f64::from(1u32 << 20)) as u64,
        crate::store::RELEASE_WHEN_IDLE,
    ));
    for run in crate::recover::close_interrupted(&store)? {
        tracing::warn!(
            "run {} was left capturing by a tbd that stopped: closed as interrupted with {} \
             exchanges",
            run.run_id,
            run.exchanges
        );
    }
    let only = if args.no_arrivals {
        crate::probes::programs_except(crate::probes::ARRIVAL_PROGRAMS)
    } else {
        Vec::new()
    };
    let probes = Probes::load_with(
        &only,
        crate::probes::Limits {
            sockets: args.max_sockets,
            pids: args.max_pids,
            inflight: args.max_inflight,
        },
    )?;
    let log = match &args.record_events {
        Some(p) => Some(
            crate::replay::EventLog::create(p)
                .map_err(|e| anyhow::anyhow!("--record-events {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let engine = Engine::start(probes, store.clone(), args.bpf_stats, log)?;
    let found = crate::sensors::discover(&args.sensor_config());
    for s in &found.info {
        if s.present {
            tracing::info!("energy sensor {}: {}", s.name, s.reason);
        } else {
            tracing::info!("energy sensor {} absent: {}", s.name, s.reason);
        }
    }
    let capturing = {
        let e = engine.clone();
        Box::new(move || e.active_run().is_some())
    };
    let sampler = Sampler::start(
        found,
        store.clone(),
        SamplerConfig {
            idle: args.energy_interval,
            capture: args.energy_capture_interval,
            retention: args.energy_retention,
        },
        capturing,
    );
    let listener = socket::bind(&args.socket, &args.socket_group)?;
    tracing::info!(
        "tbd {} serving on {} (data in {})",
        env!("CARGO_PKG_VERSION"),
        args.socket.display(),
        args.data_dir.display()
    );
    if let Some(addr) = http_addr {
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        let app = http::router(engine.clone());
        tokio::spawn(async move { axum::serve(tcp, app).await });
    }
    let retention_store = store.clone();
    let (age, mib) = (args.retention_age, args.retention_mib);
    tokio::spawn(async move {
        loop {
            let s = retention_store.clone();
            let r = tokio::task::spawn_blocking(move || {
                s.enforce_retention(crate::capture::unix_ns(), Some(age), Some(mib << 20))
            })
            .await;
            if let Ok(Ok(gone)) = r {
                if !gone.is_empty() {
                    tracing::info!("retention deleted runs {gone:?}");
                }
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
    let release_store = store.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let s = release_store.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.release_if_due()).await {
                tracing::error!("giving the store's memory back: {e}");
            }
        }
    });
    // Clients built on gRPC's C core send the socket path as :authority, which h2 refuses:
    // every connection's header blocks pass through the fix (crate::authority).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::UnixListenerStream::new(listener),
        |c| c.map(crate::authority::AuthorityFix::new),
    );
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
    };
    tonic::transport::Server::builder()
        .add_service(TbdServer::new(Service::new(
            engine.clone(),
            sampler.clone(),
        )))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    if let Some(run) = engine.active_run() {
        let _ = engine.stop_capture(&run);
    }
    sampler.stop();
    sampler.flush()?;
    store.flush()?;
    let _ = std::fs::remove_file(&args.socket);
    tracing::info!("tbd stopped");
    Ok(())
}
