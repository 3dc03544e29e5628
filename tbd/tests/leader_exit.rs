//! A tracked process whose main thread ends alone (pthread_exit, exit(2)) keeps running on its other
//! threads, and stays tracked until its last thread exits (real kernel, root).

mod common;

use std::{ffi::c_void, net::TcpListener, time::Duration};

use tbd::events::Event;

/// The child's second thread: waits for its main thread to be gone, connects to the port in
/// `arg`, and ends the process.
extern "C" fn connect_later(arg: *mut c_void) -> *mut c_void {
    let port = arg as usize as u16;
    // SAFETY: plain syscalls on values this function owns; it never returns.
    unsafe {
        libc::usleep(300_000);
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        libc::_exit(if rc == 0 { 0 } else { 1 });
    }
}

#[test]
fn a_process_outliving_its_main_thread_stays_tracked() {
    let (mut probes, mut ring) = common::attached(&[
        "tb_enter_connect",
        "tb_exit_connect",
        "tb_fork",
        "tb_exit_process",
    ]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let me = std::process::id();
    probes.track_pid(me).unwrap();

    // SAFETY: the child only makes raw libc calls (no allocation, no locks) and never
    // returns into the test harness.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    if child == 0 {
        unsafe {
            let mut t: libc::pthread_t = 0;
            if libc::pthread_create(
                &mut t,
                std::ptr::null(),
                connect_later,
                port as usize as *mut c_void,
            ) != 0
            {
                libc::_exit(2);
            }
            // exit(2), not exit_group: only this thread ends. (pthread_exit would unwind
            // through the test harness's frames, which catch and abort.)
            libc::syscall(libc::SYS_exit, 0);
            libc::_exit(3);
        }
    }
    let child = child as u32;
    // Its main thread has exited (the leader is a zombie) while the other thread sleeps.
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        probes.tgid_tracked(child).unwrap(),
        "child {child} forgotten when its main thread exited"
    );
    let mut status = 0;
    // SAFETY: waiting for this test's own child.
    assert_eq!(
        unsafe { libc::waitpid(child as i32, &mut status, 0) },
        child as i32
    );
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );

    let connects: Vec<u32> = common::drain_until(&mut ring, |evs| {
        evs.iter().any(|e| matches!(e, Event::Connect(_)))
    })
    .iter()
    .filter_map(|e| match e {
        Event::Connect(c) => Some(c.hdr.pid),
        _ => None,
    })
    .collect();
    assert_eq!(connects, vec![child], "the second thread's connect");
    // Its last thread has exited: forgotten now.
    assert!(!probes.tgid_tracked(child).unwrap());
    assert_eq!(probes.tracked_pids().unwrap(), vec![me]);
}
