//! Events per second from the ring buffer through connection tracking into sled, with loss
//! counted (root; real probes in this kernel). `cargo xtask bench events` runs it.
//!
//! This process tracks itself and, from one thread per core, connects to a local listener,
//! sends an HTTP request line and then N/threads one-byte writes: each write is one probe
//! event (the kernel sends them 32 to a ring-buffer record; each thread's share is a multiple
//! of 32 so that none is left held). One thread's syscalls cannot reach the target on a slow
//! VM, so the generator uses every core, as a busy server would. The figure is N over the time
//! from the first write until the reader has taken every event, next to the generator's own
//! rate.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tbd::{
    capture::Engine,
    probes::{Probes, StatsMode},
    store::Store,
};

const N: u64 = 2_000_000;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path())?);
    let engine = Engine::start(Probes::load(&[])?, store, StatsMode::Off, None)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let per_thread = N / threads / 32 * 32;
    let n = per_thread * threads;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let sink = std::thread::spawn(move || {
        let mut readers = Vec::new();
        for _ in 0..threads {
            let (mut s, _) = listener.accept().expect("accept");
            readers.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
        for r in readers {
            r.join().ok();
        }
    });
    let run = engine.start_capture(
        None,
        "bench".into(),
        vec![std::process::id()],
        vec![],
        std::time::Duration::from_secs(3600),
    )?;
    let received0 = engine.counters.syscalls_received.load(Ordering::Relaxed);
    let mut conns = Vec::new();
    for i in 0..threads {
        let mut c = TcpStream::connect(("127.0.0.1", port))?;
        c.write_all(format!("POST /v1/chat/completions HTTP/1.1\r\nx-tb-rid: {i}\r\n").as_bytes())?;
        conns.push(c);
    }
    let t0 = Instant::now();
    let writers: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || -> std::io::Result<TcpStream> {
                for _ in 0..per_thread {
                    c.write_all(b"x")?;
                }
                Ok(c)
            })
        })
        .collect();
    let mut conns = Vec::new();
    for w in writers {
        conns.push(w.join().expect("writer thread")?);
    }
    let gen = t0.elapsed();
    let want = received0 + n + 2 * threads;
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.counters.syscalls_received.load(Ordering::Relaxed) < want
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let drained = t0.elapsed();
    drop(conns);
    let lost: u64 = engine.probes().lost()?.iter().map(|(_, n)| n).sum();
    let done = engine.stop_capture(&run.run_id)?;
    sink.join().ok();
    let got = engine.counters.syscalls_received.load(Ordering::Relaxed) - received0;
    println!(
        "{}",
        serde_json::json!({
            "events_generated": n,
            "generator_threads": threads,
            "events_received": got,
            "events_lost_in_kernel": lost,
            "generator_events_per_s": (n as f64 / gen.as_secs_f64()).round(),
            "ring_to_store_events_per_s": (n as f64 / drained.as_secs_f64()).round(),
            "exchanges_stored": done.exchanges,
            "target_events_per_s": 500_000,
        })
    );
    Ok(())
}
