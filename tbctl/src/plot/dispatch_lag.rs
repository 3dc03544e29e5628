//! Dispatch lag: how late each request left against its schedule. A load generator that
//! falls behind shows here before it shows as latency (coordinated omission).

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};

pub const NAME: &str = "dispatch-lag";
pub const TITLE: &str = "Dispatch lag (actual - intended send time)";

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input.sample("dispatch_lag_ms").is_empty() {
        Err("no request was sent: no dispatch lag to plot".into())
    } else {
        Ok(())
    }
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let pts: Vec<(f64, f64)> = input
        .measured
        .iter()
        .filter_map(|r| Some((input.rel_s(r.t_intended_ns), r.dispatch_lag_ms?)))
        .collect();
    let p99 = input
        .summary
        .metrics
        .get("dispatch_lag_ms")
        .map(|m| m.dist.p99)
        .unwrap_or(0.0);
    let x = style::padded(pts.iter().map(|p| p.0));
    let y = style::from_zero(pts.iter().map(|p| p.1).chain([p99]));
    let mut chart = style::chart(root, TITLE, x, y)?;
    style::mesh(
        &mut chart,
        "intended send time since first send (s)",
        "dispatch lag (ms)",
    )?;
    let c = style::COLORS[4];
    chart
        .draw_series(
            style::thin(&pts, 20_000)
                .into_iter()
                .map(|p| Circle::new(p, 2, c.mix(0.6).filled())),
        )
        .map_err(err)?
        .label("per request")
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
    let red = style::COLORS[3];
    chart
        .draw_series(LineSeries::new(
            vec![(x.0, p99), (x.1, p99)],
            red.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!("p99 {p99:.3} ms"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    style::legend(&mut chart)
}
