//! What to send: built-in dataset, trace replay, arrival schedules.

pub mod dataset;
pub mod duration;
pub mod item;
pub mod schedule;
pub mod trace;

pub use dataset::{synth_prompt, Dataset, SpanSize};
pub use duration::{parse_duration, parse_duration_range, parse_range};
pub use item::WorkItem;
pub use schedule::{Pattern, Schedule};
pub use trace::{ReplayOptions, TraceEntry, TraceError, TraceFormat, BUILTIN_TRACES};
