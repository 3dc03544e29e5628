//! The report's energy section: per source, per token and per request with formulas, the
//! method and caveats; or, for a run without energy, which sensors were absent and why.

use crate::{
    catalogue::{self, Scope},
    doc::{num, Block, Section, Table},
};

use super::{dist_header, dist_row, Report};

/// The energy section of a report.
pub fn section(r: &Report) -> Section {
    let Some(e) = &r.summary.energy else {
        let why: Vec<String> = r
            .summary
            .notes
            .iter()
            .filter(|n| n.starts_with("energy"))
            .cloned()
            .collect();
        return Section {
            title: "Energy".into(),
            blocks: vec![Block::Para(if why.is_empty() {
                "Energy absent: the run has no energy samples (recorded without tbd's energy \
                 sensors)."
                    .into()
            } else {
                format!("{}.", why.join("; "))
            })],
        };
    };
    let def = |n: &str| catalogue::def(Scope::Energy, n);
    let domains = Table {
        header: [
            "domain",
            "sensor",
            "device",
            "in total",
            "energy (J)",
            "avg W",
            "peak W",
        ]
        .map(String::from)
        .to_vec(),
        rows: e
            .domains
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    d.sensor.clone(),
                    d.device.clone(),
                    if d.in_total {
                        "yes"
                    } else {
                        "no (inside another)"
                    }
                    .into(),
                    num(d.energy_j),
                    num(d.avg_power_w),
                    num(d.peak_power_w),
                ]
            })
            .collect(),
    };
    let mut run_rows: Vec<Vec<String>> = vec![
        ("energy_j", Some(e.total_j)),
        ("avg_power_w", Some(e.avg_power_w)),
        ("peak_power_w", Some(e.peak_power_w)),
        ("j_per_output_token", e.j_per_output_token),
        ("j_per_token", e.j_per_token),
        ("output_tokens_per_j", e.output_tokens_per_j),
        ("unattributed_energy_j", Some(e.unattributed_j)),
    ]
    .into_iter()
    .filter_map(|(n, v)| {
        let d = def(n);
        Some(vec![n.into(), d.unit.into(), num(v?), d.formula.into()])
    })
    .collect();
    if let Some(i) = &e.above_idle {
        for (n, v) in [
            ("idle_power_w", i.idle_power_w),
            ("energy_above_idle_j", i.energy_j),
        ] {
            let d = def(n);
            run_rows.push(vec![n.into(), d.unit.into(), num(v), d.formula.into()]);
        }
    }
    let per_request = catalogue::of(Scope::Energy)
        .filter_map(|d| {
            let m = e.per_request.get(d.name)?;
            Some(dist_row(d.name, d.unit, &m.dist, d.formula))
        })
        .collect();
    let by: Vec<String> = e
        .by_device_j
        .iter()
        .map(|(k, v)| format!("{k} {} J", num(*v)))
        .collect();
    Section {
        title: "Energy".into(),
        blocks: vec![
            Block::Para(format!(
                "{} J over the {:.2} s window (first send to last response): {}.",
                num(e.total_j),
                e.window_s,
                by.join(", ")
            )),
            Block::Table(domains),
            Block::Table(Table {
                header: ["figure", "unit", "value", "formula"]
                    .map(String::from)
                    .to_vec(),
                rows: run_rows,
            }),
            Block::Table(Table {
                header: dist_header(),
                rows: per_request,
            }),
            Block::Bullets(e.method.iter().map(|m| format!("Method: {m}")).collect()),
            Block::Bullets(e.caveats.iter().map(|c| format!("Caveat: {c}")).collect()),
        ],
    }
}
