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

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let curves = [
        (
            "ITL (per token gap)",
            style::ecdf(input.sample("itl_ms"), MAX_STEPS),
        ),
        (
            "ICL (per chunk gap)",
            style::ecdf(input.sample("icl_ms"), MAX_STEPS),
        ),
    ];
    let x = style::from_zero(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)));
    let mut chart = style::chart(root, TITLE, x, (0.0f64, 1.02f64))?;
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
    style::legend_at(&mut chart, SeriesLabelPosition::LowerRight)
}
