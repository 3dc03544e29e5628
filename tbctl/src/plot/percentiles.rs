//! Latency percentiles: p50 to p99.9 of TTFT, ITL, TPOT and E2E, on a log scale so short and
//! long latencies share one chart.

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};

pub const NAME: &str = "latency-percentiles";
pub const TITLE: &str = "Latency percentiles (TTFT, ITL, TPOT, E2E)";

const METRICS: [&str; 4] = ["ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"];
const LABELS: [&str; 5] = ["p50", "p90", "p95", "p99", "p99.9"];

fn points(input: &PlotInput, metric: &str) -> Option<Vec<(f64, f64)>> {
    let d = &input.summary.metrics.get(metric)?.dist;
    let v = [d.p50, d.p90, d.p95, d.p99, d.p999];
    Some(
        v.iter()
            .enumerate()
            .filter(|(_, y)| **y > 0.0)
            .map(|(i, y)| (i as f64, *y))
            .collect(),
    )
}

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if METRICS
        .iter()
        .any(|m| points(input, m).is_some_and(|p| !p.is_empty()))
    {
        Ok(())
    } else {
        Err("no successful request: no latency to plot".into())
    }
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let series: Vec<(&str, Vec<(f64, f64)>)> = METRICS
        .iter()
        .filter_map(|m| Some((*m, points(input, m)?)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let ys = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let (lo, hi) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    let mut chart = ChartBuilder::on(root)
        .caption(TITLE, style::title())
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        // Headroom above the highest line keeps the legend off the data.
        .build_cartesian_2d(-0.2f64..4.2f64, (lo / 1.5..hi * 4.0).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .max_light_lines(2)
        .x_labels(5)
        .x_label_formatter(&|x| {
            LABELS
                .get(x.round() as usize)
                .filter(|_| (x - x.round()).abs() < 1e-6)
                .map(|s| s.to_string())
                .unwrap_or_default()
        })
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .label_style(style::small())
        .axis_desc_style(style::axis())
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let c = style::COLORS[i % style::COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(err)?;
    }
    style::legend(&mut chart)
}
