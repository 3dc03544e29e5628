//! Properties that must hold for every input, not just the examples the unit tests pick: the
//! stream framers give the same events however the bytes are split, and schedules keep their
//! rate and order for every pattern, rate and seed.

use proptest::prelude::*;
use tbctl::{
    api::{
        ndjson::NdjsonParser,
        sse::{SseEvent, SseParser},
    },
    workload::schedule::{Pattern, Schedule},
};

/// Bytes cut at the given points (taken modulo the length, sorted, deduplicated).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut parts = Vec::new();
    let mut at = 0;
    for c in cuts {
        parts.push(&bytes[at..c]);
        at = c;
    }
    parts.push(&bytes[at..]);
    parts
}

/// The events an SSE parser makes of `parts`: Some(data) per data event, None for [DONE].
fn sse_events(parts: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    let mut on = |e: SseEvent<'_>| {
        out.push(match e {
            SseEvent::Data(d) => Some(d.to_vec()),
            SseEvent::Done => None,
        })
    };
    for part in parts {
        p.push(part, &mut on);
    }
    p.finish(&mut on);
    out
}

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sse_events_survive_any_split_and_any_line_ending(
        payloads in prop::collection::vec("[a-zA-Z0-9 {}\":,]{0,40}", 1..12),
        ends in prop::collection::vec(line_end(), 12),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut stream = String::new();
        for (i, p) in payloads.iter().enumerate() {
            let e = ends[i % ends.len()];
            stream.push_str(&format!("data: {p}{e}{e}"));
        }
        stream.push_str("data: [DONE]\n\n");
        let bytes = stream.as_bytes();
        let events = sse_events(&split(bytes, &cuts));
        let mut want: Vec<Option<Vec<u8>>> =
            payloads.iter().map(|p| Some(p.as_bytes().to_vec())).collect();
        want.push(None);
        prop_assert_eq!(&events, &want);
        // Byte by byte gives the same.
        let bytes_one: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(sse_events(&bytes_one), want);
    }

    #[test]
    fn ndjson_lines_survive_any_split(
        lines in prop::collection::vec("[a-z0-9{}\":,]{1,40}", 1..12),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        final_newline in any::<bool>(),
    ) {
        let mut stream = lines.join("\n");
        if final_newline {
            stream.push('\n');
        }
        let mut p = NdjsonParser::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        for part in split(stream.as_bytes(), &cuts) {
            p.push(part, &mut |l: &[u8]| got.push(l.to_vec()));
        }
        p.finish(&mut |l: &[u8]| got.push(l.to_vec()));
        let want: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn schedules_start_at_zero_never_go_back_and_keep_their_rate(
        pattern in prop_oneof![
            Just(Pattern::Uniform),
            Just(Pattern::Poisson),
            (0.25f64..4.0).prop_map(|b| Pattern::Gamma { burstiness: b }),
        ],
        rate in 0.5f64..20_000.0,
        seed in any::<u64>(),
    ) {
        const N: usize = 4000;
        let t: Vec<u64> = Schedule::new(pattern, rate, seed).unwrap().take(N).collect();
        prop_assert_eq!(t[0], 0);
        prop_assert!(t.windows(2).all(|w| w[1] >= w[0]));
        // N - 1 gaps of mean 1/rate: the mean is within 5 standard errors (gamma's coefficient
        // of variation is 1/sqrt(burstiness), at most 2 here), and exact for uniform.
        let mean_s = t[N - 1] as f64 / 1e9 / (N - 1) as f64;
        let rel = (mean_s * rate - 1.0).abs();
        let tolerance = match pattern {
            Pattern::Uniform => 1e-6,
            _ => 5.0 * 2.0 / ((N - 1) as f64).sqrt(),
        };
        prop_assert!(rel <= tolerance, "mean gap off by {:.4} of 1/rate", rel);
        // The same seed gives the same schedule.
        let again: Vec<u64> = Schedule::new(pattern, rate, seed).unwrap().take(N).collect();
        prop_assert_eq!(t, again);
    }

    #[test]
    fn a_ramp_reaches_its_arrivals_by_the_integral_of_its_rate(
        from in 0.0f64..50.0,
        to in 1.0f64..500.0,
        over_s in 1u64..30,
    ) {
        let s = Schedule::new(Pattern::Uniform, 1.0, 0)
            .unwrap()
            .with_ramp(from, to, std::time::Duration::from_secs(over_s))
            .unwrap();
        let end_ns = over_s * 1_000_000_000;
        let n = s.take_while(|t| *t < end_ns).count() as f64;
        // Uniform arrivals in operational time: the count by the ramp's end is its area.
        let area = (from + to) / 2.0 * over_s as f64;
        prop_assert!((n - area).abs() <= 1.5, "{} arrivals for an area of {}", n, area);
    }
}
