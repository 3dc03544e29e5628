//! One unit of work for the load generator: a prompt plus what to ask for and when.

/// A request to send, built from the dataset or from a trace; the sender turns it into an API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// The prompt text sent as the user message (chat) or the prompt (completions).
    pub prompt: String,
    /// Tokens in `prompt`: the local estimate, or the trace's own count when the trace carried the
    /// prompt; recorded so a run without server `usage` still has an input size.
    pub input_tokens: u32,
    /// Output tokens to ask for; `None` leaves the length to the server (or to `--max-tokens`).
    pub max_tokens: Option<u32>,
    /// When replaying a trace, the trace's own arrival time in ns from the start of the replay;
    /// `None` when an arrival pattern decides instead.
    pub at_ns: Option<u64>,
}
