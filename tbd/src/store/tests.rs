//! The store's tests: order, streaming, release, retention, size caps, concurrency.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tb_proto::v1::{Exchange, Run};

use super::*;

fn ex(run: &str, t: u64) -> Record {
    Record::new(Exchange {
        run_id: run.into(),
        t_request_first_ns: t,
        side: "client".into(),
        ..Default::default()
    })
}

#[test]
fn records_come_back_in_time_order_within_their_run_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.append(&[ex("a", 30), ex("b", 5), ex("a", 10), ex("a", 20)])
        .unwrap();
    assert_eq!(times(&s, "a"), vec![10, 20, 30]);
    let ranged: Vec<u64> = s
        .records::<Exchange>("a", 10, 30)
        .unwrap()
        .iter()
        .map(|e| e.t_request_first_ns)
        .collect();
    assert_eq!(ranged, vec![10, 20]);
    // Batches written later may hold earlier records (long requests finish late).
    s.append(&[ex("a", 5), ex("a", 25)]).unwrap();
    let ranged: Vec<u64> = s
        .records::<Exchange>("a", 5, 26)
        .unwrap()
        .iter()
        .map(|e| e.t_request_first_ns)
        .collect();
    assert_eq!(ranged, vec![5, 10, 20, 25]);
    assert_eq!(s.count::<Exchange>("a").unwrap(), 5);
    // A run id that is a prefix of another must not see the other's records.
    s.append(&[ex("ab", 1)]).unwrap();
    assert_eq!(s.all::<Exchange>("a").unwrap().len(), 5);
}

#[test]
fn queries_stream_in_order_holding_only_overlapping_batches() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    // 100 drains of 10 records each; each drain also finishes one long request that
    // started two drains earlier, as streamed responses do.
    for d in 0..100u64 {
        let mut recs: Vec<Record> = (0..10).map(|i| ex("r", 1_000 + d * 100 + i)).collect();
        if d >= 2 {
            recs.push(ex("r", 1_000 + (d - 2) * 100 + 50));
        }
        s.append(&recs).unwrap();
    }
    let mut times = Vec::new();
    let peak = s
        .for_each_record::<Exchange>("r", 0, 0, |e| {
            times.push(e.t_request_first_ns);
            true
        })
        .unwrap();
    assert_eq!(times.len(), 1_098);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert!(
        peak <= 40,
        "held {peak} records: the whole run was buffered"
    );
    // A consumer that stops ends the scan.
    let mut taken = 0;
    s.for_each_record::<Exchange>("r", 0, 0, |_| {
        taken += 1;
        taken < 5
    })
    .unwrap();
    assert_eq!(taken, 5);
}

#[test]
fn delete_and_retention_remove_runs_with_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    for (id, start) in [("old", 1_000u64), ("new", 10_000_000_000)] {
        s.put_run(&Run {
            run_id: id.into(),
            start_ns: 0,
            end_ns: 1,
            start_unix_ns: start,
            ..Default::default()
        })
        .unwrap();
        s.append(&[ex(id, 1), ex(id, 2)]).unwrap();
    }
    let gone = s
        .enforce_retention(10_000_000_100, Some(Duration::from_secs(5)), None)
        .unwrap();
    assert_eq!(gone, vec!["old".to_string()]);
    assert!(s.get_run("old").unwrap().is_none());
    assert!(s.all::<Exchange>("old").unwrap().is_empty());
    assert_eq!(s.delete_run("new").unwrap(), Some(2));
    assert_eq!(s.delete_run("new").unwrap(), None);
}

/// The request times of a run's stored exchanges, in the order a query returns them.
fn times(s: &Store, run: &str) -> Vec<u64> {
    s.all::<Exchange>(run)
        .unwrap()
        .iter()
        .map(|e| e.t_request_first_ns)
        .collect()
}

/// A store in a temporary dir that gives sled's memory back after `bytes` or `idle`.
fn releasing(bytes: u64, idle: Duration) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap().releasing(bytes, idle);
    (dir, s)
}

/// An exchange with a payload of about `bytes` that does not compress (the store compresses
/// its batches), as long chunk lists make them large.
fn big(run: &str, t: u64, bytes: usize) -> Record {
    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let side = (0..bytes)
        .map(|_| {
            // xorshift: bytes with no pattern zstd could use.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b' ' + (x % 95) as u8)
        })
        .collect();
    Record::new(Exchange {
        run_id: run.into(),
        t_request_first_ns: t,
        side,
        ..Default::default()
    })
}

#[test]
fn sled_is_reopened_after_enough_bytes_moved_and_keeps_every_record() {
    let (_dir, s) = releasing(90_000, Duration::from_secs(3600));
    s.append(&[big("r", 1, 40_000)]).unwrap();
    assert!(!s.release_if_due().unwrap(), "40 kB is below the threshold");
    // A write past the threshold gives the memory back on its way out.
    s.append(&[big("r", 2, 40_000), big("r", 3, 40_000)])
        .unwrap();
    assert_eq!(s.releases(), 1);
    assert!(
        !s.release_if_due().unwrap(),
        "nothing moved since the reopen"
    );
    // Writes after the reopen land in the same trees, keyed after the earlier ones.
    s.append(&[big("r", 4, 10)]).unwrap();
    assert_eq!(times(&s, "r"), vec![1, 2, 3, 4]);
}

#[test]
fn a_large_append_is_stored_under_several_keys_of_bounded_size() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    // About 300 kB in one call, as a ring drain or a client upload hands over, plus one
    // record larger than the cap on its own.
    let mut recs: Vec<Record> = (0..150).map(|t| big("v", 1000 + t, 2_000)).collect();
    recs.push(big("v", 5000, MAX_VALUE_BYTES + 10));
    s.append(&recs).unwrap();
    let sizes: Vec<usize> = s
        .with(|h| {
            Ok(h.tree(Exchange::TREE)
                .iter()
                .values()
                .map(|v| keys::open(&v.unwrap()).unwrap().len())
                .collect())
        })
        .unwrap();
    assert!(sizes.len() >= 5, "{sizes:?}");
    let (alone, rest) = sizes.split_last().unwrap();
    assert!(
        *alone > MAX_VALUE_BYTES,
        "the large record, alone: {sizes:?}"
    );
    assert!(rest.iter().all(|&n| n <= MAX_VALUE_BYTES), "{sizes:?}");
    let want: Vec<u64> = (1000..1150).chain([5000]).collect();
    assert_eq!(times(&s, "v"), want);
    assert_eq!(s.count::<Exchange>("v").unwrap(), 151);
}

#[test]
fn an_idle_store_gives_its_memory_back() {
    // Idle time well above a stall of a busy CI machine between two lines.
    let (_dir, s) = releasing(u64::MAX, Duration::from_millis(250));
    assert!(!s.release_if_due().unwrap(), "nothing moved yet");
    s.append(&[ex("r", 1)]).unwrap();
    assert!(!s.release_if_due().unwrap(), "just used");
    // Status polls read the store's size meanwhile; they are not uses. (What sled reports
    // depends on when its flusher last ran: a busy CI machine once saw 0.)
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(75));
        let _ = s.size_on_disk();
    }
    assert!(s.release_if_due().unwrap());
    assert_eq!(s.count::<Exchange>("r").unwrap(), 1);
}

#[test]
fn the_ring_reader_is_not_held_up_by_a_reopen_and_a_reopen_waits_for_users() {
    let (_dir, s) = releasing(1, Duration::from_secs(3600));
    s.append(&[ex("r", 1)]).unwrap();
    {
        // A reopen in progress holds the lock for writing.
        let _reopening = s.open.write().unwrap();
        assert!(!s.try_append(&[ex("r", 2)]).unwrap());
    }
    assert!(s.try_append(&[ex("r", 2)]).unwrap());
    {
        // A user of the store (a streaming query) holds it for reading: no reopen then.
        let _query = s.open.read().unwrap();
        assert!(!s.release_if_due().unwrap());
    }
    assert!(s.release_if_due().unwrap());
    assert_eq!(s.count::<Exchange>("r").unwrap(), 2);
}

#[test]
fn a_long_query_lets_sled_go_and_goes_on_where_it_was() {
    let (_dir, s) = releasing(50_000, Duration::from_secs(3600));
    // 60 batches of 3 records, each batch also holding a late record of two batches
    // before, as long streamed responses finish after later ones start.
    for b in 0..60u64 {
        let mut recs: Vec<Record> = (0..3).map(|i| big("q", 100 + b * 10 + i, 2_000)).collect();
        if b >= 2 {
            recs.push(big("q", 100 + (b - 2) * 10 + 5, 2_000));
        }
        s.append(&recs).unwrap();
    }
    assert!(
        s.releases() >= 5,
        "writing 500 kB reopened {} times",
        s.releases()
    );
    let before = s.releases();
    let mut times = Vec::new();
    s.for_each_record::<Exchange>("q", 0, 0, |e| {
        times.push(e.t_request_first_ns);
        true
    })
    .unwrap();
    assert_eq!(times.len(), 60 * 3 + 58);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let mut unique = times.clone();
    unique.dedup();
    assert_eq!(unique.len(), times.len(), "no record twice across reopens");
    // About 500 kB read at 50 kB a stretch.
    assert!(
        s.releases() - before >= 5,
        "{} reopens during the scan",
        s.releases() - before
    );
}

#[test]
fn size_retention_deletes_the_oldest_runs_until_the_records_fit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    for (id, start, end_ns) in [("a", 1u64, 1u64), ("b", 2, 1), ("c", 3, 1), ("live", 4, 0)] {
        s.put_run(&Run {
            run_id: id.into(),
            end_ns,
            start_unix_ns: start,
            ..Default::default()
        })
        .unwrap();
        for t in 0..10 {
            s.append(&[big(id, t, 1_000)]).unwrap();
        }
    }
    let sizes: Vec<u64> = s
        .list_runs()
        .unwrap()
        .iter()
        .map(|r| r.stored_bytes)
        .collect();
    assert!(sizes.iter().all(|&n| n > 8_000), "{sizes:?}");
    let total: u64 = sizes.iter().sum();
    // Room for all but one run: only the oldest goes, however large sled's files are.
    let gone = s
        .enforce_retention(10, None, Some(total - sizes[0] / 2))
        .unwrap();
    assert_eq!(gone, vec!["a".to_string()]);
    // The capturing run is never deleted, even when it alone is over the limit.
    let gone = s.enforce_retention(10, None, Some(1)).unwrap();
    assert_eq!(gone, vec!["b".to_string(), "c".to_string()]);
    let left: Vec<String> = s
        .list_runs()
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(left, vec!["live".to_string()]);
    // A store from before sizes were kept: counted from the records, the same figure.
    s.with(|h| Ok(h.sizes.remove("live")?)).unwrap();
    assert_eq!(s.run_bytes("live").unwrap(), sizes[3]);
}

#[test]
fn reopens_under_concurrent_writers_and_readers_never_fail_them() {
    let (_dir, s) = releasing(64 << 10, Duration::from_secs(3600));
    let s = std::sync::Arc::new(s);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..2u64 {
        let (s, stop) = (s.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut t = 0;
            while !stop.load(Ordering::Relaxed) {
                let recs: Vec<Record> = (0..8)
                    .map(|i| big("c", (w << 40) | (t * 8 + i), 4_000))
                    .collect();
                if w == 0 {
                    s.append(&recs).unwrap();
                } else {
                    while !s.try_append(&recs).unwrap() {}
                }
                t += 1;
            }
            t * 8
        }));
    }
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                s.get_run("c").unwrap();
                s.for_each_record::<Exchange>("c", 0, 64, |_| true).unwrap();
            }
        })
    };
    // Run until ten reopens happened under load, not for a fixed time: a slow
    // machine reaches fewer in the same time (CI once saw 9 in 2 s).
    let t0 = Instant::now();
    while s.releases() < 10 && t0.elapsed() < Duration::from_secs(60) {
        s.release_if_due().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let written: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    reader.join().unwrap();
    assert!(s.releases() >= 10, "{} reopens", s.releases());
    assert_eq!(s.count::<Exchange>("c").unwrap(), written);
}

/// A store in `dir` with an empty run `r`.
fn with_run_r(dir: &std::path::Path) -> Store {
    let s = Store::open(dir).unwrap();
    s.put_run(&Run {
        run_id: "r".into(),
        ..Default::default()
    })
    .unwrap();
    s
}

#[test]
fn store_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = with_run_r(dir.path());
        s.append(&[ex("r", 7)]).unwrap();
        s.flush().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert!(s.get_run("r").unwrap().is_some());
    assert_eq!(s.all::<Exchange>("r").unwrap().len(), 1);
}

#[test]
fn a_runs_bytes_are_counted_per_kind_and_add_up_to_its_total() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_run_r(dir.path());
    s.append(&[big("r", 1, 2_000), big("r", 2, 3_000)]).unwrap();
    s.append(&[Record::new(tb_proto::v1::ClientRecord {
        run_id: "r".into(),
        json: "y".repeat(500),
        t_sent_ns: 3,
    })])
    .unwrap();
    // Another run's records count for it alone.
    s.append(&[big("other", 1, 7_000)]).unwrap();
    let run = s.get_run("r").unwrap().unwrap();
    let by = &run.stored_bytes_by_kind;
    assert_eq!(
        by.keys().collect::<Vec<_>>(),
        ["client_records", "exchanges"]
    );
    // 5,000 bytes that do not compress much, and 500 that do.
    assert!(by["exchanges"] > 4_000 && by["exchanges"] < 5_200, "{by:?}");
    assert!(
        by["client_records"] > 0 && by["client_records"] < 200,
        "{by:?}"
    );
    assert_eq!(by.values().sum::<u64>(), run.stored_bytes);
    // A store from before kinds were counted: recounted from the records, the same figures.
    s.with(|h| {
        h.sizes.remove("r")?;
        for k in h.kind_sizes.iter().keys() {
            h.kind_sizes.remove(k?)?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(s.get_run("r").unwrap().unwrap().stored_bytes_by_kind, *by);
    // ... and one from before kinds, whose total was kept.
    s.with(|h| {
        for k in h.kind_sizes.iter().keys() {
            h.kind_sizes.remove(k?)?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(s.run_bytes_by_kind("r").unwrap(), *by);
    s.delete_run("r").unwrap();
    assert!(s.run_bytes_by_kind("r").unwrap().is_empty());
}

/// An exchange as a capture stores it: 16 streamed chunks, realistic strings and times.
fn realistic(run: &str, i: u64) -> Exchange {
    let t0 = 9_876_543_210_000 + i * 3_000_000;
    Exchange {
        run_id: run.into(),
        side: "client".into(),
        pid: 4242,
        comm: "tbctl".into(),
        conn_id: i % 64,
        request_id: i.to_string(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        t_request_first_ns: t0,
        t_request_last_ns: t0 + 41_000,
        t_response_first_ns: t0 + 20_000_000 + i % 977,
        t_response_last_ns: t0 + 36_000_000,
        chunks: (0..16u64)
            .map(|k| tb_proto::v1::Chunk {
                t_ns: t0 + 20_000_000 + k * 1_000_000 + (i * 7 + k * 13) % 50_000,
                bytes: 180 + (i + k) % 9,
            })
            .collect(),
        http_status: 200,
        request_bytes: 820,
        response_bytes: 3_486,
        seq: (i / 64) as u32,
        ..Default::default()
    }
}

#[test]
fn batches_are_stored_compressed_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let want: Vec<Exchange> = (0..200).map(|i| realistic("z", i)).collect();
    s.append(&want.iter().cloned().map(Record::new).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(s.all::<Exchange>("z").unwrap(), want);
    let plain: usize = want.iter().map(|x| x.encoded_len() + 2).sum();
    let stored = s.run_bytes("z").unwrap() as usize;
    // Packed chunk lists and zstd together: under a fifth of the plain messages.
    assert!(
        stored * 5 < plain,
        "{plain} bytes of messages stored as {stored}"
    );
    assert_eq!(s.count::<Exchange>("z").unwrap(), 200);
}

#[test]
fn batches_from_before_compression_are_read_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let old: Vec<Exchange> = (0..3).map(|i| realistic("old", i)).collect();
    // As the store wrote them then: plain length-delimited messages, each with its run id.
    let mut value = Vec::new();
    for x in &old {
        x.encode_length_delimited(&mut value).unwrap();
    }
    s.with(|h| {
        h.tree(Exchange::TREE)
            .insert(record_key("old", old[0].t_request_first_ns, 1), value)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(s.all::<Exchange>("old").unwrap(), old);
    assert_eq!(s.count::<Exchange>("old").unwrap(), 3);
}
