//! Empirical CDFs of ITL (per token gap) and ICL (per chunk gap): where the streaming
//! jitter lies, and how far the tail reaches.

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};

pub const NAME: &str = "itl-cdf";
pub const TITLE: &str = "ITL and ICL, cumulative distribution";

/// Steps drawn per curve at most.
const MAX_STEPS: usize = 5_000;

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input.sample("icl_ms").is_empty() {
        Err("no request streamed two chunks: no gaps to plot".into())
    } else {
        Ok(())
    }
}

/// (value, share of samples <= value), thinned to at most [`MAX_STEPS`] points.
fn ecdf(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut s = samples.to_vec();
    s.sort_unstable_by(f64::total_cmp);
    let n = s.len() as f64;
    let pts: Vec<(f64, f64)> = s
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect();
    let mut thinned = style::thin(&pts, MAX_STEPS);
    if let Some(last) = pts.last() {
        if thinned.last() != Some(last) {
            thinned.push(*last);
        }
    }
    thinned
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let curves = [
        ("ITL (per token gap)", ecdf(input.sample("itl_ms"))),
        ("ICL (per chunk gap)", ecdf(input.sample("icl_ms"))),
    ];
    let x = style::from_zero(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)));
    let mut chart = ChartBuilder::on(root)
        .caption(TITLE, style::title())
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, 0.0f64..1.02f64)
        .map_err(err)?;
    style::mesh(&mut chart, "gap (ms)", "share of gaps at or below")?;
    for (i, (label, pts)) in curves.into_iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        // The first curve is drawn wider, so it shows when the second one (ICL of one-token
        // chunks) lies on top of it.
        let (c, w) = (style::COLORS[i], 5 - 3 * i as u32);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(w)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(w)));
    }
    chart
        .configure_series_labels()
        .label_font(style::small())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)
}
