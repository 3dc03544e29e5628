//! Overlaid CDFs of several runs (TTFT, ITL, TPOT, E2E in a 2 × 2 grid), for `tbctl compare`.

use std::path::Path;

use plotters::{coord::Shift, prelude::*};

use super::{draw_files, err, style, DrawResult, Drawn};

/// One run's samples per metric, with its legend label.
pub struct RunSamples<'a> {
    pub label: String,
    pub samples: &'a std::collections::BTreeMap<&'static str, Vec<f64>>,
}

const PANELS: [(&str, &str); 4] = [
    ("ttft_ms", "TTFT (ms)"),
    ("itl_ms", "ITL (ms)"),
    ("tpot_ms", "TPOT (ms)"),
    ("e2e_ms", "E2E (ms)"),
];

/// Name and title of the overlay plot.
pub const NAME: &str = "cdf-overlay";
pub const TITLE: &str = "Latency distributions of the compared runs (CDF)";

fn draw<DB: DrawingBackend>(runs: &[RunSamples], root: &DrawingArea<DB, Shift>) -> DrawResult {
    let root = root.titled(TITLE, style::title()).map_err(err)?;
    for ((metric, desc), area) in PANELS.iter().zip(root.split_evenly((2, 2))) {
        let curves: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|r| {
                style::ecdf(
                    r.samples.get(metric).map(Vec::as_slice).unwrap_or(&[]),
                    3_000,
                )
            })
            .collect();
        let x = style::padded(curves.iter().flatten().map(|p| p.0));
        let mut chart = style::chart(&area, "", x, (0.0f64, 1.02f64))?;
        style::mesh(&mut chart, desc, "share at or below")?;
        for (i, (run, pts)) in runs.iter().zip(curves).enumerate() {
            let c = style::COLORS[i % style::COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(err)?
                .label(run.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        style::legend_at(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

/// Draws the overlay into `<dir>/plots/cdf-overlay.{png,svg}`.
pub fn render(runs: &[RunSamples], dir: &Path) -> Result<Drawn, String> {
    draw_files!(dir, NAME, TITLE, root => draw(runs, &root))
}
