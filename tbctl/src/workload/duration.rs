//! Human-friendly durations and ranges as the command line reads them: `500ms`, `2s`, `5m`,
//! `10..100`, `0s..60s`. Errors are one line that shows the accepted forms.

use std::time::Duration;

const DURATION_HINT: &str = "use e.g. 500ms, 2s, 5m";

/// Parses a duration: a non-negative number, optionally fractional, followed by `ns`, `us` (or
/// `µs`), `ms`, `s`, `m` (or `min`) or `h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration '{s}': {DURATION_HINT}");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let unit_ns = match unit.trim_start() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "" | "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return Err(bad()),
    };
    let ns = (value * unit_ns).round();
    // `as u64` would saturate silently; a duration this long is a typo, not a request.
    if !ns.is_finite() || ns >= u64::MAX as f64 {
        return Err(format!("bad duration '{s}': too long"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// Parses `FROM..TO` into two finite numbers, e.g. `10..100` for a rate ramp. FROM may exceed TO
/// (a ramp down); the caller checks what the numbers mean.
pub fn parse_range(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("bad range '{s}': use FROM..TO, e.g. 10..100");
    let (from, to) = s.trim().split_once("..").ok_or_else(bad)?;
    let from: f64 = from.trim().parse().map_err(|_| bad())?;
    let to: f64 = to.trim().parse().map_err(|_| bad())?;
    if !from.is_finite() || !to.is_finite() {
        return Err(bad());
    }
    Ok((from, to))
}

/// Parses `FROM..TO` where both sides are durations, e.g. `0s..60s` or `5m..10m` for a trace
/// window; TO must come after FROM, since an empty window selects nothing.
pub fn parse_duration_range(s: &str) -> Result<(Duration, Duration), String> {
    let (from, to) = s
        .trim()
        .split_once("..")
        .ok_or_else(|| format!("bad range '{s}': use FROM..TO, e.g. 0s..60s"))?;
    let from = parse_duration(from)?;
    let to = parse_duration(to)?;
    if to <= from {
        return Err(format!(
            "bad range '{s}': the end must come after the start"
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn bare_number_is_seconds() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn errors_are_one_clear_line() {
        assert_eq!(
            parse_duration("5x").unwrap_err(),
            "bad duration '5x': use e.g. 500ms, 2s, 5m"
        );
        for bad in ["", "ms", "-1s", "1..2s", "s5", "1e3s", "five seconds", "."] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.starts_with("bad duration"), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
        assert!(parse_duration("99999999999h")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn numeric_ranges() {
        assert_eq!(parse_range("10..100"), Ok((10.0, 100.0)));
        assert_eq!(parse_range("1.5..2.5"), Ok((1.5, 2.5)));
        assert_eq!(parse_range("100..10"), Ok((100.0, 10.0)));
        assert_eq!(parse_range(" 0 .. 50 "), Ok((0.0, 50.0)));
        for bad in ["10", "10..", "..10", "a..b", "10-100", "inf..1"] {
            let err = parse_range(bad).unwrap_err();
            assert_eq!(
                err,
                format!("bad range '{bad}': use FROM..TO, e.g. 10..100")
            );
        }
    }

    #[test]
    fn duration_ranges() {
        assert_eq!(
            parse_duration_range("0s..60s"),
            Ok((Duration::ZERO, Duration::from_secs(60)))
        );
        assert_eq!(
            parse_duration_range("1.5s..2m"),
            Ok((Duration::from_millis(1500), Duration::from_secs(120)))
        );
        assert_eq!(
            parse_duration_range("10..20"),
            Ok((Duration::from_secs(10), Duration::from_secs(20)))
        );
        assert!(parse_duration_range("60s..0s")
            .unwrap_err()
            .contains("end must come after the start"));
        assert!(parse_duration_range("5s..5s").is_err());
        assert!(parse_duration_range("0s")
            .unwrap_err()
            .starts_with("bad range '0s'"));
        assert_eq!(
            parse_duration_range("0s..5x").unwrap_err(),
            "bad duration '5x': use e.g. 500ms, 2s, 5m"
        );
    }
}
