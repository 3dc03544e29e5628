//! Helpers shared by the real-kernel probe tests: each test file uses some of them.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use tbd::{events::Event, probes::Probes};

/// Loads `programs` (run as root) and attaches them; returns the probes and their ring.
pub fn attached(programs: &[&str]) -> (Probes, RingBuf<MapData>) {
    let mut probes = Probes::load(programs).expect("load eBPF (run as root)");
    probes.attach().expect("attach");
    let ring = probes.take_ring().unwrap();
    (probes, ring)
}

/// The events in the ring now.
pub fn drain(ring: &mut RingBuf<MapData>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        events.extend(Event::decode(&item));
    }
    events
}

/// The events from the ring, drained every 20 ms until `done` holds for all gathered so far
/// or 5 s have passed.
pub fn drain_until(ring: &mut RingBuf<MapData>, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut events = Vec::new();
    loop {
        events.extend(drain(ring));
        if done(&events) || Instant::now() >= deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
