//! The fork and exit probes, for real (root): children of a tracked process are tracked from
//! their fork, threads add nothing, exited processes are forgotten, untracked trees stay out.

mod common;

use std::{net::TcpListener, process::Command, time::Duration};

use tbd::events::Event;

#[test]
fn children_and_grandchildren_followed_threads_and_strangers_not() {
    let (mut probes, mut ring) = common::attached(&[
        "tb_enter_connect",
        "tb_exit_connect",
        "tb_fork",
        "tb_exit_process",
    ]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");

    // Forked before this process is tracked: neither it nor the child it forks later count.
    let mut stranger = Command::new("bash")
        .args([
            "-c",
            &format!("sleep 0.3; bash -c '{connect}; sleep 0.1'; sleep 0.1"),
        ])
        .spawn()
        .unwrap();
    let me = std::process::id();
    probes.track_pid(me).unwrap();

    // A thread of a tracked process adds no entry: it shares the process's tgid.
    let tid = std::thread::spawn(|| unsafe { libc::gettid() } as u32)
        .join()
        .unwrap();
    assert_eq!(
        probes.tracked_pids().unwrap(),
        vec![me],
        "thread {tid} added"
    );

    // A child that connects, then forks a grandchild that connects.
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!("{connect}; bash -c '{connect}; sleep 0.1'; sleep 0.1"),
        ])
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let live = probes.tracked_pids().unwrap();
    assert!(
        live.contains(&child_pid),
        "child {child_pid} not in {live:?}"
    );
    assert!(
        probes.tgid_tracked(child_pid).unwrap(),
        "child not in the fast filter"
    );
    assert!(child.wait().unwrap().success());
    assert!(stranger.wait().unwrap().success());

    let mut events = common::drain_until(&mut ring, |evs| connect_pids(evs).len() >= 2);
    // Late events from the stranger's tree would show up by now.
    std::thread::sleep(Duration::from_millis(400));
    events.extend(common::drain(&mut ring));
    let pids = connect_pids(&events);
    assert_eq!(
        pids.len(),
        2,
        "child and grandchild connects only: {pids:?}"
    );
    assert_eq!(pids[0], child_pid);
    assert!(pids[1] != child_pid && pids[1] != me, "{pids:?}");
    // Both have exited: only this process is left, so their pids can be reused safely.
    assert_eq!(probes.tracked_pids().unwrap(), vec![me]);
    assert!(
        !probes.tgid_tracked(child_pid).unwrap(),
        "exited child still passes the filter"
    );
    assert!(!probes.tgid_tracked(stranger.id()).unwrap());
    // Clearing the filters leaves nothing passing, this process included.
    probes.clear_filters(0).unwrap();
    assert!(probes.tracked_pids().unwrap().is_empty());
    assert!(!probes.tgid_tracked(me).unwrap());
    assert!(probes.lost().unwrap().iter().all(|(_, n)| *n == 0));
}

/// The processes that connected, in event order.
fn connect_pids(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Connect(c) => Some(c.hdr.pid),
            _ => None,
        })
        .collect()
}
