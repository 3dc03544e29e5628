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
#[path = "dataset_tests.rs"]
mod tests;
