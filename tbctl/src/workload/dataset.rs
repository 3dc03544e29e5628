//! The built-in prompt dataset: realistic requests across five domains (technical, creative,
//! factual, analytical, troubleshooting), deterministic from a seed and sized to a token target.
//!
//! Prompts are assembled from pools of pre-made sentences whose token counts are computed once;
//! pieces are joined by single spaces, so the count of a prompt is the sum of its pieces' counts
//! (see `tokens::estimate`) and prompts hit their target exactly without re-scanning text. Every
//! prompt starts with its sequence number and a random reference so prompt caches cannot serve
//! a shared prefix.

use std::{fmt, str::FromStr, sync::OnceLock};

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::item::WorkItem;
use crate::tokens;

/// The size class of dataset prompts, in tokens by the local estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanSize {
    /// 50 to 200 tokens: chat-style questions.
    Small,
    /// 200 to 500 tokens: requests with some background.
    Medium,
    /// 500 to 1000 tokens: requests with long context.
    Large,
    /// Small, medium or large drawn 40/40/20, for a realistic blend.
    Mixed,
}

impl SpanSize {
    /// Every size with its `--span-size` name and what it draws, for `tbctl list`.
    pub const KINDS: [(&'static str, &'static str); 4] = [
        (
            "small",
            "built-in dataset, prompts of 50-200 tokens (chat questions)",
        ),
        (
            "medium",
            "built-in dataset, prompts of 200-500 tokens (some background)",
        ),
        (
            "large",
            "built-in dataset, prompts of 500-1000 tokens (long context)",
        ),
        (
            "mixed",
            "built-in dataset, small, medium or large drawn 40/40/20 (default)",
        ),
    ];

    /// The inclusive range of prompt tokens this size draws from (Mixed: the union of all three).
    pub fn range(self) -> (u32, u32) {
        match self {
            SpanSize::Small => (50, 200),
            SpanSize::Medium => (200, 500),
            SpanSize::Large => (500, 1000),
            SpanSize::Mixed => (50, 1000),
        }
    }

    /// Draws a target token count: uniform within the class, or the class first when Mixed.
    fn sample(self, rng: &mut StdRng) -> u32 {
        let class = match self {
            SpanSize::Mixed => match rng.random_range(0..100u32) {
                0..40 => SpanSize::Small,
                40..80 => SpanSize::Medium,
                _ => SpanSize::Large,
            },
            fixed => fixed,
        };
        let (lo, hi) = class.range();
        rng.random_range(lo..=hi)
    }
}

impl FromStr for SpanSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "small" => Ok(SpanSize::Small),
            "medium" => Ok(SpanSize::Medium),
            "large" => Ok(SpanSize::Large),
            "mixed" => Ok(SpanSize::Mixed),
            _ => Err(format!(
                "unknown prompt size '{s}': use small, medium, large or mixed"
            )),
        }
    }
}

impl fmt::Display for SpanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpanSize::Small => "small",
            SpanSize::Medium => "medium",
            SpanSize::Large => "large",
            SpanSize::Mixed => "mixed",
        })
    }
}

/// An endless, seeded stream of dataset prompts; also an `Iterator` that never ends.
#[derive(Debug, Clone)]
pub struct Dataset {
    rng: StdRng,
    span: SpanSize,
    next_seq: u64,
}

impl Dataset {
    /// A dataset whose whole sequence is fixed by `seed`; `span` sets the prompt sizes.
    pub fn new(seed: u64, span: SpanSize) -> Self {
        Dataset {
            rng: StdRng::seed_from_u64(seed),
            span,
            next_seq: 1,
        }
    }

    /// The next prompt: a random domain and topic, sized to a target drawn from the span.
    /// `max_tokens` is left to the caller (`--max-tokens`) or the server's default.
    pub fn next_item(&mut self) -> WorkItem {
        let seq = self.next_seq;
        self.next_seq += 1;
        let domain = self.rng.random_range(0..DOMAINS.len());
        let target = self.span.sample(&mut self.rng);
        let code = ref_code(&mut self.rng);
        let header = DOMAINS[domain]
            .header
            .replace("{n}", &seq.to_string())
            .replace("{ref}", &code);
        let short = format!("#{seq}:");
        let (prompt, input_tokens) = compose(&mut self.rng, domain, [&header, &short], target);
        WorkItem {
            prompt,
            input_tokens,
            max_tokens: None,
            at_ns: None,
        }
    }
}

impl Iterator for Dataset {
    type Item = WorkItem;

    fn next(&mut self) -> Option<WorkItem> {
        Some(self.next_item())
    }
}

/// A prompt of `tokens` tokens (at least 1) for request `index` of a trace replay, fixed by
/// `(seed, index)` alone so any request can be rebuilt without generating the ones before it.
pub fn synth_prompt(seed: u64, index: u64, tokens: u32) -> String {
    synth_prompt_counted(seed, index, tokens).0
}

/// `synth_prompt` with the prompt's token count, which is known from assembly, so callers need
/// not re-scan a long prompt. The count equals `tokens.max(1)`.
pub(crate) fn synth_prompt_counted(seed: u64, index: u64, tokens: u32) -> (String, u32) {
    let mut rng = StdRng::seed_from_u64(splitmix64(seed ^ splitmix64(index)));
    let domain = rng.random_range(0..DOMAINS.len());
    let code = ref_code(&mut rng);
    let seq = index.saturating_add(1);
    let header = format!("Request {seq} (ref {code}):");
    let short = format!("#{seq}:");
    compose(&mut rng, domain, [&header, &short], tokens)
}

/// Mixes seed and index so nearby indices give unrelated RNG streams: the output function of
/// Vigna's SplitMix64 (one step from state `x`), with its published constants.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Four characters, one token: makes prompts from different seeds differ in their first tokens.
fn ref_code(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..4)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Assembles header, instruction, context and closing to exactly `target.max(1)` tokens.
/// `headers` is the full header and a short one (`#17:`); targets too small for header and
/// instruction drop the instruction, then fall back to the short header, then to closings alone.
fn compose(rng: &mut StdRng, domain: usize, headers: [&str; 2], target: u32) -> (String, u32) {
    let [header, short_header] = headers;
    let text = &DOMAINS[domain];
    let pools = pools();
    let target = target.max(1);
    let (topic, instruction) = draw_instruction(rng, text);
    let (header_tokens, instruction_tokens) =
        (tokens::estimate(header), tokens::estimate(&instruction));
    let label_tokens = tokens::estimate(text.label);

    let mut out = Prompt::with_capacity(target);
    if header_tokens + instruction_tokens <= target {
        out.push(header, header_tokens);
        out.push(&instruction, instruction_tokens);
        let by_topic = &pools.by_topic[domain][topic];
        let whole = &pools.by_domain[domain];
        if target - out.tokens >= label_tokens + by_topic.counts[0].min(whole.counts[0]) {
            out.push(text.label, label_tokens);
            loop {
                let left = target - out.tokens;
                // Half the context is about the prompt's own topic, half about the domain at
                // large, which keeps long prompts coherent without repeating a few sentences.
                let (first, second) = if rng.random::<bool>() {
                    (by_topic, whole)
                } else {
                    (whole, by_topic)
                };
                let Some((pool, fitting)) = [first, second]
                    .into_iter()
                    .map(|p| (p, p.counts.partition_point(|&c| c <= left)))
                    .find(|&(_, n)| n > 0)
                else {
                    break;
                };
                let i = rng.random_range(0..fitting);
                out.push(&pool.texts[i], pool.counts[i]);
            }
        }
    } else if header_tokens <= target {
        out.push(header, header_tokens);
    } else {
        let short_tokens = tokens::estimate(short_header);
        if short_tokens <= target {
            out.push(short_header, short_tokens);
        }
    }
    let mut left = target - out.tokens;
    while left > 0 {
        // Largest closing that fits; count 1 always exists, so this ends on the target exactly.
        let Some(count) = (1..=left.min(pools.max_closing))
            .rev()
            .find(|&c| !pools.closings[c as usize].is_empty())
        else {
            break;
        };
        let options = &pools.closings[count as usize];
        out.push(options[rng.random_range(0..options.len())], count);
        left -= count;
    }
    (out.text, out.tokens)
}

/// The prompt's topic (its index) and its instruction with topic and aspect filled in: the
/// first draws of every prompt, made before anything depends on the target size.
fn draw_instruction(rng: &mut StdRng, text: &DomainText) -> (usize, String) {
    let topic = rng.random_range(0..text.topics.len());
    let instruction = text.instructions[rng.random_range(0..text.instructions.len())]
        .replace("{topic}", text.topics[topic])
        .replace(
            "{aspect}",
            text.aspects[rng.random_range(0..text.aspects.len())],
        );
    (topic, instruction)
}

/// A prompt under construction with its running token count.
struct Prompt {
    text: String,
    tokens: u32,
}

impl Prompt {
    fn with_capacity(target: u32) -> Self {
        // The pools average about 4.5 bytes per token; 6 leaves room to grow without reallocating.
        Prompt {
            text: String::with_capacity(target as usize * 6 + 16),
            tokens: 0,
        }
    }

    /// Appends `piece`; joining with one space keeps counts additive under the estimate.
    fn push(&mut self, piece: &str, tokens: u32) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(piece);
        self.tokens += tokens;
    }
}

/// Sentences with their token counts, sorted by count so "those that fit" is a prefix.
struct Pool {
    texts: Vec<String>,
    counts: Vec<u32>,
}

impl Pool {
    fn new(mut texts: Vec<String>) -> Self {
        texts.sort_by_cached_key(|t| tokens::estimate(t));
        let counts = texts.iter().map(|t| tokens::estimate(t)).collect();
        Pool { texts, counts }
    }
}

/// Every pre-made sentence, built once on first use.
struct Pools {
    by_domain: Vec<Pool>,
    by_topic: Vec<Vec<Pool>>,
    /// Closing lines indexed by token count.
    closings: Vec<Vec<&'static str>>,
    max_closing: u32,
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        let mut by_domain = Vec::new();
        let mut by_topic = Vec::new();
        for text in &DOMAINS {
            let topics: Vec<Vec<String>> = text
                .topics
                .iter()
                .map(|topic| {
                    text.context
                        .iter()
                        .flat_map(|template| {
                            text.details.iter().map(move |detail| {
                                template
                                    .replace("{topic}", topic)
                                    .replace("{detail}", detail)
                            })
                        })
                        .collect()
                })
                .collect();
            by_domain.push(Pool::new(topics.concat()));
            by_topic.push(topics.into_iter().map(Pool::new).collect());
        }
        let max_closing = CLOSINGS
            .iter()
            .map(|c| tokens::estimate(c))
            .max()
            .unwrap_or(1);
        let mut closings = vec![Vec::new(); max_closing as usize + 1];
        for c in CLOSINGS {
            closings[tokens::estimate(c) as usize].push(*c);
        }
        Pools {
            by_domain,
            by_topic,
            closings,
            max_closing,
        }
    })
}

/// The vocabulary of one domain. Templates use `{topic}`, `{aspect}` (instructions) and
/// `{topic}`, `{detail}` (context sentences); headers use `{n}` and `{ref}`.
struct DomainText {
    header: &'static str,
    label: &'static str,
    instructions: &'static [&'static str],
    topics: &'static [&'static str],
    aspects: &'static [&'static str],
    details: &'static [&'static str],
    context: &'static [&'static str],
}

/// Ends a prompt with exactly the tokens left over; the one-token "Thanks" guarantees any
/// remainder can be met.
const CLOSINGS: &[&str] = &[
    "Thanks",
    "Thanks!",
    "Thank you.",
    "Please be brief.",
    "Keep it short, please.",
    "Please keep it brief.",
    "Use plain words, please.",
    "Keep the answer short and clear.",
    "Show your work where it helps.",
    "A short answer is fine, thank you.",
    "Please keep the tone friendly and direct.",
    "Say so if any of this is unclear to you.",
    "Use short paragraphs and avoid jargon where you can.",
    "If you need to assume something, say what it is and go on.",
    "Finish with a one-line summary of the main point, please.",
    "Please keep the answer under a page, and put the key point in the first line.",
    "If part of the request is ambiguous, pick the most likely meaning and say which one you chose.",
    "Where a list is clearer than prose, use a list; where an example is clearer than a rule, give an example.",
    "Please answer in plain English.",
    "Keep it to a few paragraphs.",
    "Examples are welcome, thank you.",
    "Thank you in advance for your help.",
    "Please keep the answer focused and practical.",
    "Try to keep it under three hundred words.",
    "Short and specific beats long and general here.",
    "No need to repeat the question back to me.",
    "A clear structure matters more to me than length.",
    "Please skip the preamble and get to the point quickly.",
    "Skip the introduction and go straight to the answer, please.",
    "Keep it practical, and skip the history unless it matters.",
    "Bullet points are fine, but full sentences are better for the reasoning.",
    "Please be accurate rather than complete, and say what you are unsure about.",
    "Please answer as if you were writing for a colleague who knows the basics.",
    "If there are several good answers, give the best one and mention the others.",
    "Please avoid marketing language and stick to what you would defend in front of an expert.",
    "Please check your answer once before you send it, and fix anything that does not add up.",
    "I will read the answer on a phone, so short paragraphs and short lines work best for me.",
];

static DOMAINS: [DomainText; 5] = [
    DomainText {
        header: "Design review {n} (ref {ref}):",
        label: "Background:",
        instructions: &[
            "Explain how {topic} works, {aspect}.",
            "Write a short design note on {topic}, {aspect}, and list the main trade-offs.",
            "Review our approach to {topic} and point out what could break in production, {aspect}.",
            "Describe how you would test {topic} thoroughly, {aspect}.",
            "Compare two ways of implementing {topic}, {aspect}, and recommend one.",
            "Outline the data structures behind {topic}, {aspect}.",
        ],
        topics: &[
            "connection pooling in a web service",
            "write-ahead logging in a database",
            "consistent hashing for a cache cluster",
            "backpressure in a streaming pipeline",
            "lock-free queues",
            "garbage collection pauses in the JVM",
            "TLS session resumption",
            "vector clocks for replication",
            "B-tree page splits",
            "rate limiting at an API gateway",
            "memory-mapped files",
            "leader election in Raft",
            "copy-on-write snapshots",
            "HTTP/2 stream multiplexing",
            "paged KV caches in LLM serving",
            "speculative decoding",
        ],
        aspects: &[
            "for an engineer new to the codebase",
            "with attention to failure modes",
            "with a small worked example",
            "against the simplest alternative",
            "focusing on latency under load",
            "for a design review audience",
            "assuming a Linux server with 32 cores",
            "with the memory costs spelled out",
        ],
        details: &[
            "p99 latency",
            "memory use",
            "throughput at peak",
            "recovery time after a crash",
            "CPU cost per request",
            "behaviour under contention",
            "correctness during failover",
            "operational complexity",
        ],
        context: &[
            "The team cares most about {detail} when it comes to {topic}.",
            "We added {topic} last quarter and have not measured {detail} yet.",
            "A previous incident report blamed {topic} for a regression in {detail}.",
            "Benchmarks on staging suggest that {topic} changes {detail} by a noticeable margin.",
            "Some engineers argue that {topic} is over-engineered for our scale, while others point to {detail}.",
            "The service handles about forty thousand requests per second, so {detail} matters more than code size.",
            "Any change to {topic} must ship behind a feature flag, with {detail} tracked on the dashboard.",
            "We want to know how {detail} behaves for {topic} as the load doubles.",
        ],
    },
    DomainText {
        header: "Writing prompt {n} (ref {ref}):",
        label: "Notes:",
        instructions: &[
            "Write a short story about {topic}, {aspect}.",
            "Write a poem about {topic}, {aspect}.",
            "Draft the opening scene of a novel about {topic}, {aspect}.",
            "Write a monologue for a play about {topic}, {aspect}.",
            "Tell the story of {topic} as diary entries, {aspect}.",
            "Write a fable about {topic}, {aspect}, and end it with a moral.",
        ],
        topics: &[
            "a lighthouse keeper who finds a message in a bottle",
            "a city where it never stops raining",
            "two rival bakers in a small village",
            "a robot learning to garden",
            "the last train of the night",
            "a letter delivered fifty years too late",
            "a musician who is losing her hearing",
            "an expedition to a frozen lake",
            "a fox that guards an abandoned library",
            "a wedding interrupted by a storm",
            "a child who can hear trees thinking",
            "a detective who is afraid of the dark",
            "a night market at the edge of the desert",
            "a ship's cook on a long voyage",
        ],
        aspects: &[
            "in the second person",
            "with a bittersweet ending",
            "for readers aged ten to twelve",
            "in the style of a folk tale",
            "with vivid sensory detail",
            "using mostly dialogue",
            "from two alternating points of view",
            "with a twist in the final line",
        ],
        details: &[
            "the weather",
            "the smell of the place",
            "a small recurring object",
            "the main character's hands",
            "a half-remembered song",
            "the silence between conversations",
            "the colour of the sky",
            "a promise that was never kept",
        ],
        context: &[
            "The mood should stay quiet, and {detail} can carry much of the feeling in the story of {topic}.",
            "Earlier drafts about {topic} felt rushed, so let {detail} slow the pace down.",
            "An editor suggested that {detail} should return at least twice in the piece about {topic}.",
            "Readers of the first version of {topic} remembered {detail} more than the plot.",
            "Avoid clichés; if {detail} appears, describe it in a way nobody has read before.",
            "The setting of {topic} is loosely based on a coastal town in late autumn, where nothing about {detail} stays the same for long.",
            "Keep the names simple, and let {detail} hint at the past of the characters.",
            "The piece about {topic} will be read aloud, so {detail} should sound natural when spoken.",
        ],
    },
    DomainText {
        header: "Question {n} (ref {ref}):",
        label: "Context:",
        instructions: &[
            "Summarise {topic}, {aspect}.",
            "What should a curious adult know about {topic}? Answer {aspect}.",
            "Give an accurate overview of {topic}, {aspect}.",
            "Explain {topic}, {aspect}.",
            "List the most important facts about {topic}, {aspect}.",
            "Write an encyclopedia-style paragraph on {topic}, {aspect}.",
        ],
        topics: &[
            "the causes of the French Revolution",
            "how vaccines train the immune system",
            "the formation of the Himalayas",
            "the history of the printing press",
            "how photosynthesis stores energy",
            "the water cycle",
            "the discovery of penicillin",
            "how the Moon causes tides",
            "the origins of the Silk Road",
            "how the kidneys filter blood",
            "the life cycle of a star",
            "the invention of the telephone",
            "plate tectonics",
            "the structure of DNA",
        ],
        aspects: &[
            "for a high school student",
            "in under three hundred words",
            "with the key dates listed",
            "correcting one common misconception",
            "in plain language",
            "with a simple analogy",
            "following the most widely accepted account",
            "as a set of numbered points",
        ],
        details: &[
            "the timeline",
            "the main people involved",
            "the underlying mechanism",
            "the evidence scientists rely on",
            "the scale involved",
            "how the idea changed over time",
            "the most common misunderstanding",
            "the consequences today",
        ],
        context: &[
            "This is for a study guide, and students usually get {detail} wrong when they learn about {topic}.",
            "Please keep {detail} accurate, since the summary of {topic} will be checked against a textbook.",
            "A previous answer about {topic} skipped {detail}, which made it hard to follow.",
            "The reader has seen a documentary on {topic} but remembers little about {detail}.",
            "Numbers are welcome where they help, especially for {detail}.",
            "If sources disagree about {detail}, say so briefly instead of silently picking one.",
            "The explanation of {topic} will be printed on one page, so the part on {detail} needs to be short.",
            "A teacher wants {topic} covered in one lesson, with {detail} as the main thread.",
        ],
    },
    DomainText {
        header: "Analysis request {n} (ref {ref}):",
        label: "Background:",
        instructions: &[
            "Analyse {topic}, {aspect}.",
            "Assess the main arguments about {topic}, {aspect}.",
            "Write a brief for decision makers on {topic}, {aspect}.",
            "Identify the key drivers behind {topic}, {aspect}.",
            "Evaluate {topic} for a mid-sized company, {aspect}.",
            "Break down {topic} into costs, benefits and risks, {aspect}.",
        ],
        topics: &[
            "the effect of remote work on office rents",
            "subscription pricing versus one-time purchases",
            "relying on a single cloud provider",
            "electric vehicle adoption in rural areas",
            "four-day work weeks",
            "open-source business models",
            "microservices for a small team",
            "customer churn in a mobile app",
            "urban bike-sharing programs",
            "inventory planning for a seasonal retailer",
            "hiring senior versus junior engineers",
            "the cost of technical debt",
            "carbon pricing for heavy industry",
            "A/B test results that contradict intuition",
        ],
        aspects: &[
            "including the strongest counter-argument",
            "using a simple framework",
            "with assumptions stated explicitly",
            "from the point of view of a finance team",
            "over a five-year horizon",
            "with a short recommendation at the end",
            "separating evidence from speculation",
            "with a table of pros and cons",
        ],
        details: &[
            "revenue over the next two years",
            "employee retention",
            "the regulatory environment",
            "the cost of switching later",
            "customer satisfaction scores",
            "the quality of the available data",
            "second-order effects",
            "sensitivity to interest rates",
        ],
        context: &[
            "Management wants a view on {topic} before the next planning cycle, with {detail} as the main concern.",
            "The data on {topic} is patchy, and figures for {detail} arrive only once a quarter.",
            "Two internal reports on {topic} reached opposite conclusions about {detail}.",
            "Any recommendation on {topic} should say how sensitive it is to {detail}.",
            "Competitors have already moved on {topic}, though their results on {detail} are unclear.",
            "The board prefers short answers, but it wants {detail} addressed explicitly.",
            "Last year a similar analysis of {topic} underestimated {detail} by a wide margin.",
            "Treat {detail} as uncertain and give a range rather than a single number.",
        ],
    },
    DomainText {
        header: "Support ticket #{n} (ref {ref}):",
        label: "Details:",
        instructions: &[
            "Help me troubleshoot {topic}, {aspect}.",
            "How do I diagnose {topic}? Please answer {aspect}.",
            "I am dealing with {topic}. Walk me through a fix, {aspect}.",
            "What usually causes {topic}? Explain {aspect}.",
            "Write a runbook entry for {topic}, {aspect}.",
            "On-call reported {topic}. Suggest next steps, {aspect}.",
        ],
        topics: &[
            "a Kubernetes pod stuck in CrashLoopBackOff",
            "a Python service leaking memory over several days",
            "intermittent DNS failures inside containers",
            "a PostgreSQL query that became slow after an upgrade",
            "a laptop that will not join the office Wi-Fi",
            "TLS handshake errors from one client only",
            "a cron job that silently stopped running",
            "disk usage growing on a log server",
            "high CPU on an idle Node.js process",
            "timeouts between two microservices",
            "a printer that shows as offline",
            "a Git repository with a corrupted index",
            "GPU out-of-memory errors during inference",
            "emails from our domain landing in spam",
        ],
        aspects: &[
            "step by step",
            "starting with the most likely cause",
            "with the exact commands to run",
            "assuming I have root access",
            "without restarting the production service",
            "cheapest checks first",
            "explaining what each diagnostic shows",
            "noting when to escalate",
        ],
        details: &[
            "the logs from the last hour",
            "a recent configuration change",
            "the monitoring graphs",
            "the error rate",
            "a dependency upgrade",
            "the network path",
            "the resource limits",
            "the time the problem first appeared",
        ],
        context: &[
            "The problem with {topic} started after a routine deploy, and {detail} might be relevant.",
            "We already checked {detail} but found nothing obviously related to {topic}.",
            "Restarting fixes {topic} for a few hours, which makes me suspect {detail}.",
            "Nobody changed anything on purpose, although something in {detail} looks unusual.",
            "It happens on two of five machines, so it is worth comparing {detail} between them.",
            "Colleagues suggested looking at {detail} before touching anything else.",
            "We can reproduce {topic} in staging, and nothing in {detail} differs from production.",
            "Please say what in {detail} would confirm or rule out each cause.",
        ],
    },
];

#[cfg(test)]
mod tests {
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
        let share =
            |f: &dyn Fn(u32) -> bool| sizes.iter().filter(|&&s| f(s)).count() as f64 / n as f64;
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
}
