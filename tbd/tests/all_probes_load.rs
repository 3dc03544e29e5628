//! Every program of the object passes the verifier and attaches on this kernel, and detaches
//! again (root needed).

use tbd::probes::{Probes, PROGRAMS};

#[test]
fn every_program_loads_attaches_and_detaches() {
    let mut probes = Probes::load(&[]).expect("load eBPF (run as root)");
    let names: Vec<String> = probes.program_stats().into_iter().map(|s| s.name).collect();
    for (name, _) in PROGRAMS {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not loaded; loaded: {names:?}"
        );
    }
    assert!(
        probes.program_stats().iter().all(|p| !p.attached),
        "nothing is attached before a capture"
    );
    probes.attach().expect("attach every program");
    let stats = probes.program_stats();
    let idle: Vec<&str> = stats
        .iter()
        .filter(|p| !p.attached)
        .map(|p| p.name.as_str())
        .collect();
    assert!(idle.is_empty(), "not attached: {idle:?}");
    probes.attach().expect("attaching twice is a no-op");
    probes.detach();
    assert!(probes.program_stats().iter().all(|p| !p.attached));

    probes.set_stats(true);
    assert!(
        probes.stats_enabled(),
        "BPF run-time stats should be on as root"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    probes.set_stats(false);
    assert!(!probes.stats_enabled());
    assert!(probes.stats_seconds() >= 0.02, "{}", probes.stats_seconds());
}
