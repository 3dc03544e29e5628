//! Power and energy over time: each energy domain's and the host total's average power per bin
//! (from tbd's counters), the host's cumulative energy, and the output tokens per second in
//! the same bins.

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};
use crate::energy::timeseries;

pub const NAME: &str = "power";
pub const TITLE: &str = "Power, energy and token throughput over time";

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input.summary.energy.is_some() && input.run.energy.is_some() {
        return Ok(());
    }
    Err(input
        .run
        .config
        .notes
        .iter()
        .find(|n| n.starts_with("energy"))
        .cloned()
        .unwrap_or_else(|| "the run has no energy samples (tbd recorded no sensor)".into()))
}

/// Bins of about 1/100 of the window, at least 100 ms.
fn bin_ns(window_ns: u64) -> u64 {
    (window_ns / 100).max(100_000_000)
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let (Some(meta), Some(samples)) = (&input.run.config.energy, &input.run.energy) else {
        return Err("no energy samples".into());
    };
    let bin = bin_ns(meta.window_to_ns.saturating_sub(meta.window_from_ns));
    let bins = timeseries::bins(meta, samples, &input.run.records, bin);
    let bin_s = bin as f64 / 1e9;
    let x = (0.0, bins.last().map_or(1.0, |b| b.t_s + bin_s));
    let (top, rest) = root.split_vertically(super::SIZE.1 * 9 / 20);
    let (middle, bottom) = rest.split_vertically(super::SIZE.1 * 5 / 20);

    let y = style::from_zero(bins.iter().filter_map(|b| b.total_w));
    let mut chart = style::chart(&top, TITLE, x, y)?;
    style::mesh(&mut chart, "time since first send (s)", "power (W)")?;
    let mid = |b: &timeseries::Bin| b.t_s + bin_s / 2.0;
    let total: Vec<(f64, f64)> = bins
        .iter()
        .filter_map(|b| Some((mid(b), b.total_w?)))
        .collect();
    let black = BLACK;
    chart
        .draw_series(LineSeries::new(total, black.stroke_width(3)))
        .map_err(err)?
        .label("host total")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], black.stroke_width(3)));
    for (i, d) in meta.domains.iter().enumerate() {
        let c = style::COLORS[i % style::COLORS.len()];
        let pts: Vec<(f64, f64)> = bins
            .iter()
            .filter_map(|b| Some((mid(b), b.power_w[i]?)))
            .collect();
        let width = if d.in_total { 2 } else { 1 };
        let label = if d.in_total {
            d.name.clone()
        } else {
            format!("{} (inside another domain)", d.name)
        };
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(width)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    style::legend(&mut chart)?;

    // The host total's energy since the first send: the running sum of each bin's.
    let mut sum = 0.0;
    let energy: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(bins.iter().filter_map(|b| {
            sum += b.total_w? * bin_s;
            Some((b.t_s + bin_s, sum))
        }))
        .collect();
    let y = style::from_zero(energy.iter().map(|e| e.1));
    let mut chart = style::chart(&middle, "", x, y)?;
    style::mesh(&mut chart, "time since first send (s)", "energy (J)")?;
    let c = style::COLORS[2];
    chart
        .draw_series(LineSeries::new(energy, c.stroke_width(2)))
        .map_err(err)?
        .label("host total energy since the first send")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    style::legend(&mut chart)?;

    let tokens: Vec<(f64, f64)> = bins
        .iter()
        .flat_map(|b| {
            [
                (b.t_s, b.output_tokens_per_s),
                (b.t_s + bin_s, b.output_tokens_per_s),
            ]
        })
        .collect();
    let y = style::from_zero(tokens.iter().map(|t| t.1));
    let mut chart = style::chart(&bottom, "", x, y)?;
    style::mesh(&mut chart, "time since first send (s)", "output tokens/s")?;
    let c = style::COLORS[1];
    chart
        .draw_series(AreaSeries::new(tokens, 0.0, c.mix(0.25)).border_style(c))
        .map_err(err)?
        .label(format!("output tokens per {bin_s:.1} s bin"))
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.filled()));
    style::legend(&mut chart)
}
