//! Run ids: the UTC time of the run's start and a short random suffix.

use jiff::Timestamp;

/// A new run id: UTC time of the start plus a short random suffix, e.g. 20261123-081502-a3f9.
pub fn new_run_id(unix_ns: u64) -> String {
    let time = Timestamp::from_nanosecond(unix_ns as i128)
        .map(|t| t.strftime("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|_| "00000000-000000".into());
    let salt = (unix_ns ^ (std::process::id() as u64).wrapping_mul(0x9e37_79b9)) & 0xffff;
    format!("{time}-{salt:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_read_as_utc_time() {
        // 2026-11-23 08:15:02 UTC
        let id = new_run_id(1_795_421_702_000_000_000);
        assert!(id.starts_with("20261123-081502-"), "{id}");
        // 2000-02-29 00:00:00 UTC
        assert!(new_run_id(951_782_400_000_000_000).starts_with("20000229-000000-"));
    }
}
