//! Plots of a run, drawn with plotters to PNG and SVG. Each kind is one file with `NAME`,
//! `TITLE`, `needs` (why it cannot be drawn for a run, if it cannot) and a `draw` generic over
//! the backend; [`KINDS`] registers it in one line.

mod cdf;
mod dispatch_lag;
mod errors;
mod histogram;
mod latency_time;
pub mod overlay;
mod percentiles;
mod power;
pub mod scatter_fit;
pub(crate) mod style;
pub mod sweep_curves;
mod throughput;
mod ttft_split;

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::{
    record::RequestRecord,
    rundir::RunData,
    summary::{self, Summary},
};

/// Pixel size of every plot.
pub const SIZE: (u32, u32) = (1000, 600);

/// What a plot is drawn from: the run, its summary and every client sample.
pub struct PlotInput<'a> {
    pub run: &'a RunData,
    pub summary: &'a Summary,
    pub measured: Vec<&'a RequestRecord>,
    /// Every sample of each client metric (summary::samples).
    pub samples: BTreeMap<&'static str, Vec<f64>>,
    /// The first send of a measured request: time zero of the time axes.
    pub t0_ns: u64,
}

impl<'a> PlotInput<'a> {
    /// Prepares the input once for all plots of a run.
    pub fn new(run: &'a RunData, summary: &'a Summary) -> Self {
        let measured: Vec<&RequestRecord> = run.measured().collect();
        let samples = summary::samples(&measured);
        let t0_ns = measured
            .iter()
            .filter_map(|r| r.t_sent_ns)
            .min()
            .unwrap_or(0);
        Self {
            run,
            summary,
            measured,
            samples,
            t0_ns,
        }
    }

    /// Seconds since the first send.
    pub fn rel_s(&self, t_ns: u64) -> f64 {
        (t_ns as f64 - self.t0_ns as f64) / 1e9
    }

    /// The samples of a client metric, empty when it has none.
    pub fn sample(&self, name: &str) -> &[f64] {
        self.samples.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A drawing failure, as text.
pub type DrawResult = Result<(), String>;

/// Turns a plotters error into text.
pub(crate) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Draws one figure as `<dir>/plots/<name>.svg` and `.png` and returns its [`Drawn`]: `$body`
/// runs once per backend with `$root` bound to its drawing area (a macro, as the body is
/// generic over the backend).
macro_rules! draw_files {
    ($dir:expr, $name:expr, $title:expr, $root:ident => $body:expr) => {{
        $crate::plot::style::register_font();
        let plots = $dir.join("plots");
        std::fs::create_dir_all(&plots)
            .map_err(|e| format!("cannot create {}: {e}", plots.display()))?;
        let mut svg = String::new();
        {
            let $root = SVGBackend::with_string(&mut svg, $crate::plot::SIZE).into_drawing_area();
            $root.fill(&WHITE).map_err($crate::plot::err)?;
            $body?;
            $root.present().map_err($crate::plot::err)?;
        }
        let svg_path = plots.join(format!("{}.svg", $name));
        std::fs::write(&svg_path, svg)
            .map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
        {
            let png = plots.join(format!("{}.png", $name));
            let $root = BitMapBackend::new(&png, $crate::plot::SIZE).into_drawing_area();
            $root.fill(&WHITE).map_err($crate::plot::err)?;
            $body?;
            $root.present().map_err($crate::plot::err)?;
        }
        Ok::<$crate::plot::Drawn, String>($crate::plot::Drawn {
            kind: $name,
            title: $title,
            png: format!("plots/{}.png", $name),
            svg: format!("plots/{}.svg", $name),
        })
    }};
}
pub(crate) use draw_files;

/// One registered kind of plot.
pub struct PlotKind {
    /// Name on the command line and file stem under plots/.
    pub name: &'static str,
    /// What it shows.
    pub title: &'static str,
    /// Why this run has nothing to draw, if it has not.
    pub needs: fn(&PlotInput) -> Result<(), String>,
    /// Draws it into the run's plots/ as SVG and PNG.
    pub render: fn(&PlotInput) -> Result<Drawn, String>,
}

macro_rules! kind {
    ($m:ident) => {
        PlotKind {
            name: $m::NAME,
            title: $m::TITLE,
            needs: $m::needs,
            render: |input| draw_files!(input.run.dir, $m::NAME, $m::TITLE, root => $m::draw(input, &root)),
        }
    };
}

/// Every plot kind, in report order.
pub const KINDS: &[PlotKind] = &[
    kind!(percentiles),
    kind!(throughput),
    kind!(latency_time),
    kind!(histogram),
    kind!(cdf),
    kind!(dispatch_lag),
    kind!(errors),
    kind!(ttft_split),
    kind!(power),
];

/// The kind named `name`, or one line listing the known ones.
pub fn kind(name: &str) -> Result<&'static PlotKind, String> {
    KINDS.iter().find(|k| k.name == name).ok_or_else(|| {
        format!(
            "unknown plot kind '{name}': known kinds are {}",
            KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The files one plot was written to.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Drawn {
    pub kind: &'static str,
    pub title: &'static str,
    /// Relative to the run directory.
    pub png: String,
    pub svg: String,
}

/// Draws `kind` into `<run>/plots/<name>.png` and `.svg`; Err says why it was not drawn.
pub fn render(input: &PlotInput, kind: &PlotKind) -> Result<Drawn, String> {
    (kind.needs)(input)?;
    (kind.render)(input)
}
