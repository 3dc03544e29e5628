//! Latency distributions: histograms of TTFT and E2E as densities, with a Gaussian kernel
//! density estimate (Silverman's bandwidth) over each.

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};
use crate::analysis::kde;

pub const NAME: &str = "latency-histogram";
pub const TITLE: &str = "Latency distributions (histogram and KDE)";

/// Samples the KDE is evaluated from at most; longer runs are thinned evenly.
const KDE_SAMPLES: usize = 20_000;

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input.sample("ttft_ms").is_empty() {
        Err("no successful request: no latency to plot".into())
    } else {
        Ok(())
    }
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let root = root.titled(TITLE, style::title()).map_err(err)?;
    let (left, right) = root.split_horizontally(super::SIZE.0 / 2);
    panel(
        &left,
        "TTFT (ms)",
        input.sample("ttft_ms"),
        style::COLORS[0],
    )?;
    panel(&right, "E2E (ms)", input.sample("e2e_ms"), style::COLORS[2])
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    samples: &[f64],
    color: RGBColor,
) -> DrawResult {
    if samples.is_empty() {
        return Ok(());
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let (lo, hi) = style::padded(sorted.iter().copied());
    let n_bins = ((sorted.len() as f64).sqrt().ceil() as usize).clamp(10, 60);
    let width = (hi - lo) / n_bins as f64;
    let mut counts = vec![0usize; n_bins];
    for v in &sorted {
        counts[(((v - lo) / width) as usize).min(n_bins - 1)] += 1;
    }
    let n = sorted.len() as f64;
    let bars: Vec<(f64, f64)> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| (lo + i as f64 * width, *c as f64 / (n * width)))
        .collect();
    let thinned = style::thin(&sorted, KDE_SAMPLES);
    let curve: Vec<(f64, f64)> = match kde::silverman_bandwidth(&thinned) {
        Some(h) => {
            let xs: Vec<f64> = (0..=200)
                .map(|i| lo + (hi - lo) * i as f64 / 200.0)
                .collect();
            let ys = kde::density(&thinned, h, &xs);
            xs.into_iter().zip(ys).collect()
        }
        None => Vec::new(),
    };
    let y = style::from_zero(bars.iter().map(|b| b.1).chain(curve.iter().map(|c| c.1)));
    let mut chart = style::chart(area, "", (lo, hi), y)?;
    style::mesh(&mut chart, x_desc, "density (1/ms)")?;
    chart
        .draw_series(bars.iter().map(|(x0, d)| {
            Rectangle::new([(*x0, 0.0), (x0 + width, *d)], color.mix(0.35).filled())
        }))
        .map_err(err)?
        .label(format!("histogram, {} requests", sorted.len()))
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.mix(0.35).filled())
        });
    if !curve.is_empty() {
        chart
            .draw_series(LineSeries::new(curve, BLACK.stroke_width(2)))
            .map_err(err)?
            .label("KDE (Gaussian, Silverman)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    }
    style::legend(&mut chart)
}
