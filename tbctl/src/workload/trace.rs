//! Request traces for replay: Azure LLM inference CSV, Mooncake JSONL, BurstGPT CSV and our own
//! JSONL, loaded into one entry type, then windowed, rescaled and turned into work items.
//!
//! Offsets are relative to the earliest request and entries are sorted by offset, whatever order
//! the file had. Two Azure traces ship inside the binary (`azure-code`, `azure-conv`).

use std::{fmt, str::FromStr, time::Duration};

use serde_json::{Map, Value};

use super::{dataset::synth_prompt_counted, item::WorkItem};
use crate::tokens;

/// Names of the traces compiled into the binary; `load` takes them in place of a path.
pub const BUILTIN_TRACES: &[&str] = &["azure-code", "azure-conv"];

fn builtin(name: &str) -> Option<&'static str> {
    match name {
        "azure-code" => Some(include_str!(
            "../../data/azure-llm-2023/AzureLLMInferenceTrace_code.csv"
        )),
        "azure-conv" => Some(include_str!(
            "../../data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv"
        )),
        _ => None,
    }
}

/// One request of a trace: when it arrived and how large it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Arrival in ns after the trace's first request.
    pub offset_ns: u64,
    /// Prompt tokens, as the trace counted them.
    pub input_tokens: u32,
    /// Output tokens the request produced; 0 for requests that failed.
    pub output_tokens: u32,
    /// The prompt itself, when the trace carries it (our own JSONL); otherwise one is synthesised.
    pub prompt: Option<String>,
}

/// The file formats `load` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Azure LLM inference trace CSV: `TIMESTAMP,ContextTokens,GeneratedTokens`.
    Azure,
    /// Mooncake JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    Mooncake,
    /// BurstGPT CSV: `Timestamp` (s), `Model`, `Request tokens`, `Response tokens`, ...
    BurstGpt,
    /// TrafficBench JSONL: `t_ms`, `input_tokens`, `output_tokens`, optional `prompt`.
    Jsonl,
}

impl TraceFormat {
    /// Every format with its `--trace-format` name and what it reads, for `tbctl list`.
    pub const KINDS: [(&'static str, &'static str); 4] = [
        (
            "azure",
            "Azure LLM inference trace CSV: TIMESTAMP,ContextTokens,GeneratedTokens",
        ),
        (
            "mooncake",
            "Mooncake JSONL: timestamp (ms), input_length, output_length, hash_ids",
        ),
        (
            "burstgpt",
            "BurstGPT CSV: Timestamp (s), Model, Request tokens, Response tokens",
        ),
        (
            "jsonl",
            "TrafficBench JSONL: t_ms, input_tokens, output_tokens, optional prompt",
        ),
    ];
}

impl FromStr for TraceFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "azure" => Ok(TraceFormat::Azure),
            "mooncake" => Ok(TraceFormat::Mooncake),
            "burstgpt" | "burst-gpt" => Ok(TraceFormat::BurstGpt),
            "jsonl" => Ok(TraceFormat::Jsonl),
            _ => Err(format!(
                "unknown trace format '{s}': use azure, mooncake, burstgpt or jsonl"
            )),
        }
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceFormat::Azure => "azure",
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::BurstGpt => "burstgpt",
            TraceFormat::Jsonl => "jsonl",
        })
    }
}

/// Why a trace could not be loaded or replayed; each message is one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read (built-in names are listed, since a typo lands here).
    #[error("cannot read trace {path}: {source} (built-in traces: azure-code, azure-conv)")]
    Read {
        /// The path as given.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line is not what the format requires.
    #[error("trace {file} line {line}: {msg}")]
    Malformed {
        /// The trace name or path as given.
        file: String,
        /// 1-based line number in the file.
        line: usize,
        /// What is wrong with the line.
        msg: String,
    },
    /// No format was given and the first line matches none.
    #[error(
        "cannot tell the format of trace {file}: {why}; name it (azure, mooncake, burstgpt or jsonl)"
    )]
    UnknownFormat {
        /// The trace name or path as given.
        file: String,
        /// What the first line looked like.
        why: String,
    },
    /// The file holds no requests.
    #[error("trace {file} has no requests")]
    Empty {
        /// The trace name or path as given.
        file: String,
    },
    /// A replay option is out of range.
    #[error("trace replay: {0}")]
    BadOption(String),
    /// The replay options leave no request to send.
    #[error("trace replay selects no requests: {0}")]
    NothingSelected(String),
}

/// Loads a trace from a built-in name (see `BUILTIN_TRACES`) or a file path. With no `format`,
/// the format is told from the first line, since both CSV formats share the `.csv` extension.
pub fn load(spec: &str, format: Option<TraceFormat>) -> Result<Vec<TraceEntry>, TraceError> {
    if let Some(text) = builtin(spec) {
        return parse(spec, text, Some(format.unwrap_or(TraceFormat::Azure)));
    }
    let text = std::fs::read_to_string(spec).map_err(|source| TraceError::Read {
        path: spec.to_string(),
        source,
    })?;
    parse(spec, &text, format)
}

/// Parses trace text already in memory; `name` is used in error messages only.
pub fn parse(
    name: &str,
    text: &str,
    format: Option<TraceFormat>,
) -> Result<Vec<TraceEntry>, TraceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if lines(text).next().is_none() {
        return Err(TraceError::Empty {
            file: name.to_string(),
        });
    }
    let format = match format {
        Some(f) => f,
        None => detect(name, text)?,
    };
    let malformed = |line: usize, msg: String| TraceError::Malformed {
        file: name.to_string(),
        line,
        msg,
    };
    let rows = match format {
        TraceFormat::Azure => parse_csv(
            text,
            &["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
            parse_datetime_ns,
            "a date-time like 2023-11-16 18:17:03.9799600",
        ),
        TraceFormat::BurstGpt => parse_csv(
            text,
            &["Timestamp", "Request tokens", "Response tokens"],
            |s| seconds_to_ns(s.parse().ok()?, 1e9),
            "a number of seconds",
        ),
        TraceFormat::Mooncake => parse_json_lines(text, |obj| {
            Ok(Row {
                at_ns: json_time(obj, "timestamp", 1e6, "milliseconds")?,
                input: json_tokens(obj, "input_length")?,
                output: json_tokens(obj, "output_length")?,
                prompt: None,
            })
        }),
        TraceFormat::Jsonl => parse_json_lines(text, |obj| {
            let prompt = match obj.get("prompt") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(p.clone()),
                Some(other) => return Err(format!("prompt {other} is not a string")),
            };
            let input = match (obj.get("input_tokens"), &prompt) {
                (None, Some(p)) => tokens::estimate(p),
                _ => json_tokens(obj, "input_tokens")?,
            };
            Ok(Row {
                at_ns: json_time(obj, "t_ms", 1e6, "milliseconds")?,
                input,
                output: json_tokens(obj, "output_tokens")?,
                prompt,
            })
        }),
    }
    .map_err(|(line, msg)| malformed(line, msg))?;
    if rows.is_empty() {
        return Err(TraceError::Empty {
            file: name.to_string(),
        });
    }
    Ok(rebase(rows))
}

/// How to replay a trace: which part, how fast, and how much of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Multiplies every gap: 0.5 replays twice as fast, 2 half as fast.
    pub time_scale: f64,
    /// Multiplies the request rate, i.e. divides every offset: 2 replays twice as fast.
    pub rate_scale: f64,
    /// Keeps requests with offsets in `[start, end)` of the original trace, re-based so the first
    /// kept request is at 0 (a quiet start of the window is not replayed as idle time).
    pub window: Option<(Duration, Duration)>,
    /// Keeps at most this many requests, the earliest, after windowing.
    pub max_requests: Option<usize>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            time_scale: 1.0,
            rate_scale: 1.0,
            window: None,
            max_requests: None,
        }
    }
}

/// Applies `opts` in order window, scale, limit. Errors when an option is out of range or the
/// result would be empty, so a replay never silently sends nothing.
pub fn apply(
    mut entries: Vec<TraceEntry>,
    opts: &ReplayOptions,
) -> Result<Vec<TraceEntry>, TraceError> {
    for (name, value) in [
        ("time scale", opts.time_scale),
        ("rate scale", opts.rate_scale),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(TraceError::BadOption(format!(
                "{name} must be a positive number, got {value}"
            )));
        }
    }
    if entries.is_empty() {
        return Err(TraceError::NothingSelected("the trace is empty".into()));
    }
    if let Some((start, end)) = opts.window {
        if end <= start {
            return Err(TraceError::BadOption(format!(
                "window {start:?}..{end:?} is empty: the end must come after the start"
            )));
        }
        let span = entries.iter().map(|e| e.offset_ns).max().unwrap_or(0);
        let (lo, hi) = (duration_ns(start), duration_ns(end));
        entries.retain(|e| e.offset_ns >= lo && e.offset_ns < hi);
        let Some(base) = entries.iter().map(|e| e.offset_ns).min() else {
            return Err(TraceError::NothingSelected(format!(
                "no request in the window {start:?}..{end:?} (the trace's last request is at {:?})",
                Duration::from_nanos(span)
            )));
        };
        for e in &mut entries {
            e.offset_ns -= base;
        }
    }
    let factor = opts.time_scale / opts.rate_scale;
    if factor != 1.0 {
        for e in &mut entries {
            // Offsets stay far below 2^53 ns (104 days), so f64 keeps them exact enough.
            e.offset_ns = (e.offset_ns as f64 * factor).round() as u64;
        }
    }
    if let Some(max) = opts.max_requests {
        if max == 0 {
            return Err(TraceError::NothingSelected("the request limit is 0".into()));
        }
        entries.truncate(max);
    }
    Ok(entries)
}

/// Turns entries into work items: the trace's prompt or a synthetic one of the trace's size
/// (`synth_prompt(seed, i, input_tokens)`), at least 1 output token (failed requests record 0),
/// and the trace's offset as the send time.
pub fn to_items(entries: &[TraceEntry], seed: u64) -> Vec<WorkItem> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (prompt, input_tokens) = match &e.prompt {
                Some(p) => (p.clone(), e.input_tokens),
                None => synth_prompt_counted(seed, i as u64, e.input_tokens),
            };
            WorkItem {
                prompt,
                input_tokens,
                max_tokens: Some(e.output_tokens.max(1)),
                at_ns: Some(e.offset_ns),
            }
        })
        .collect()
}

/// One parsed line before re-basing: absolute time in ns (any origin) and sizes.
struct Row {
    at_ns: i128,
    input: u32,
    output: u32,
    prompt: Option<String>,
}

/// A line-numbered error before the file name is attached.
type LineError = (usize, String);

/// Sorts by time (stable, so equal times keep file order) and makes offsets relative to the
/// earliest request.
fn rebase(mut rows: Vec<Row>) -> Vec<TraceEntry> {
    rows.sort_by_key(|r| r.at_ns);
    let base = rows.first().map_or(0, |r| r.at_ns);
    rows.into_iter()
        .map(|r| TraceEntry {
            offset_ns: u64::try_from(r.at_ns - base).unwrap_or(u64::MAX),
            input_tokens: r.input,
            output_tokens: r.output,
            prompt: r.prompt,
        })
        .collect()
}

/// Non-blank lines with 1-based numbers; a trailing `\r` (CRLF files) is not part of the line.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
}

fn detect(name: &str, text: &str) -> Result<TraceFormat, TraceError> {
    let unknown = |why: String| TraceError::UnknownFormat {
        file: name.to_string(),
        why,
    };
    let (_, first) = lines(text)
        .next()
        .ok_or_else(|| unknown("it is empty".into()))?;
    let first = first.trim();
    if first.starts_with('{') {
        let value: Value = serde_json::from_str(first)
            .map_err(|e| unknown(format!("the first line is not valid JSON ({e})")))?;
        if value.get("input_length").is_some() || value.get("hash_ids").is_some() {
            return Ok(TraceFormat::Mooncake);
        }
        if value.get("t_ms").is_some() || value.get("input_tokens").is_some() {
            return Ok(TraceFormat::Jsonl);
        }
        return Err(unknown(
            "the first JSON line has neither input_length (Mooncake) nor t_ms (TrafficBench JSONL)"
                .into(),
        ));
    }
    let header = first.to_ascii_lowercase();
    if header.contains("contexttokens") {
        Ok(TraceFormat::Azure)
    } else if header.contains("request tokens") {
        Ok(TraceFormat::BurstGpt)
    } else {
        Err(unknown(format!(
            "the first line '{}' is not a known CSV header or JSON",
            first.chars().take(60).collect::<String>()
        )))
    }
}

/// Reads a CSV with a header naming `columns` (time, input tokens, output tokens) in any order
/// among others; `time_hint` says what the time column should look like.
fn parse_csv(
    text: &str,
    columns: &[&str; 3],
    parse_time: impl Fn(&str) -> Option<i128>,
    time_hint: &str,
) -> Result<Vec<Row>, LineError> {
    let mut lines = lines(text);
    let Some((header_line, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let names = split_csv(header).map_err(|e| (header_line, e))?;
    let mut index = [0usize; 3];
    for (slot, column) in index.iter_mut().zip(columns) {
        *slot = names
            .iter()
            .position(|n| n.trim().eq_ignore_ascii_case(column))
            .ok_or_else(|| {
                (
                    header_line,
                    format!(
                        "the header has no {column} column (expected {})",
                        columns.join(",")
                    ),
                )
            })?;
    }
    let needed = index.iter().max().map_or(0, |m| m + 1);
    let mut rows = Vec::new();
    for (line, text) in lines {
        let fields = split_csv(text).map_err(|e| (line, e))?;
        if fields.len() < needed {
            return Err((
                line,
                format!(
                    "expected {} fields like the header, found {}",
                    names.len(),
                    fields.len()
                ),
            ));
        }
        let field = |i: usize| fields[index[i]].trim();
        let at_ns = parse_time(field(0)).ok_or_else(|| {
            (
                line,
                format!("{} '{}' is not {time_hint}", columns[0], field(0)),
            )
        })?;
        let tokens = |i: usize| {
            field(i).parse::<u32>().map_err(|_| {
                (
                    line,
                    format!("{} '{}' is not a number", columns[i], field(i)),
                )
            })
        };
        rows.push(Row {
            at_ns,
            input: tokens(1)?,
            output: tokens(2)?,
            prompt: None,
        });
    }
    Ok(rows)
}

/// Splits one CSV line, honouring double quotes (`""` inside quotes is a quote).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields)
}

fn parse_json_lines(
    text: &str,
    row: impl Fn(&Map<String, Value>) -> Result<Row, String>,
) -> Result<Vec<Row>, LineError> {
    lines(text)
        .map(|(line, text)| {
            let value: Value =
                serde_json::from_str(text).map_err(|e| (line, format!("not valid JSON ({e})")))?;
            let obj = value
                .as_object()
                .ok_or_else(|| (line, "not a JSON object".to_string()))?;
            row(obj).map_err(|msg| (line, msg))
        })
        .collect()
}

fn json_tokens(obj: &Map<String, Value>, key: &str) -> Result<u32, String> {
    let value = obj.get(key).ok_or_else(|| format!("{key} is missing"))?;
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{key} {value} is not a token count"))
}

fn json_time(
    obj: &Map<String, Value>,
    key: &str,
    unit_ns: f64,
    unit: &str,
) -> Result<i128, String> {
    let value = obj.get(key).ok_or_else(|| format!("{key} is missing"))?;
    // Integers go through i128 so millisecond epochs keep every digit.
    if let Some(n) = value.as_i64() {
        return Ok(n as i128 * unit_ns as i128);
    }
    value
        .as_f64()
        .and_then(|x| seconds_to_ns(x, unit_ns))
        .ok_or_else(|| format!("{key} {value} is not a number of {unit}"))
}

/// `x` units of `unit_ns` each, in ns; `None` for values no trace could hold.
fn seconds_to_ns(x: f64, unit_ns: f64) -> Option<i128> {
    let ns = (x * unit_ns).round();
    (ns.is_finite() && ns.abs() < 1e30).then_some(ns as i128)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`, optional trailing `Z`) as ns since the
/// Unix epoch, treating it as UTC; only differences matter, so the time zone does not.
fn parse_datetime_ns(s: &str) -> Option<i128> {
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s).replacen('T', " ", 1);
    // Fractions past ns precision cannot matter to a replay.
    let s = match s.split_once('.') {
        Some((whole, f)) if f.len() > 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{whole}.{}", &f[..9])
        }
        _ => s,
    };
    let t = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.f", &s).ok()?;
    Some(
        t.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_nanosecond(),
    )
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
