//! The run directory: runs/<run_id>/ with run.json, requests.jsonl, summary.json, kernel.jsonl.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A new run id: UTC time of the start plus a short random suffix, e.g. 20261123-081502-a3f9.
pub fn new_run_id(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let salt = (unix_ns ^ (std::process::id() as u64).wrapping_mul(0x9e37_79b9)) & 0xffff;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{salt:04x}",
        t / 3600,
        (t / 60) % 60,
        t % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_read_as_utc_time() {
        // 2026-11-23 08:15:02 UTC
        let id = new_run_id(1_795_421_702_000_000_000);
        assert!(id.starts_with("20261123-081502-"), "{id}");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
