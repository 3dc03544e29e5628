//! The run directory, `runs/<run_id>/`: the one type that writes and reads run.json,
//! requests.jsonl, kernel.jsonl, energy.jsonl and summary.json. Every command that reads a run (summary,
//! trace, report, compare) opens it through [`RunData::open`], so a run from an older format
//! reads the same way as a new one.

pub mod config;
pub mod id;

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Serialize};

pub use config::RunConfig;
pub use id::new_run_id;

pub use crate::energy::ENERGY;
use crate::{
    energy::Sample,
    kernel::join::{CaptureFacts, KernelLine},
    record::{RequestRecord, RunMeta},
    summary::Summary,
};

/// run.json.
pub const RUN_JSON: &str = "run.json";
/// requests.jsonl.
pub const REQUESTS: &str = "requests.jsonl";
/// kernel.jsonl.
pub const KERNEL: &str = "kernel.jsonl";
/// summary.json.
pub const SUMMARY: &str = "summary.json";

/// Why a run directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// Neither run.json nor requests.jsonl is there.
    #[error("{0} is not a run directory: it has no run.json and no requests.jsonl")]
    NotARun(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line or file is not what it should hold.
    #[error("{path} line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// Creates `<out>/<run_id>/`.
pub fn create(out: &Path, run_id: &str) -> std::io::Result<PathBuf> {
    let dir = out.join(run_id);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes `value` as pretty JSON to `dir/name` (through a temporary file, so a reader never
/// sees half a file).
pub fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(tmp, dir.join(name))
}

/// Writes one JSON line per row.
pub fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in rows {
        serde_json::to_writer(&mut f, r)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

fn read_text(path: &Path) -> Result<String, RunDirError> {
    std::fs::read_to_string(path).map_err(|source| RunDirError::Io {
        path: path.into(),
        source,
    })
}

/// Reads a JSON-lines file, skipping blank lines; errors name the line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, RunDirError> {
    parse_lines(path, &read_text(path)?, 0)
}

fn parse_lines<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    skip: usize,
) -> Result<Vec<T>, RunDirError> {
    text.lines()
        .enumerate()
        .skip(skip)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| RunDirError::Parse {
                path: path.into(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Reads a requests.jsonl back: its metadata line and its records.
pub fn read_requests(path: &Path) -> Result<(RunMeta, Vec<RequestRecord>), RunDirError> {
    let text = read_text(path)?;
    let first = text.lines().next().unwrap_or("");
    let meta = serde_json::from_str(first).map_err(|source| RunDirError::Parse {
        path: path.into(),
        line: 1,
        source,
    })?;
    Ok((meta, parse_lines(path, &text, 1)?))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, RunDirError> {
    serde_json::from_str(&read_text(path)?).map_err(|source| RunDirError::Parse {
        path: path.into(),
        line: 1,
        source,
    })
}

/// A whole run read back from its directory.
#[derive(Clone, Debug)]
pub struct RunData {
    /// Where it was read from.
    pub dir: PathBuf,
    /// run.json (or, for a directory without one, what requests.jsonl's metadata says).
    pub config: RunConfig,
    /// The records, warm-up ones included (marked).
    pub records: Vec<RequestRecord>,
    /// kernel.jsonl, when tbd captured the run.
    pub kernel: Option<Vec<KernelLine>>,
    /// energy.jsonl, when tbd had an energy sensor.
    pub energy: Option<Vec<Sample>>,
}

impl RunData {
    /// Reads `dir`. Older formats are read too: a format-1 run.json takes its SLO, notes and
    /// capture counts from the summary.json written with it.
    pub fn open(dir: &Path) -> Result<Self, RunDirError> {
        let (run_json, requests) = (dir.join(RUN_JSON), dir.join(REQUESTS));
        if !run_json.is_file() && !requests.is_file() {
            return Err(RunDirError::NotARun(dir.into()));
        }
        let (meta, records) = if requests.is_file() {
            let (m, r) = read_requests(&requests)?;
            (Some(m), r)
        } else {
            (None, Vec::new())
        };
        let mut config: RunConfig = if run_json.is_file() {
            read_json(&run_json)?
        } else {
            let m = meta.clone().expect("requests.jsonl was read");
            RunConfig {
                format: 1,
                run_id: m.run_id,
                tool: m.tool,
                version: m.tool_version,
                target: m.target,
                api: m.api,
                model: m.model,
                ..Default::default()
            }
        };
        if let Some(m) = &meta {
            if config.clock.unix_ns == 0 {
                config.clock.mono_ns = m.clock_mono_ns;
                config.clock.unix_ns = m.clock_unix_ns;
            }
        }
        let kernel_path = dir.join(KERNEL);
        let kernel = if kernel_path.is_file() {
            Some(read_jsonl(&kernel_path)?)
        } else {
            None
        };
        let energy_path = dir.join(ENERGY);
        let energy = if energy_path.is_file() {
            Some(read_jsonl(&energy_path)?)
        } else {
            None
        };
        if config.format < config::FORMAT {
            upgrade_from_summary(&mut config, &dir.join(SUMMARY), kernel.is_some());
        }
        Ok(Self {
            dir: dir.into(),
            config,
            records,
            kernel,
            energy,
        })
    }

    /// The records that count: warm-up ones excluded.
    pub fn measured(&self) -> impl Iterator<Item = &RequestRecord> {
        self.records.iter().filter(|r| !r.warmup)
    }

    /// The summary of this run, computed from its files (never read from summary.json).
    pub fn summary(&self) -> Summary {
        crate::summary::of_run(self)
    }
}

/// Fills what format 1 kept only in summary.json: the SLO, the notes and the capture counts.
fn upgrade_from_summary(config: &mut RunConfig, summary: &Path, captured: bool) {
    let Ok(text) = std::fs::read_to_string(summary) else {
        return;
    };
    let Ok(old) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    if config.slo.is_none() {
        config.slo = serde_json::from_value(old["slo"].clone()).ok();
    }
    if config.notes.is_empty() {
        config.notes = serde_json::from_value(old["notes"].clone()).unwrap_or_default();
    }
    if captured && config.capture.is_none() {
        let k = &old["kernel"];
        let n = |key: &str| k[key].as_u64().unwrap_or(0);
        config.capture = Some(CaptureFacts {
            unmatched_exchanges: n("unmatched_exchanges"),
            connections: n("connections"),
            dns_lookups: n("dns_lookups"),
            lost_events: serde_json::from_value(k["lost_events"].clone()).unwrap_or_default(),
            superseded_attempts: n("superseded_attempts"),
            export_latency: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::join::ConnInfo, slo::Slo};

    fn record(id: u64, sent: u64, warmup: bool) -> RequestRecord {
        let mut r = RequestRecord {
            request_id: id,
            t_intended_ns: sent,
            t_sent_ns: Some(sent),
            t_first_token_ns: Some(sent + 20_000_000),
            t_last_token_ns: Some(sent + 40_000_000),
            t_end_ns: Some(sent + 41_000_000),
            chunks: vec![[sent + 20_000_000, 1], [sent + 40_000_000, 1]],
            output_tokens: Some(2),
            success: true,
            warmup,
            ..Default::default()
        };
        r.derive(|m| m);
        r
    }

    fn kernel_line(id: u64, side: &str, t0: u64) -> KernelLine {
        KernelLine {
            request_id: Some(id),
            side: side.into(),
            conn: ConnInfo {
                id,
                ..Default::default()
            },
            t_request_first_ns: Some(t0 + 10_000),
            t_request_last_ns: Some(t0 + 20_000),
            t_response_first_ns: Some(t0 + 19_000_000),
            t_response_last_ns: Some(t0 + 39_900_000),
            chunks: vec![[t0 + 19_000_000, 50], [t0 + 39_900_000, 50]],
            ..Default::default()
        }
    }

    fn write_run(dir: &Path, config: &RunConfig, records: &[RequestRecord]) {
        let meta = RunMeta {
            run_id: config.run_id.clone(),
            target: config.target.clone(),
            model: config.model.clone(),
            api: config.api.clone(),
            tool: "tbctl".into(),
            tool_version: "0".into(),
            clock_mono_ns: 1,
            clock_unix_ns: 2,
        };
        let mut text = serde_json::to_string(&meta).unwrap() + "\n";
        for r in records {
            text += &(serde_json::to_string(r).unwrap() + "\n");
        }
        std::fs::write(dir.join(REQUESTS), text).unwrap();
        let lines: Vec<KernelLine> = records
            .iter()
            .flat_map(|r| {
                ["client", "server"].map(|s| kernel_line(r.request_id, s, r.t_intended_ns))
            })
            .collect();
        write_jsonl(&dir.join(KERNEL), &lines).unwrap();
    }

    #[test]
    fn a_run_read_back_summarises_as_it_did_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            record(0, 0, true),
            record(1, 1_000_000_000, false),
            record(2, 2_000_000_000, false),
        ];
        let config = RunConfig {
            format: config::FORMAT,
            run_id: "r".into(),
            target: "http://t".into(),
            api: "openai-chat".into(),
            model: "m".into(),
            slo: Some("ttft=10ms".parse::<Slo>().unwrap()),
            capture: Some(CaptureFacts {
                connections: 3,
                ..Default::default()
            }),
            notes: vec!["a note".into()],
            // A GPU at 300 W sampled every 100 ms over the measured requests (1.0 to 2.041 s).
            energy: Some(crate::energy::EnergyMeta {
                domains: vec![crate::energy::DomainMeta {
                    name: "gpu/0".into(),
                    device: "gpu".into(),
                    in_total: true,
                    ..Default::default()
                }],
                window_from_ns: 1_000_000_000,
                window_to_ns: 2_041_000_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let samples: Vec<Sample> = (5..=25)
            .map(|i| Sample {
                t_ns: i * 100_000_000,
                readings: vec![crate::energy::Reading {
                    domain: "gpu/0".into(),
                    energy_j: Some(i as f64 * 30.0),
                    ..Default::default()
                }],
            })
            .collect();
        write_jsonl(&dir.path().join(ENERGY), &samples).unwrap();
        write_run(dir.path(), &config, &records);
        write_json(dir.path(), RUN_JSON, &config).unwrap();
        let mut lines: Vec<KernelLine> = read_jsonl(&dir.path().join(KERNEL)).unwrap();
        crate::kernel::join::annotate(&mut lines, &records);
        write_jsonl(&dir.path().join(KERNEL), &lines).unwrap();
        let in_memory = RunData {
            dir: dir.path().into(),
            config,
            records,
            kernel: Some(lines),
            energy: Some(samples),
        }
        .summary();

        let back = RunData::open(dir.path()).unwrap();
        assert_eq!(back.records.len(), 3);
        let again = back.summary();
        assert_eq!(again, in_memory);
        assert_eq!(again.requests.warmup_excluded, 1);
        // Every request misses the 10 ms TTFT objective (TTFT is 20 ms).
        assert_eq!(again.goodput.as_ref().unwrap().value, 0.0);
        let k = again.kernel.as_ref().unwrap();
        assert_eq!((k.requests, k.seen_server_side, k.connections), (2, 2, 3));
        // First token read at +19 ms, written by the server at +19 ms, read at +20 us.
        assert!((k.metrics["server_ttft_ms"].dist.p50 - 18.98).abs() < 1e-9);
        assert_eq!(again.notes, vec!["a note".to_string()]);
        // 1.041 s at 300 W over 4 output tokens.
        let e = again.energy.as_ref().unwrap();
        assert!((e.total_j - 312.3).abs() < 1e-9, "{}", e.total_j);
        assert!((e.j_per_output_token.unwrap() - 312.3 / 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_format_one_run_takes_slo_notes_and_capture_counts_from_its_summary() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![record(1, 1_000_000_000, false)];
        let v1 = RunConfig {
            run_id: "old".into(),
            target: "http://t".into(),
            api: "openai-chat".into(),
            model: "m".into(),
            ..Default::default()
        };
        write_run(dir.path(), &v1, &records);
        let mut run_json = serde_json::to_value(&v1).unwrap();
        for k in ["format", "slo", "capture", "notes", "label"] {
            run_json.as_object_mut().unwrap().remove(k);
        }
        write_json(dir.path(), RUN_JSON, &run_json).unwrap();
        let old_summary = serde_json::json!({
            "slo": {"ttft_ms": 30.0, "tpot_ms": null, "e2e_ms": null},
            "notes": ["from v1"],
            "kernel": {"unmatched_exchanges": 4, "connections": 2, "dns_lookups": 1,
                       "lost_events": {"ringbuf_full": 7}},
        });
        write_json(dir.path(), SUMMARY, &old_summary).unwrap();

        let run = RunData::open(dir.path()).unwrap();
        assert_eq!(run.config.format, 1);
        let s = run.summary();
        assert_eq!(s.slo.as_ref().and_then(|s| s.ttft_ms), Some(30.0));
        assert_eq!(s.notes, vec!["from v1".to_string()]);
        let k = s.kernel.unwrap();
        assert_eq!((k.unmatched_exchanges, k.dns_lookups), (4, 1));
        assert_eq!(k.lost_events["ringbuf_full"], 7);
    }

    #[test]
    fn bad_directories_and_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = RunData::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a run directory"), "{e}");
        std::fs::write(dir.path().join(REQUESTS), "{\"run_id\":1}\n").unwrap();
        let e = RunData::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("requests.jsonl line 1"), "{e}");
    }
}
