//! TTFT and ITL over time: each request's TTFT at its send time, each token gap at the
//! arrival of the chunk that ended it. Drift, warm-up and saturation show here.

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};

pub const NAME: &str = "latency-over-time";
pub const TITLE: &str = "TTFT and ITL over time";

/// Points per panel at most; longer runs are thinned evenly.
const MAX_POINTS: usize = 20_000;

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input.sample("ttft_ms").is_empty() {
        Err("no request with a first token: no TTFT to plot".into())
    } else {
        Ok(())
    }
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let ok = || input.measured.iter().filter(|r| r.success);
    let ttft: Vec<(f64, f64)> = ok()
        .filter_map(|r| Some((input.rel_s(r.t_sent_ns?), r.ttft_ms?)))
        .collect();
    let itl: Vec<(f64, f64)> = ok()
        .flat_map(|r| r.token_gaps_at_ns())
        .map(|(t, g)| (input.rel_s(t), g / 1e6))
        .collect();
    let x = style::from_zero(ttft.iter().chain(&itl).map(|p| p.0));
    let (top, bottom) = root.split_vertically(super::SIZE.1 / 2);
    panel(
        &top,
        TITLE,
        "TTFT (ms)",
        &ttft,
        x,
        style::COLORS[0],
        "TTFT, per request at its send",
    )?;
    if itl.is_empty() {
        return Ok(());
    }
    panel(
        &bottom,
        "",
        "ITL (ms)",
        &itl,
        x,
        style::COLORS[1],
        "ITL, per token gap at its arrival",
    )
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    points: &[(f64, f64)],
    x: (f64, f64),
    color: RGBColor,
    label: &str,
) -> DrawResult {
    let y = style::from_zero(points.iter().map(|p| p.1));
    let mut chart = style::chart(area, title, x, y)?;
    style::mesh(&mut chart, "time since first send (s)", y_desc)?;
    chart
        .draw_series(
            style::thin(points, MAX_POINTS)
                .into_iter()
                .map(|p| Circle::new(p, 2, color.mix(0.6).filled())),
        )
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    style::legend(&mut chart)
}
