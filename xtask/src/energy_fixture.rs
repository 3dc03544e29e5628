//! A power meter made of files, for hosts without RAPL or a GPU: a powercap tree and a GPU
//! fixture (tbd's `--sysfs-root` and `--gpu-fixture`) whose counters a thread advances by
//! known power curves, so tbd's real sensors, sampler, store and API read them end to end, and
//! the energy they should report is known.

use tbd_common::clock::mono_ns;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

/// Power as a function of seconds since the fixture started, W.
pub type Curve = Arc<dyn Fn(f64) -> f64 + Send + Sync>;

/// A constant power.
pub fn watts(w: f64) -> Curve {
    Arc::new(move |_| w)
}

/// One powercap zone.
#[derive(Clone)]
pub struct Zone {
    /// Directory under sys/class/powercap, e.g. `intel-rapl:0:1`.
    pub dir: String,
    /// Its `name` file, e.g. `package-0`, `dram`.
    pub name: String,
    pub power: Curve,
    /// `max_energy_range_uj`: the counter wraps to 0 past it.
    pub range_uj: u64,
    /// False leaves `energy_uj` out: a domain the driver does not expose.
    pub has_counter: bool,
}

/// One GPU of the fixture file.
#[derive(Clone)]
pub struct Gpu {
    pub name: String,
    pub power: Curve,
    /// False: the device has no energy counter, only power.
    pub has_counter: bool,
}

/// The files and the curves that drive them.
struct Meter {
    root: PathBuf,
    gpu_file: PathBuf,
    start_ns: u64,
    zones: Vec<Zone>,
    gpus: Vec<Gpu>,
}

/// A running fixture: stops advancing when dropped.
pub struct PowerFixture {
    pub root: PathBuf,
    pub gpu_file: PathBuf,
    /// CLOCK_MONOTONIC ns when the counters were at 0.
    pub start_ns: u64,
    meter: Arc<Meter>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Energy of `power` from `a` to `b` s, J (midpoint rule at 0.1 ms: exact for constant and
/// linear curves, within 1e-6 for the bench's sine).
pub fn integral(power: &Curve, a: f64, b: f64) -> f64 {
    if b <= a {
        return 0.0;
    }
    let n = (((b - a) / 1e-4).ceil() as usize).max(1);
    let h = (b - a) / n as f64;
    (0..n).map(|i| power(a + (i as f64 + 0.5) * h) * h).sum()
}

/// Writes `text` to `path` through a rename, so a reader never sees half a value.
fn put(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

impl PowerFixture {
    /// Creates the tree under `root` and advances its counters every `step`.
    pub fn start(root: &Path, zones: Vec<Zone>, gpus: Vec<Gpu>, step: Duration) -> Self {
        let pc = root.join("sys/class/powercap");
        for z in &zones {
            let d = pc.join(&z.dir);
            std::fs::create_dir_all(&d).expect("fixture dir");
            put(&d.join("name"), &z.name);
            put(&d.join("max_energy_range_uj"), &z.range_uj.to_string());
        }
        let start_ns = mono_ns();
        let meter = Arc::new(Meter {
            root: root.into(),
            gpu_file: root.join("gpu.json"),
            start_ns,
            zones,
            gpus,
        });
        let mut energy = vec![0.0; meter.zones.len() + meter.gpus.len()];
        meter.write(start_ns, &mut energy, start_ns);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (meter, stop) = (meter.clone(), stop.clone());
            std::thread::spawn(move || {
                // Hardware counters never lag: a meter thread that a busy CI machine leaves
                // unscheduled for 100 ms would (measured: 12% off in one 100 ms sample), so it
                // runs as a real-time thread where it may (root).
                let prio = libc::sched_param { sched_priority: 10 };
                // SAFETY: sets this thread's own policy; failure leaves it as it was.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &prio) };
                let mut last = start_ns;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(step);
                    let now = mono_ns();
                    meter.write(now, &mut energy, last);
                    last = now;
                }
            })
        };
        Self {
            root: root.into(),
            gpu_file: meter.gpu_file.clone(),
            start_ns,
            meter,
            stop,
            thread: Some(thread),
        }
    }

    /// The energy a domain (zones in order, then GPUs) used between two CLOCK_MONOTONIC
    /// times, J.
    pub fn truth_j(&self, domain: usize, from_ns: u64, to_ns: u64) -> f64 {
        let m = &self.meter;
        let c = m
            .zones
            .iter()
            .map(|z| &z.power)
            .chain(m.gpus.iter().map(|g| &g.power))
            .nth(domain)
            .expect("domain index");
        let s = |t: u64| t.saturating_sub(m.start_ns) as f64 / 1e9;
        integral(c, s(from_ns), s(to_ns))
    }

    /// tbd's arguments to read this fixture.
    pub fn tbd_args(&self) -> Vec<String> {
        vec![
            "--sysfs-root".into(),
            self.root.display().to_string(),
            "--gpu-fixture".into(),
            self.gpu_file.display().to_string(),
        ]
    }
}

impl Meter {
    /// Adds each domain's energy from `last` to `now` (midpoint power) and writes the files.
    fn write(&self, now: u64, energy: &mut [f64], last: u64) {
        let secs = |t: u64| (t - self.start_ns) as f64 / 1e9;
        let (a, b) = (secs(last), secs(now));
        let curves = self
            .zones
            .iter()
            .map(|z| &z.power)
            .chain(self.gpus.iter().map(|g| &g.power));
        for (e, c) in energy.iter_mut().zip(curves) {
            *e += integral(c, a, b);
        }
        let pc = self.root.join("sys/class/powercap");
        for (z, e) in self.zones.iter().zip(energy.iter()) {
            if z.has_counter {
                let uj = (*e * 1e6) as u64 % z.range_uj;
                put(&pc.join(&z.dir).join("energy_uj"), &uj.to_string());
            }
        }
        let devices: Vec<String> = self
            .gpus
            .iter()
            .zip(&energy[self.zones.len()..])
            .map(|(g, e)| {
                let p = (g.power)(b);
                let energy = if g.has_counter {
                    format!(r#","energy_mj":{}"#, (*e * 1e3) as u64)
                } else {
                    String::new()
                };
                format!(
                    r#"{{"name":"{}","power_mw":{}{energy},"util_pct":80,"mem_used_bytes":1073741824,"temp_c":55,"averaged_1s":true}}"#,
                    g.name,
                    (p * 1e3) as u64
                )
            })
            .collect();
        put(
            &self.gpu_file,
            &format!(r#"{{"devices":[{}]}}"#, devices.join(",")),
        );
    }
}

impl Drop for PowerFixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The standard test host: package-0 at 60 W with its cores (40 W, inside it) and DRAM (6 W);
/// package-1 at 40 W whose counter wraps every second; package-1's cores without a counter;
/// a GPU with an energy counter at 250 W and one with power only at 100 W. Host total: 456 W.
pub fn standard(root: &Path, step: Duration) -> PowerFixture {
    let zone = |dir: &str, name: &str, w: f64, range_uj: u64, has_counter: bool| Zone {
        dir: dir.into(),
        name: name.into(),
        power: watts(w),
        range_uj,
        has_counter,
    };
    let big = 262_143_328_850;
    PowerFixture::start(
        root,
        vec![
            zone("intel-rapl:0", "package-0", 60.0, big, true),
            zone("intel-rapl:0:0", "core", 40.0, big, true),
            zone("intel-rapl:0:1", "dram", 6.0, big, true),
            zone("intel-rapl:1", "package-1", 40.0, 40_000_000, true),
            zone("intel-rapl:1:0", "core", 25.0, big, false),
        ],
        vec![
            Gpu {
                name: "Fixture H100".into(),
                power: watts(250.0),
                has_counter: true,
            },
            Gpu {
                name: "Fixture V100".into(),
                power: watts(100.0),
                has_counter: false,
            },
        ],
        step,
    )
}

/// The standard host's total power, W.
pub const STANDARD_TOTAL_W: f64 = 60.0 + 6.0 + 40.0 + 250.0 + 100.0;
