//! Tests of `dataset.rs`, kept beside it.

use super::*;
use crate::tokens::estimate;

#[test]
fn same_seed_gives_identical_sequence() {
    let a: Vec<WorkItem> = Dataset::new(42, SpanSize::Mixed).take(300).collect();
    let b: Vec<WorkItem> = Dataset::new(42, SpanSize::Mixed).take(300).collect();
    assert_eq!(a, b);
}

#[test]
fn different_seeds_differ_from_the_first_prompt() {
    let a = Dataset::new(1, SpanSize::Small).next_item();
    let b = Dataset::new(2, SpanSize::Small).next_item();
    assert_ne!(a.prompt, b.prompt);
    // The seed-dependent reference sits in the header, so even the prefixes differ.
    assert_ne!(
        &a.prompt[..a.prompt.find(':').unwrap()],
        &b.prompt[..b.prompt.find(':').unwrap()]
    );
}

#[test]
fn prompts_are_unique_and_differ_early() {
    let items: Vec<WorkItem> = Dataset::new(7, SpanSize::Small).take(2000).collect();
    let mut prompts: Vec<&str> = items.iter().map(|i| i.prompt.as_str()).collect();
    prompts.sort_unstable();
    prompts.dedup();
    assert_eq!(prompts.len(), items.len());
    for (i, item) in items.iter().enumerate() {
        let head: String = item.prompt.chars().take(40).collect();
        assert!(
            head.contains(&format!(" {} ", i + 1)) || head.contains(&format!("#{} ", i + 1)),
            "sequence number {} missing early in {head:?}",
            i + 1
        );
    }
}

#[test]
fn span_sizes_stay_in_range_and_count_is_the_estimate() {
    for span in [
        SpanSize::Small,
        SpanSize::Medium,
        SpanSize::Large,
        SpanSize::Mixed,
    ] {
        let (lo, hi) = span.range();
        for item in Dataset::new(3, span).take(400) {
            assert_eq!(item.input_tokens, estimate(&item.prompt), "{}", item.prompt);
            assert!(
                (lo..=hi).contains(&item.input_tokens),
                "{span}: {} tokens outside {lo}..={hi}",
                item.input_tokens
            );
            assert_eq!(item.max_tokens, None);
            assert_eq!(item.at_ns, None);
        }
    }
}

#[test]
fn spans_cover_their_range() {
    let sizes: Vec<u32> = Dataset::new(5, SpanSize::Large)
        .take(500)
        .map(|i| i.input_tokens)
        .collect();
    assert!(sizes.iter().any(|&n| n < 560), "no short large prompts");
    assert!(sizes.iter().any(|&n| n > 940), "no long large prompts");
}

#[test]
fn mixed_draws_forty_forty_twenty() {
    let n = 4000;
    let sizes: Vec<u32> = Dataset::new(11, SpanSize::Mixed)
        .take(n)
        .map(|i| i.input_tokens)
        .collect();
    let share = |f: &dyn Fn(u32) -> bool| sizes.iter().filter(|&&s| f(s)).count() as f64 / n as f64;
    // Classes meet at 200 and 500; those boundaries are 1 value in 150-500, so negligible.
    let small = share(&|s| s < 200);
    let large = share(&|s| s > 500);
    assert!((0.36..0.44).contains(&small), "small share {small}");
    assert!((0.17..0.23).contains(&large), "large share {large}");
}

#[test]
fn every_domain_appears() {
    let items: Vec<WorkItem> = Dataset::new(9, SpanSize::Small).take(200).collect();
    for prefix in [
        "Design review",
        "Writing prompt",
        "Question",
        "Analysis request",
        "Support ticket",
    ] {
        assert!(
            items.iter().any(|i| i.prompt.starts_with(prefix)),
            "no {prefix} prompts"
        );
    }
}

#[test]
fn span_parses_with_a_clear_error() {
    assert_eq!("small".parse(), Ok(SpanSize::Small));
    assert_eq!("Medium".parse(), Ok(SpanSize::Medium));
    assert_eq!("large".parse(), Ok(SpanSize::Large));
    assert_eq!("mixed".parse(), Ok(SpanSize::Mixed));
    assert_eq!(
        "huge".parse::<SpanSize>().unwrap_err(),
        "unknown prompt size 'huge': use small, medium, large or mixed"
    );
    assert_eq!(SpanSize::Mixed.to_string(), "mixed");
}

#[test]
fn compose_hits_every_target_exactly() {
    let mut rng = StdRng::seed_from_u64(0);
    for domain in 0..DOMAINS.len() {
        for target in (1..=60).chain((61..3000).step_by(37)) {
            let (text, count) = compose(
                &mut rng,
                domain,
                ["Question 12 (ref ABCD):", "#12:"],
                target,
            );
            assert_eq!(count, target, "domain {domain}: {text}");
            assert_eq!(estimate(&text), target, "domain {domain}: {text}");
        }
    }
}

#[test]
fn small_prompts_always_fit_header_and_instruction() {
    // The small span starts at 50: no template combination may leave less than nothing
    // for the prompt's own request.
    for text in &DOMAINS {
        let header = estimate(
            &text
                .header
                .replace("{n}", "1000000")
                .replace("{ref}", "ABCD"),
        );
        for instruction in text.instructions {
            for topic in text.topics {
                for aspect in text.aspects {
                    let s = instruction
                        .replace("{topic}", topic)
                        .replace("{aspect}", aspect);
                    assert!(header + estimate(&s) <= 45, "{s}");
                }
            }
        }
    }
}

#[test]
fn closings_can_meet_any_remainder() {
    let pools = pools();
    assert!(!pools.closings[1].is_empty());
    // Context fill stops below the shortest sentence; one closing should cover the rest.
    let shortest = pools
        .by_topic
        .iter()
        .flatten()
        .map(|p| p.counts[0])
        .max()
        .unwrap();
    for c in 1..shortest {
        assert!(
            pools
                .closings
                .get(c as usize)
                .is_some_and(|v| !v.is_empty()),
            "no closing of {c} tokens (shortest context sentence: {shortest})"
        );
    }
}

#[test]
fn synth_prompt_counts_and_determinism() {
    for tokens in [1, 2, 3, 5, 8, 13, 20, 40, 100, 1000, 2000, 16_000] {
        let (p, n) = synth_prompt_counted(9, 17, tokens);
        assert_eq!(n, tokens);
        assert_eq!(estimate(&p), tokens, "{p}");
        assert_eq!(synth_prompt(9, 17, tokens), p);
    }
    assert_eq!(estimate(&synth_prompt(9, 17, 0)), 1);
    assert_ne!(synth_prompt(9, 17, 300), synth_prompt(9, 18, 300));
    assert_ne!(synth_prompt(9, 17, 300), synth_prompt(10, 17, 300));
    assert!(synth_prompt(9, 17, 300).starts_with("Request 18 (ref "));
    // Too small for the full header, the sequence number still leads.
    assert!(synth_prompt(9, 17, 5).starts_with("#18: "));
    assert_ne!(synth_prompt(9, 17, 4), synth_prompt(9, 18, 4));
}

#[test]
fn long_prompts_are_varied() {
    let p = synth_prompt(1, 0, 16_000);
    let mut sentences: Vec<&str> = p.split(". ").collect();
    let total = sentences.len();
    sentences.sort_unstable();
    sentences.dedup();
    assert!(
        sentences.len() * 3 > total,
        "{} distinct of {total}",
        sentences.len()
    );
}

#[test]
fn splitmix64_matches_the_reference_generator() {
    // The first two outputs of SplitMix64 seeded with 0 (state 0, then one golden-ratio
    // step), as the reference implementation (prng.di.unimi.it/splitmix64.c) prints them.
    assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
}

#[test]
fn a_replayed_request_keeps_its_reference_whatever_its_size() {
    // (seed, index) alone fix the header: a request keeps its reference when a trace is
    // replayed with other sizes, and the reference is four characters of the alphabet.
    let reference = |p: &str| {
        let start = p.find("(ref ").expect("a reference") + 5;
        p[start..start + p[start..].find(')').expect("closed")].to_owned()
    };
    let r = reference(&synth_prompt(9, 17, 300));
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(
        r.bytes()
            .all(|b| b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(&b)),
        "{r:?}"
    );
    for tokens in [40, 1000, 16_000] {
        assert_eq!(reference(&synth_prompt(9, 17, tokens)), r);
    }
    // References spread over the alphabet across indices rather than repeating one code.
    let distinct: std::collections::HashSet<String> = (0..64)
        .map(|i| reference(&synth_prompt(9, i, 60)))
        .collect();
    assert!(distinct.len() > 56, "{} distinct of 64", distinct.len());
}

#[test]
fn compose_takes_instruction_then_context_at_their_thresholds() {
    // compose draws topic, instruction and aspect before anything depends on the target,
    // so the same seed gives the same instruction at every target.
    let header = "Question 12 (ref ABCD):";
    let pools = pools();
    for (domain, text) in DOMAINS.iter().enumerate() {
        let (topic, instruction) =
            draw_instruction(&mut StdRng::seed_from_u64(domain as u64), text);
        let with_instruction = estimate(header) + estimate(&instruction);
        let context = estimate(text.label)
            + pools.by_topic[domain][topic].counts[0].min(pools.by_domain[domain].counts[0]);
        let at = |target: u32| {
            let mut rng = StdRng::seed_from_u64(domain as u64);
            compose(&mut rng, domain, [header, "#12:"], target).0
        };
        let opening = format!("{header} {instruction}");
        assert!(
            !at(with_instruction - 1).contains(&instruction),
            "domain {domain}"
        );
        assert_eq!(at(with_instruction), opening, "domain {domain}");
        let below = at(with_instruction + context - 1);
        assert!(below.starts_with(&opening), "{below}");
        assert!(!below.contains(text.label), "{below}");
        let labelled = format!("{opening} {}", text.label);
        let reached = at(with_instruction + context);
        assert!(reached.starts_with(&labelled), "domain {domain}: {reached}");
    }
}

#[test]
fn every_prompt_asks_one_of_its_domains_instructions_on_varied_topics() {
    let header = "Question 12 (ref ABCD):";
    for (domain, text) in DOMAINS.iter().enumerate() {
        let fills: Vec<String> = text
            .instructions
            .iter()
            .flat_map(|i| {
                text.topics.iter().flat_map(move |t| {
                    text.aspects
                        .iter()
                        .map(move |a| i.replace("{topic}", t).replace("{aspect}", a))
                })
            })
            .collect();
        let mut asked = std::collections::HashSet::new();
        for seed in 0..40 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (p, _) = compose(&mut rng, domain, [header, "#12:"], 300);
            let rest = p.strip_prefix(header).unwrap().trim_start();
            let fill = fills
                .iter()
                .find(|f| rest.starts_with(f.as_str()))
                .unwrap_or_else(|| panic!("domain {domain}: no instruction opens {rest:?}"));
            asked.insert(fill.clone());
        }
        assert!(
            asked.len() > 10,
            "domain {domain}: {} distinct of 40",
            asked.len()
        );
    }
}
