//! What to send: built-in dataset, trace replay, arrival schedules.
