//! At start: runs a killed tbd left capturing are closed as interrupted, with the time of
//! their last stored record and their records recounted, so every exchange that reached the
//! store is listed and queryable and retention applies to them.

use tb_proto::v1::{Connection, DnsLookup, Exchange, Run};

use crate::{
    error::TbdError,
    store::{Store, Stored},
};

/// The end reason of a run closed here.
pub const INTERRUPTED: &str =
    "interrupted: tbd stopped during the capture; closed at its next start at the last stored record";

fn last_time<M: Stored>(store: &Store, run_id: &str) -> Result<u64, TbdError> {
    let mut last = 0;
    store.for_each_record::<M>(run_id, 0, 0, |m| {
        last = last.max(m.time_ns());
        true
    })?;
    Ok(last)
}

/// Closes every run still marked capturing; returns the runs closed.
pub fn close_interrupted(store: &Store) -> Result<Vec<Run>, TbdError> {
    let mut closed = Vec::new();
    for mut run in store.list_runs()?.into_iter().filter(|r| r.end_ns == 0) {
        let id = run.run_id.clone();
        run.exchanges = store.count::<Exchange>(&id)?;
        run.connections = store.count::<Connection>(&id)?;
        run.dns_lookups = store.count::<DnsLookup>(&id)?;
        run.client_records = store.count::<tb_proto::v1::ClientRecord>(&id)?;
        let last = last_time::<Exchange>(store, &id)?
            .max(last_time::<Connection>(store, &id)?)
            .max(last_time::<DnsLookup>(store, &id)?);
        // A run with nothing stored ends where it began (but is still ended).
        run.end_ns = last.max(run.start_ns).max(1);
        run.end_reason = INTERRUPTED.into();
        store.put_run(&run)?;
        tracing::warn!(
            run = %id,
            exchanges = run.exchanges,
            "closed a run tbd left capturing when it stopped"
        );
        closed.push(run);
    }
    if !closed.is_empty() {
        store.flush()?;
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Record;

    #[test]
    fn a_run_left_capturing_is_closed_with_its_last_record_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let run = |id: &str, end_ns| Run {
            run_id: id.into(),
            start_ns: 1_000,
            end_ns,
            ..Default::default()
        };
        store.put_run(&run("cut", 0)).unwrap();
        store.put_run(&run("done", 5_000)).unwrap();
        let ex = |t| {
            Record::new(Exchange {
                run_id: "cut".into(),
                t_request_first_ns: t,
                ..Default::default()
            })
        };
        store
            .append(&[
                ex(2_000),
                ex(9_000),
                Record::new(Connection {
                    run_id: "cut".into(),
                    t_connect_start_ns: 7_000,
                    ..Default::default()
                }),
            ])
            .unwrap();
        let closed = close_interrupted(&store).unwrap();
        assert_eq!(closed.len(), 1);
        let cut = store.get_run("cut").unwrap().unwrap();
        assert_eq!((cut.end_ns, cut.exchanges, cut.connections), (9_000, 2, 1));
        assert!(cut.end_reason.starts_with("interrupted"));
        assert_eq!(store.get_run("done").unwrap().unwrap().end_reason, "");
        assert!(close_interrupted(&store).unwrap().is_empty(), "once");
    }
}
