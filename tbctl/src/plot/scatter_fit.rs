//! A scatter of (x, y) points with its least-squares line, for `tbctl analyze --analysis
//! regression`.

use std::path::Path;

use plotters::{coord::Shift, prelude::*};

use super::{draw_files, err, style, DrawResult, Drawn};
use crate::analysis::regression::Fit;

/// What to draw.
pub struct ScatterFit<'a> {
    pub name: &'static str,
    /// What one point is, plural ("requests", "250 ms bins").
    pub point: &'static str,
    pub title: &'static str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub points: &'a [(f64, f64)],
    pub fit: Fit,
}

fn draw<DB: DrawingBackend>(s: &ScatterFit, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let x = style::padded(s.points.iter().map(|p| p.0));
    let y = style::from_zero(s.points.iter().map(|p| p.1));
    let mut chart = style::chart(root, s.title, x, y)?;
    style::mesh(&mut chart, s.x_desc, s.y_desc)?;
    let c = style::COLORS[0];
    chart
        .draw_series(
            style::thin(s.points, 20_000)
                .into_iter()
                .map(|p| Circle::new(p, 3, c.mix(0.6).filled())),
        )
        .map_err(err)?
        .label(format!("{} {}", s.points.len(), s.point))
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
    let f = s.fit;
    let red = style::COLORS[3];
    chart
        .draw_series(LineSeries::new(
            [x.0, x.1].map(|v| (v, f.intercept + f.slope * v)),
            red.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!(
            "least squares: y = {:.4} + {:.4} x (R² {:.3})",
            f.intercept, f.slope, f.r2
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    style::legend_at(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Draws it into `<dir>/plots/<name>.{png,svg}`.
pub fn render(s: &ScatterFit, dir: &Path) -> Result<Drawn, String> {
    draw_files!(dir, s.name, s.title, root => draw(s, &root))
}
