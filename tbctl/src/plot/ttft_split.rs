//! The TTFT split, kernel against client: for each request seen on both sides, the time in
//! the client before its write, the server's own time to the first token, the client's read
//! delay after the kernel delivered it, and the rest (request transit and first-token delivery).

use std::collections::HashMap;

use plotters::{coord::Shift, prelude::*};

use super::{err, style, DrawResult, PlotInput};

pub const NAME: &str = "ttft-split";
pub const TITLE: &str = "TTFT split: client, server and transit (kernel timing)";

/// Bars drawn at most; longer runs are thinned evenly (sorted by TTFT first).
const MAX_BARS: usize = 400;

const PARTS: [&str; 4] = [
    "client before its write (client_send_lag_ms)",
    "server to first token (server_ttft_ms)",
    "transit: request in, first token out",
    "client read delay (client_read_lag_ms)",
];

/// Per request: TTFT and its four parts, in [`PARTS`] order.
fn rows(input: &PlotInput) -> Vec<(f64, [f64; 4])> {
    let Some(lines) = &input.run.kernel else {
        return Vec::new();
    };
    let mut client: HashMap<u64, (f64, f64)> = HashMap::new();
    let mut server: HashMap<u64, f64> = HashMap::new();
    for l in lines {
        let Some(id) = l.request_id else { continue };
        if l.side == "client" {
            if let (Some(a), Some(b)) = (l.client_send_lag_ms, l.client_read_lag_ms) {
                client.insert(id, (a, b));
            }
        } else if let Some(s) = l.server_ttft_ms {
            server.insert(id, s);
        }
    }
    let mut rows: Vec<(f64, [f64; 4])> = input
        .measured
        .iter()
        .filter_map(|r| {
            let ttft = r.ttft_ms?;
            let (send, read) = client.get(&r.request_id)?;
            let srv = server.get(&r.request_id)?;
            let transit = (ttft - send - srv - read).max(0.0);
            Some((ttft, [send.max(0.0), *srv, transit, read.max(0.0)]))
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    rows
}

pub fn needs(input: &PlotInput) -> Result<(), String> {
    if input.run.kernel.is_none() {
        return Err("no kernel timing: the run was profiled without tbd".into());
    }
    if rows(input).is_empty() {
        return Err(
            "no request was seen on both sides by the kernel (server not on this host?)".into(),
        );
    }
    Ok(())
}

pub fn draw<DB: DrawingBackend>(input: &PlotInput, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let rows = style::thin(&rows(input), MAX_BARS);
    let n = rows.len();
    let y = style::from_zero(rows.iter().map(|r| r.1.iter().sum::<f64>()));
    let mut chart = style::chart(root, TITLE, (0f64, n as f64), y)?;
    chart
        .configure_mesh()
        .max_light_lines(2)
        .disable_x_mesh()
        .x_desc("requests seen on both sides, sorted by TTFT")
        .y_desc("time to first token (ms)")
        .label_style(style::small())
        .axis_desc_style(style::axis())
        .draw()
        .map_err(err)?;
    for (p, label) in PARTS.iter().enumerate() {
        let c = style::COLORS[p];
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, parts))| {
                let base: f64 = parts[..p].iter().sum();
                Rectangle::new(
                    [(i as f64 + 0.1, base), (i as f64 + 0.9, base + parts[p])],
                    c.filled(),
                )
            }))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.filled()));
    }
    style::legend_at(&mut chart, SeriesLabelPosition::UpperLeft)
}
