//! serve-sim: a simulated inference server that logs its own ground truth.
//!
//! It speaks the OpenAI (chat, completions) and Ollama (chat, generate) APIs with configurable
//! time to first token, inter-token latency and jitter, and writes, per request, the
//! CLOCK_MONOTONIC times at which it read the request and wrote each chunk. Tests, benchmarks
//! and the demo measure tbctl against those times.

pub mod config;
pub mod http;
mod pace;
mod respond;
pub mod truth;

pub use config::{SimArgs, SimConfig, DEFAULT_OUTPUT_TOKENS};
pub use http::{run, serve, SimHandle};
pub use truth::{RequestId, TruthRecord};
