//! The sweep's curves: throughput and TTFT against load, latency against throughput, and
//! goodput (or errors) against load, with the saturation point marked.

use std::path::Path;

use plotters::{coord::Shift, prelude::*};

use super::{draw_files, err, style, DrawResult, Drawn};
use crate::sweep::{Mode, Step};

pub const NAME: &str = "sweep";
pub const TITLE: &str = "Sweep: throughput, latency and goodput against load";

/// One panel: named series of (x, y) points, with the saturation point as a vertical line.
struct Panel<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    series: Vec<(&'a str, Vec<(f64, f64)>)>,
    mark_x: Option<f64>,
}

fn panel<DB: DrawingBackend>(p: &Panel, area: &DrawingArea<DB, Shift>) -> DrawResult {
    let pts = || p.series.iter().flat_map(|(_, s)| s.iter());
    let x = style::padded(pts().map(|q| q.0));
    let y = style::from_zero(pts().map(|q| q.1));
    let mut chart = style::chart(area, "", x, y)?;
    style::mesh(&mut chart, p.x_desc, p.y_desc)?;
    for (i, (label, s)) in p.series.iter().enumerate() {
        let c = style::COLORS[i % style::COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(s.iter().map(|q| Circle::new(*q, 4, c.filled())))
            .map_err(err)?;
    }
    if let Some(m) = p.mark_x {
        let red = style::COLORS[3];
        chart
            .draw_series(LineSeries::new(
                vec![(m, y.0), (m, y.1)],
                red.stroke_width(1),
            ))
            .map_err(err)?
            .label("saturation point")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red));
    }
    style::legend_at(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn draw<DB: DrawingBackend>(
    mode: Mode,
    steps: &[Step],
    point: Option<f64>,
    root: &DrawingArea<DB, Shift>,
) -> DrawResult {
    let root = root.titled(TITLE, style::title()).map_err(err)?;
    let areas = root.split_evenly((2, 2));
    let by_load = |f: fn(&Step) -> Option<f64>| -> Vec<(f64, f64)> {
        steps.iter().filter_map(|s| Some((s.load, f(s)?))).collect()
    };
    let saturated_tokens = point.and_then(|p| {
        steps
            .iter()
            .find(|s| s.load == p)
            .map(|s| s.output_token_throughput)
    });
    let goodput = by_load(|s| s.goodput);
    let last = if goodput.is_empty() {
        Panel {
            x_desc: mode.unit(),
            y_desc: "failed requests (%)",
            series: vec![("error rate", by_load(|s| Some(s.error_rate * 100.0)))],
            mark_x: point,
        }
    } else {
        Panel {
            x_desc: mode.unit(),
            y_desc: "req/s",
            series: vec![
                ("goodput", goodput),
                (
                    "request throughput",
                    by_load(|s| Some(s.request_throughput)),
                ),
            ],
            mark_x: point,
        }
    };
    let panels = [
        Panel {
            x_desc: mode.unit(),
            y_desc: "output tokens/s",
            series: vec![(
                "output throughput",
                by_load(|s| Some(s.output_token_throughput)),
            )],
            mark_x: point,
        },
        Panel {
            x_desc: mode.unit(),
            y_desc: "TTFT (ms)",
            series: vec![
                ("TTFT p50", by_load(|s| s.ttft_p50_ms)),
                ("TTFT p99", by_load(|s| s.ttft_p99_ms)),
            ],
            mark_x: point,
        },
        Panel {
            x_desc: "output tokens/s",
            y_desc: "TTFT p99 (ms), in load order",
            series: vec![(
                "latency against throughput",
                steps
                    .iter()
                    .filter_map(|s| Some((s.output_token_throughput, s.ttft_p99_ms?)))
                    .collect(),
            )],
            mark_x: saturated_tokens,
        },
        last,
    ];
    for (p, area) in panels.iter().zip(areas) {
        panel(p, &area)?;
    }
    Ok(())
}

/// Draws the sweep's curves into `<dir>/plots/sweep.{png,svg}`.
pub fn render(mode: Mode, steps: &[Step], point: Option<f64>, dir: &Path) -> Result<Drawn, String> {
    if steps.is_empty() {
        return Err("no step ran".into());
    }
    draw_files!(dir, NAME, TITLE, root => draw(mode, steps, point, &root))
}
