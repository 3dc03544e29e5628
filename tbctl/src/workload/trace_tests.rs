//! Tests of `trace.rs`, kept beside it.

use super::*;

const SEC: u64 = 1_000_000_000;

fn entry(offset_ns: u64) -> TraceEntry {
    TraceEntry {
        offset_ns,
        input_tokens: 10,
        output_tokens: 5,
        prompt: None,
    }
}

fn offsets(entries: &[TraceEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.offset_ns).collect()
}

#[test]
fn azure_timestamps_parse_to_ns() {
    let t = parse_datetime_ns("2023-11-16 18:17:03.9799600").unwrap();
    assert_eq!(
        t,
        (1_700_092_800 + 18 * 3600 + 17 * 60 + 3) as i128 * 1_000_000_000 + 979_960_000
    );
    // Seven fractional digits are 100 ns units.
    let a = parse_datetime_ns("2023-11-16 18:17:03.0000001").unwrap();
    let b = parse_datetime_ns("2023-11-16 18:17:03").unwrap();
    assert_eq!(a - b, 100);
    assert_eq!(
        parse_datetime_ns("2023-11-16T18:17:03.5Z").unwrap() - b,
        500_000_000
    );
}

#[test]
fn azure_timestamps_cross_minute_hour_day_and_month_boundaries() {
    let diff = |a: &str, b: &str| parse_datetime_ns(b).unwrap() - parse_datetime_ns(a).unwrap();
    assert_eq!(
        diff("2023-11-16 18:16:59.9799600", "2023-11-16 18:17:00.0319600"),
        52_000_000
    );
    assert_eq!(
        diff("2023-11-16 18:59:59.9999999", "2023-11-16 19:00:00.0000001"),
        200
    );
    assert_eq!(
        diff("2023-11-16 23:59:59", "2023-11-17 00:00:00"),
        1_000_000_000
    );
    assert_eq!(
        diff("2023-02-28 23:59:59", "2023-03-01 00:00:00"),
        1_000_000_000
    );
    assert_eq!(
        diff("2024-02-28 23:59:59", "2024-03-01 00:00:00"),
        86_401_000_000_000
    );
    assert_eq!(
        diff("2023-12-31 23:59:59.5", "2024-01-01 00:00:00"),
        500_000_000
    );
}

#[test]
fn bad_timestamps_are_rejected() {
    for bad in [
        "2023-11-16",
        "2023-13-01 00:00:00",
        "2023-02-29 00:00:00",
        "2023-11-31 00:00:00",
        "2023-11-16 24:00:00",
        "2023-11-16 18:60:00",
        "2023-11-16 18:17:03.",
        "2023-11-16 18:17:03.12a",
        "2023-11-16 18:17",
        "2023-11-16 18:17:03:01",
        "2023/11/16 18:17:03",
        "1700092800",
    ] {
        assert_eq!(parse_datetime_ns(bad), None, "{bad}");
    }
}

const AZURE: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
    2023-11-16 18:59:59.5000000,100,10\n\
    2023-11-16 19:00:00.2500000,200,0\n\
    2023-11-16 19:00:01.0000000,300,30\n";

#[test]
fn azure_csv_parses_with_crlf_and_without_final_newline() {
    let lf = parse("t.csv", AZURE, None).unwrap();
    assert_eq!(offsets(&lf), vec![0, 750_000_000, 1_500_000_000]);
    assert_eq!(lf[1].input_tokens, 200);
    assert_eq!(lf[1].output_tokens, 0);
    let crlf = AZURE.replace('\n', "\r\n");
    assert_eq!(parse("t.csv", &crlf, None).unwrap(), lf);
    assert_eq!(parse("t.csv", crlf.trim_end(), None).unwrap(), lf);
    assert_eq!(parse("t.csv", AZURE.trim_end(), None).unwrap(), lf);
    // A CR with no LF after it ends the file in a CRLF trace cut short.
    let cut = format!("{}\r", crlf.trim_end());
    assert_eq!(parse("t.csv", &cut, None).unwrap(), lf);
    let bom = format!("\u{feff}{AZURE}\n\n");
    assert_eq!(parse("t.csv", &bom, None).unwrap(), lf);
}

#[test]
fn malformed_lines_name_file_line_and_problem() {
    let bad = AZURE.replace("300,30", "300,abc");
    assert_eq!(
        parse("foo.csv", &bad, None).unwrap_err().to_string(),
        "trace foo.csv line 4: GeneratedTokens 'abc' is not a number"
    );
    let bad = AZURE.replace("2023-11-16 19:00:00.25", "2023-11-16 19:00:61.25");
    let err = parse("foo.csv", &bad, None).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "trace foo.csv line 3: TIMESTAMP '2023-11-16 19:00:61.2500000' is not a date-time"
        ),
        "{err}"
    );
    let bad = AZURE.replace("200,0", "200");
    assert_eq!(
        parse("foo.csv", &bad, None).unwrap_err().to_string(),
        "trace foo.csv line 3: expected 3 fields like the header, found 2"
    );
    let bad = AZURE.replace("100,10", "-100,10");
    assert!(parse("foo.csv", &bad, None)
        .unwrap_err()
        .to_string()
        .ends_with("ContextTokens '-100' is not a number"));
    let err = parse(
        "foo.csv",
        "TIMESTAMP,ContextTokens\n2023-11-16 18:00:00,1\n",
        Some(TraceFormat::Azure),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err, "trace foo.csv line 1: the header has no GeneratedTokens column (expected TIMESTAMP,ContextTokens,GeneratedTokens)");
}

#[test]
fn empty_traces_are_errors() {
    for text in [
        "",
        "\n\r\n  \n",
        "TIMESTAMP,ContextTokens,GeneratedTokens\r\n",
    ] {
        let err = parse("e.csv", text, None).unwrap_err().to_string();
        assert_eq!(err, "trace e.csv has no requests");
    }
}

#[test]
fn unsorted_rows_are_sorted_and_rebased() {
    let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
        2023-11-16 18:00:02,2,2\n\
        2023-11-16 18:00:01,1,1\n\
        2023-11-16 18:00:03,3,3\n";
    let e = parse("u.csv", text, None).unwrap();
    assert_eq!(offsets(&e), vec![0, SEC, 2 * SEC]);
    assert_eq!(
        e.iter().map(|e| e.input_tokens).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn builtin_azure_traces_load_completely() {
    // 8,820 lines: a header and 8,819 requests (the last line has no newline).
    let code = load("azure-code", None).unwrap();
    assert_eq!(code.len(), 8_819);
    assert_eq!(code[0].offset_ns, 0);
    assert!(code.windows(2).all(|w| w[0].offset_ns <= w[1].offset_ns));
    assert_eq!(code.iter().map(|e| e.input_tokens).max(), Some(7_437));
    let last = code.last().unwrap();
    // 18:17:03.9799600 to 19:14:19.9280160.
    assert_eq!(last.offset_ns, 3_435_948_056_000);
    assert_eq!((last.input_tokens, last.output_tokens), (549, 173));
    let conv = load("azure-conv", None).unwrap();
    assert_eq!(conv.len(), 19_366);
    assert_eq!(conv.iter().map(|e| e.input_tokens).max(), Some(14_050));
}

#[test]
fn mooncake_jsonl() {
    let text = r#"{"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}
{"timestamp": 3052, "input_length": 6472, "output_length": 26, "hash_ids": [46, 47, 48]}
"#;
    let e = parse("m.jsonl", text, None).unwrap();
    assert_eq!(offsets(&e), vec![0, 3_052_000_000]);
    assert_eq!((e[1].input_tokens, e[1].output_tokens), (6472, 26));
    let bad = text.replace("\"output_length\": 26", "\"output_length\": -1");
    assert_eq!(
        parse("m.jsonl", &bad, None).unwrap_err().to_string(),
        "trace m.jsonl line 2: output_length -1 is not a token count"
    );
    let bad = text.replace(", \"input_length\": 6472", "");
    assert_eq!(
        parse("m.jsonl", &bad, Some(TraceFormat::Mooncake))
            .unwrap_err()
            .to_string(),
        "trace m.jsonl line 2: input_length is missing"
    );
    let bad = format!("{text}{{not json\n");
    assert!(parse("m.jsonl", &bad, None)
        .unwrap_err()
        .to_string()
        .starts_with("trace m.jsonl line 3: not valid JSON"));
}

#[test]
fn burstgpt_csv_keeps_failed_requests() {
    let text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\r\n\
        5,ChatGPT,472,18,490,Conversation log\r\n\
        45.5,GPT-4,1087,0,1087,Conversation log\r\n\
        46,\"ChatGPT, \"\"mini\"\"\",20,30,50,API log";
    let e = parse("b.csv", text, None).unwrap();
    assert_eq!(offsets(&e), vec![0, 40_500_000_000, 41 * SEC]);
    assert_eq!((e[1].input_tokens, e[1].output_tokens), (1087, 0));
    let items = to_items(&e, 1);
    assert_eq!(items[1].max_tokens, Some(1));
    assert_eq!(items[0].max_tokens, Some(18));
    let bad = text.replace("45.5,", "soon,");
    assert_eq!(
        parse("b.csv", &bad, None).unwrap_err().to_string(),
        "trace b.csv line 3: Timestamp 'soon' is not a number of seconds"
    );
}

#[test]
fn own_jsonl_keeps_prompts() {
    let text = r#"{"t_ms": 1.5, "input_tokens": 7, "output_tokens": 3, "prompt": "Hello there"}
{"t_ms": 0.25, "input_tokens": 120, "output_tokens": 9}
{"t_ms": 2000, "output_tokens": 4, "prompt": "Count me, please."}
"#;
    let e = parse("own.jsonl", text, None).unwrap();
    assert_eq!(offsets(&e), vec![0, 1_250_000, 1_999_750_000]);
    assert_eq!(e[1].prompt.as_deref(), Some("Hello there"));
    assert_eq!(e[2].input_tokens, tokens::estimate("Count me, please."));
    let items = to_items(&e, 5);
    assert_eq!(items[1].prompt, "Hello there");
    assert_eq!(items[1].input_tokens, 7);
    assert_eq!(items[0].input_tokens, 120);
    assert_eq!(tokens::estimate(&items[0].prompt), 120);
    assert_eq!(items[0].prompt, synth_prompt_counted(5, 0, 120).0);
    assert_eq!(items[2].at_ns, Some(1_999_750_000));
    let bad = text.replace("\"Hello there\"", "42");
    assert_eq!(
        parse("own.jsonl", &bad, None).unwrap_err().to_string(),
        "trace own.jsonl line 1: prompt 42 is not a string"
    );
}

#[test]
fn format_detection_and_names() {
    assert_eq!(detect("x", AZURE).unwrap(), TraceFormat::Azure);
    assert_eq!(
        detect("x", "Timestamp,Model,Request tokens,Response tokens\n").unwrap(),
        TraceFormat::BurstGpt
    );
    assert_eq!(
        detect(
            "x",
            "{\"timestamp\": 1, \"input_length\": 2, \"output_length\": 3}"
        )
        .unwrap(),
        TraceFormat::Mooncake
    );
    assert_eq!(
        detect(
            "x",
            "{\"t_ms\": 1, \"input_tokens\": 2, \"output_tokens\": 3}"
        )
        .unwrap(),
        TraceFormat::Jsonl
    );
    // A TrafficBench JSONL line missing one of its two keys is still read as one, so the
    // error names the missing key rather than the format.
    for line in ["{\"input_tokens\": 2}", "{\"t_ms\": 1}"] {
        assert_eq!(detect("x", line).unwrap(), TraceFormat::Jsonl, "{line}");
    }
    let err = parse(
        "x.jsonl",
        "{\"input_tokens\": 2, \"output_tokens\": 3}\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("t_ms is missing"), "{err}");
    let err = parse("x.csv", "a,b,c\n1,2,3\n", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot tell the format of trace x.csv: the first line 'a,b,c'"),
        "{err}"
    );
    assert!(!err.contains('\n'));
    for (s, f) in [
        ("azure", TraceFormat::Azure),
        ("Mooncake", TraceFormat::Mooncake),
        ("burstgpt", TraceFormat::BurstGpt),
        ("jsonl", TraceFormat::Jsonl),
    ] {
        assert_eq!(s.parse::<TraceFormat>(), Ok(f));
        assert_eq!(f.to_string().parse::<TraceFormat>(), Ok(f));
    }
    assert!("parquet"
        .parse::<TraceFormat>()
        .unwrap_err()
        .contains("use azure, mooncake, burstgpt or jsonl"));
}

#[test]
fn load_reads_files_and_explains_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.csv");
    std::fs::write(&path, AZURE.replace('\n', "\r\n")).unwrap();
    let e = load(path.to_str().unwrap(), None).unwrap();
    assert_eq!(e.len(), 3);
    let err = load("azure-cod", None).unwrap_err().to_string();
    assert!(err.starts_with("cannot read trace azure-cod: "), "{err}");
    assert!(err.contains("built-in traces: azure-code, azure-conv"));
}

#[test]
fn window_selects_half_open_range_and_rebases() {
    let e: Vec<TraceEntry> = [0, 5, 10, 12, 19, 20, 30]
        .iter()
        .map(|s| entry(s * SEC))
        .collect();
    let opts = ReplayOptions {
        window: Some((Duration::from_secs(10), Duration::from_secs(20))),
        ..ReplayOptions::default()
    };
    let w = apply(e.clone(), &opts).unwrap();
    assert_eq!(offsets(&w), vec![0, 2 * SEC, 9 * SEC]);
    let opts = ReplayOptions {
        window: Some((Duration::from_secs(6), Duration::from_secs(21))),
        ..ReplayOptions::default()
    };
    assert_eq!(
        offsets(&apply(e.clone(), &opts).unwrap()),
        vec![0, 2 * SEC, 9 * SEC, 10 * SEC]
    );
    let opts = ReplayOptions {
        window: Some((Duration::from_secs(21), Duration::from_secs(29))),
        ..ReplayOptions::default()
    };
    let err = apply(e, &opts).unwrap_err().to_string();
    assert!(
        err.starts_with("trace replay selects no requests: no request in the window 21s..29s"),
        "{err}"
    );
}

#[test]
fn time_and_rate_scales_divide_and_multiply_gaps() {
    let e: Vec<TraceEntry> = [0, 1, 3].iter().map(|s| entry(s * SEC)).collect();
    let with = |time_scale, rate_scale| {
        offsets(
            &apply(
                e.clone(),
                &ReplayOptions {
                    time_scale,
                    rate_scale,
                    ..ReplayOptions::default()
                },
            )
            .unwrap(),
        )
    };
    assert_eq!(with(1.0, 1.0), vec![0, SEC, 3 * SEC]);
    assert_eq!(with(0.5, 1.0), vec![0, SEC / 2, 3 * SEC / 2]);
    assert_eq!(with(1.0, 2.0), vec![0, SEC / 2, 3 * SEC / 2]);
    assert_eq!(with(2.0, 4.0), vec![0, SEC / 2, 3 * SEC / 2]);
    assert_eq!(with(3.0, 1.0), vec![0, 3 * SEC, 9 * SEC]);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(apply(
            e.clone(),
            &ReplayOptions {
                time_scale: bad,
                ..ReplayOptions::default()
            }
        )
        .unwrap_err()
        .to_string()
        .contains("time scale must be a positive number"));
        assert!(apply(
            e.clone(),
            &ReplayOptions {
                rate_scale: bad,
                ..ReplayOptions::default()
            }
        )
        .is_err());
    }
}

#[test]
fn window_then_scale_then_limit() {
    let e: Vec<TraceEntry> = (0..100).map(|s| entry(s * SEC)).collect();
    let opts = ReplayOptions {
        time_scale: 0.5,
        rate_scale: 1.0,
        window: Some((Duration::from_secs(50), Duration::from_secs(60))),
        max_requests: Some(4),
    };
    assert_eq!(
        offsets(&apply(e.clone(), &opts).unwrap()),
        vec![0, SEC / 2, SEC, 3 * SEC / 2]
    );
    let zero = ReplayOptions {
        max_requests: Some(0),
        ..ReplayOptions::default()
    };
    assert!(apply(e.clone(), &zero).is_err());
    let reversed = ReplayOptions {
        window: Some((Duration::from_secs(60), Duration::from_secs(50))),
        ..ReplayOptions::default()
    };
    assert!(apply(e, &reversed)
        .unwrap_err()
        .to_string()
        .contains("end must come after the start"));
    assert!(apply(Vec::new(), &ReplayOptions::default()).is_err());
}

#[test]
fn items_from_the_builtin_trace() {
    let entries = apply(
        load("azure-conv", None).unwrap(),
        &ReplayOptions {
            max_requests: Some(50),
            ..ReplayOptions::default()
        },
    )
    .unwrap();
    let items = to_items(&entries, 3);
    assert_eq!(items.len(), 50);
    for (item, e) in items.iter().zip(&entries) {
        assert_eq!(item.input_tokens, e.input_tokens.max(1));
        assert_eq!(tokens::estimate(&item.prompt), item.input_tokens);
        assert_eq!(item.max_tokens, Some(e.output_tokens.max(1)));
        assert_eq!(item.at_ns, Some(e.offset_ns));
    }
    assert_eq!(to_items(&entries, 3), items);
    assert_ne!(to_items(&entries, 4)[0].prompt, items[0].prompt);
}

#[test]
fn csv_fields_keep_quoted_commas_and_doubled_quotes() {
    assert_eq!(
        split_csv(r#"1,"a, ""b"" c",3"#).unwrap(),
        ["1", r#"a, "b" c"#, "3"]
    );
    assert_eq!(split_csv(r#""""#).unwrap(), [""]);
    // A quote inside an unquoted field is text, not the start of quoting.
    assert_eq!(split_csv(r#"5 "in",2"#).unwrap(), [r#"5 "in""#, "2"]);
    assert!(split_csv(r#"1,"open"#).unwrap_err().contains("not closed"));
}

#[test]
fn fractions_past_nanoseconds_are_cut_and_absurd_times_refused() {
    let ns = |s: &str| parse_datetime_ns(s).unwrap_or_else(|| panic!("{s}"));
    let nine = ns("2023-11-16 18:15:46.123456789");
    assert_eq!(ns("2023-11-16 18:15:46.1234567891"), nine);
    assert_eq!(ns("2023-11-16T18:15:46.123456789123Z"), nine);
    assert_eq!(nine - ns("2023-11-16 18:15:46"), 123_456_789);
    // Times are refused from 1e30 ns (no trace spans that), not before.
    assert_eq!(seconds_to_ns(1e20, 1e9), Some(1e29 as i128));
    assert_eq!(seconds_to_ns(1e21, 1e9), None);
    assert_eq!(seconds_to_ns(1e25, 1e9), None);
    assert_eq!(seconds_to_ns(f64::NAN, 1e9), None);
}
