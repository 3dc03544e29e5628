//! Progress while a run goes: a bar on a terminal, a plain line every 5 s otherwise.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

use crate::{profile::writer::OnRecord, record::RequestRecord};

/// A progress callback for the record writer; silent with `quiet` (--json).
pub fn reporter(expected: Option<u64>, quiet: bool) -> OnRecord {
    if quiet {
        return Box::new(|_: &RequestRecord| {});
    }
    let (mut done, mut failed) = (0u64, 0u64);
    if std::io::stderr().is_terminal() {
        let bar = match expected {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(move |r: &RequestRecord| {
            done += 1;
            failed += u64::from(!r.success);
            bar.inc(1);
            if !r.success {
                bar.set_message(format!("{failed} failed"));
            }
            if expected.is_some_and(|n| done >= n) {
                bar.finish_and_clear();
            }
        })
    } else {
        let start = Instant::now();
        let mut last = Instant::now();
        Box::new(move |r: &RequestRecord| {
            done += 1;
            failed += u64::from(!r.success);
            if last.elapsed() >= Duration::from_secs(5) {
                last = Instant::now();
                let of = expected.map(|n| format!("/{n}")).unwrap_or_default();
                eprintln!(
                    "progress: {done}{of} requests, {failed} failed, {:.0}s",
                    start.elapsed().as_secs_f64()
                );
            }
        })
    }
}
