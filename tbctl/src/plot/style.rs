//! What every plot shares: the embedded font, colours, text sizes and axis ranges.

use std::sync::Once;

use plotters::coord::Shift;

use plotters::{
    coord::types::RangedCoordf64,
    prelude::*,
    style::{register_font as register, FontStyle},
};

/// DejaVu Sans (Bitstream Vera licence, tbctl/assets/DejaVuSans.LICENSE), embedded so PNGs
/// render the same on a host without fonts.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The family every text element names; in SVG a browser uses its own sans-serif.
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if register(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded font did not load: plot text will be missing");
        }
    });
}

/// Series colours (colour-blind-safe Tableau 10 order).
pub const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Title text.
pub fn title() -> TextStyle<'static> {
    (FAMILY, 22).into_font().into()
}

/// Axis description text.
pub fn axis() -> TextStyle<'static> {
    (FAMILY, 15).into_font().into()
}

/// Tick and legend text.
pub fn small() -> TextStyle<'static> {
    (FAMILY, 13).into_font().into()
}

/// (min, max) of `values` widened by 5% each side (and to a unit span when flat).
pub fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
    (lo - 0.05 * span, hi + 0.05 * span)
}

/// (0, max) of `values` widened by 5% on top: for counts, rates and latencies.
pub fn from_zero(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let hi = values.fold(0.0f64, f64::max);
    (0.0, if hi > 0.0 { hi * 1.05 } else { 1.0 })
}

pub use crate::analysis::thin;

/// The legend box, drawn the same on every chart.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    legend_at(chart, SeriesLabelPosition::UpperRight)
}

/// The legend box at `pos`.
pub fn legend_at<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .label_font(small())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(pos)
        .draw()
        .map_err(super::err)
}

/// Axes with their descriptions, ticks and a light grid, drawn the same on every chart.
pub fn mesh<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x_desc: &str,
    y_desc: &str,
) -> Result<(), String> {
    chart
        .configure_mesh()
        .max_light_lines(2)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(small())
        .axis_desc_style(axis())
        .draw()
        .map_err(super::err)
}

/// A chart on `area` over x and y ranges, with the title (none when empty) and the label areas
/// every plot uses.
pub fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: (f64, f64),
    y: (f64, f64),
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String> {
    let mut b = ChartBuilder::on(area);
    if !title.is_empty() {
        b.caption(title, self::title());
    }
    b.margin(12)
        .x_label_area_size(42)
        .y_label_area_size(75)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(super::err)
}

/// The empirical CDF of `samples`: (value, share at or below), at most `max` points, the last
/// always kept.
pub fn ecdf(samples: &[f64], max: usize) -> Vec<(f64, f64)> {
    let mut s = samples.to_vec();
    s.sort_unstable_by(f64::total_cmp);
    let n = s.len() as f64;
    let pts: Vec<(f64, f64)> = s
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect();
    let mut thinned = thin(&pts, max);
    if let Some(last) = pts.last() {
        if thinned.last() != Some(last) {
            thinned.push(*last);
        }
    }
    thinned
}
