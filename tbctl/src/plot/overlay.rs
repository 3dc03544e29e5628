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

fn ecdf(v: &[f64]) -> Vec<(f64, f64)> {
    let mut s = v.to_vec();
    s.sort_unstable_by(f64::total_cmp);
    let n = s.len() as f64;
    let pts: Vec<(f64, f64)> = s
        .iter()
        .enumerate()
        .map(|(i, x)| (*x, (i + 1) as f64 / n))
        .collect();
    style::thin(&pts, 3_000)
}

fn draw<DB: DrawingBackend>(runs: &[RunSamples], root: &DrawingArea<DB, Shift>) -> DrawResult {
    let root = root.titled(TITLE, style::title()).map_err(err)?;
    for ((metric, desc), area) in PANELS.iter().zip(root.split_evenly((2, 2))) {
        let curves: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|r| ecdf(r.samples.get(metric).map(Vec::as_slice).unwrap_or(&[])))
            .collect();
        let x = style::padded(curves.iter().flatten().map(|p| p.0));
        let mut chart = ChartBuilder::on(&area)
            .margin(8)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(x.0..x.1, 0.0f64..1.02f64)
            .map_err(err)?;
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
        chart
            .configure_series_labels()
            .label_font(style::small())
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Draws the overlay into `<dir>/plots/cdf-overlay.{png,svg}`.
pub fn render(runs: &[RunSamples], dir: &Path) -> Result<Drawn, String> {
    draw_files!(dir, NAME, TITLE, root => draw(runs, &root))
}
