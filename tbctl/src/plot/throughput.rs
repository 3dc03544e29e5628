//! Throughput over time: completed requests and output tokens per second, in equal bins.

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};
use crate::analysis::timeline;

pub const NAME: &str = "throughput";
pub const TITLE: &str = "Throughput over time";

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input
        .measured
        .iter()
        .any(|r| r.success && r.t_end_ns.is_some())
    {
        Ok(())
    } else {
        Err("no successful request: no throughput to plot".into())
    }
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let ok = || input.measured.iter().filter(|r| r.success);
    let span = ok()
        .filter_map(|r| r.t_end_ns)
        .map(|t| input.rel_s(t))
        .fold(0.0, f64::max);
    let bin = timeline::bin_width(span);
    let requests = timeline::rates(
        ok().filter_map(|r| Some((r.t_end_ns?, 1.0))),
        input.t0_ns,
        bin,
    );
    // Each chunk's tokens count when the chunk arrived.
    let tokens = timeline::rates(
        ok().flat_map(|r| r.chunks.iter().map(|[t, k]| (*t, *k as f64))),
        input.t0_ns,
        bin,
    );
    let (top, bottom) = root.split_vertically(SIZE_TOP);
    let x = (0.0, span.max(bin) * 1.02);
    panel(
        &top,
        TITLE,
        "requests/s",
        &requests,
        x,
        style::COLORS[0],
        bin,
        "completed requests",
    )?;
    panel(
        &bottom,
        "",
        "output tokens/s",
        &tokens,
        x,
        style::COLORS[1],
        bin,
        "output tokens",
    )
}

const SIZE_TOP: u32 = super::SIZE.1 / 2;

#[allow(clippy::too_many_arguments)]
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    bins: &[(f64, f64)],
    x: (f64, f64),
    color: RGBColor,
    bin: f64,
    label: &str,
) -> DrawResult {
    let y = style::from_zero(bins.iter().map(|b| b.1));
    let mut chart = style::chart(area, title, x, y)?;
    style::mesh(&mut chart, "time since first send (s)", y_desc)?;
    let step: Vec<(f64, f64)> = bins
        .iter()
        .flat_map(|(t, v)| [(*t, *v), (t + bin, *v)])
        .collect();
    chart
        .draw_series(AreaSeries::new(step, 0.0, color.mix(0.25)).border_style(color))
        .map_err(err)?
        .label(format!("{label} per {bin} s bin"))
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.filled()));
    style::legend(&mut chart)
}
