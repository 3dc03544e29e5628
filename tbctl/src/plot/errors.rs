//! Outcomes: successful requests and each class of failure, as counted in the summary.

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};

pub const NAME: &str = "errors";
pub const TITLE: &str = "Request outcomes by error class";

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input.summary.requests.total == 0 {
        Err("no measured request".into())
    } else {
        Ok(())
    }
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let s = input.summary;
    let mut bars: Vec<(String, u64)> = vec![("ok".into(), s.requests.succeeded)];
    bars.extend(s.errors_by_class.iter().map(|(k, v)| (k.clone(), *v)));
    let n = bars.len();
    let y = style::from_zero(bars.iter().map(|b| b.1 as f64));
    let title = if s.requests.failed == 0 {
        format!("{TITLE}: no errors")
    } else {
        format!(
            "{TITLE}: {} of {} failed",
            s.requests.failed, s.requests.total
        )
    };
    let mut chart = style::chart(root, &title, (-0.5f64, n as f64 - 0.5), y)?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .max_light_lines(2)
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("outcome (error_class)")
        .y_desc("requests")
        .label_style(style::small())
        .axis_desc_style(style::axis())
        .draw()
        .map_err(err)?;
    let (ok_c, bad_c) = (style::COLORS[2], style::COLORS[3]);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let c = if i == 0 { ok_c } else { bad_c };
            Rectangle::new(
                [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, *v as f64)],
                c.filled(),
            )
        }))
        .map_err(err)?
        .label("succeeded")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], ok_c.filled()));
    // A second, empty series carries the legend entry for failures.
    chart
        .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
        .map_err(err)?
        .label("failed, by error_class")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], bad_c.filled()));
    style::legend(&mut chart)
}
