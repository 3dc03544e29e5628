//! Every program of the object passes the verifier and attaches on this kernel (root needed).

use tbd::probes::{Probes, PROGRAMS};

#[test]
fn every_program_loads_and_attaches() {
    let probes = Probes::load(&[]).expect("load eBPF (run as root)");
    let stats = probes.program_stats();
    let names: Vec<&str> = stats.iter().map(|s| s.name.as_str()).collect();
    for (name, _) in PROGRAMS {
        assert!(
            names.contains(name),
            "{name} not attached; attached: {names:?}"
        );
    }
    assert!(
        probes.stats_enabled(),
        "BPF run-time stats should be on as root"
    );
}
