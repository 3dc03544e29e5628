//! Building HTTP exchanges from data syscalls: a request's writes, the response's reads or
//! writes, chunk by chunk, on a tracked connection.

use super::*;

impl ConnTracker {
    pub(super) fn on_data(&mut self, d: &Syscall, out: &mut impl FnMut(Output)) {
        let Some(conn) = self.conns.get_mut(&(d.pid, d.fd)) else {
            self.stats.orphan_data += 1;
            return;
        };
        Self::take_data(conn, &mut self.spare, &mut self.stats, d, out);
    }

    /// One data syscall of `conn`. An associated function, so that a batch's chunks, all of
    /// one connection, share one lookup of it.
    #[allow(clippy::vec_box)] // the tracker's spares, boxed on purpose (see `Output::Exchange`)
    pub(super) fn take_data(
        conn: &mut Conn,
        spare: &mut Vec<Box<Exchange>>,
        stats: &mut TrackerStats,
        d: &Syscall,
        out: &mut impl FnMut(Output),
    ) {
        if d.batched && d.t_exit <= conn.last_data_ns {
            stats.duplicate_chunks += 1;
            return;
        }
        conn.last_data_ns = conn.last_data_ns.max(d.t_exit);
        let bytes = d.bytes;
        let is_write = d.is_write;
        if let Some(dns) = conn.dns.as_mut() {
            if is_write {
                if dns.t_first_write_ns == 0 {
                    dns.t_first_write_ns = d.t_enter;
                }
            } else {
                dns.t_last_read_ns = d.t_exit;
            }
            return;
        }
        let prefix = d.prefix;
        if is_write == conn.is_client {
            // Request direction: write on the client, read on the server.
            if let Some(head) = request_line(prefix) {
                if let Some(done) = conn.open.take() {
                    stats.exchanges += 1;
                    out(Output::Exchange(done));
                }
                // The client's request leaves when its write is entered; the server has the
                // request once its read returns.
                let t_first = if conn.is_client { d.t_enter } else { d.t_exit };
                // Built in a spare's box, its strings and lists reused: nothing is allocated.
                let mut x = spare.pop().unwrap_or_default();
                begin(&mut x, conn, &head, t_first, d);
                conn.open = Some(x);
                conn.seq += 1;
            } else if let Some(x) = conn.open.as_mut() {
                // Rest of the request (headers and body in further syscalls, or a body sent
                // after `100 Continue`).
                x.t_request_last_ns = d.t_exit;
                x.request_bytes += bytes;
            } else {
                stats.unmatched_data += 1;
            }
        } else {
            // Response direction: read on the client (when the bytes arrived), write on the
            // server (when the server emitted them, i.e. entered the write).
            let Some(x) = conn.open.as_mut() else {
                stats.unmatched_data += 1;
                return;
            };
            let t = if conn.is_client { d.t_exit } else { d.t_enter };
            if x.t_response_first_ns == 0 {
                x.t_response_first_ns = t;
            }
            // Checked again after an interim 1xx so that the final status wins.
            if x.http_status < 200 {
                if let Some(s) = status_line(prefix) {
                    x.http_status = u32::from(s);
                }
            }
            x.chunks.push(Chunk { t_ns: t, bytes });
            x.t_response_last_ns = t;
            x.response_bytes += bytes;
        }
        if !is_write {
            conn.arrived.take(
                bytes,
                d.t_exit,
                conn.open.as_mut().map(|x| &mut x.arrivals),
                stats,
            );
        }
    }
}

/// `x` rebuilt in place as the exchange that `head`, read at `d`, opens on `conn`, keeping its
/// strings' and lists' allocations. Written field by field: moving a spare out and back whole
/// touched its cold 500 bytes twice, a tenth of tbd's CPU (perf).
fn begin(x: &mut Exchange, conn: &Conn, head: &RequestHead, t_first: u64, d: &Syscall) {
    // Every field named, so that a new one cannot be left holding the spare's.
    let Exchange {
        run_id,
        side,
        pid,
        comm,
        conn_id,
        conn_new,
        request_id,
        method,
        path,
        t_request_first_ns,
        t_request_last_ns,
        t_response_first_ns,
        t_response_last_ns,
        chunks,
        http_status,
        request_bytes,
        response_bytes,
        retransmits,
        seq,
        packed_chunk_gaps_ns,
        packed_chunk_bytes,
        arrivals,
        packed_arrival_gaps_ns,
        packed_arrival_bytes,
    } = x;
    set(run_id, &conn.msg.run_id);
    set(side, &conn.msg.side);
    *pid = conn.msg.pid;
    set(comm, &conn.msg.comm);
    *conn_id = conn.msg.conn_id;
    *conn_new = conn.seq == 0;
    set(request_id, head.request_id.unwrap_or_default());
    set(method, head.method);
    set(path, head.path);
    (*t_request_first_ns, *t_request_last_ns) = (t_first, d.t_exit);
    (*t_response_first_ns, *t_response_last_ns) = (0, 0);
    (*http_status, *retransmits) = (0, 0);
    (*request_bytes, *response_bytes) = (d.bytes, 0);
    *seq = conn.seq;
    chunks.clear();
    // A streamed response is dozens of chunks: growing from empty would
    // reallocate several times per exchange.
    chunks.reserve(tbd_common::BATCH_LEN);
    arrivals.clear();
    // The store's packed lists too keep their capacity (see
    // `store::kinds::exchange`).
    packed_chunk_gaps_ns.clear();
    packed_chunk_bytes.clear();
    packed_arrival_gaps_ns.clear();
    packed_arrival_bytes.clear();
}

/// `s` holding `from`, in its own allocation.
fn set(s: &mut String, from: &str) {
    s.clear();
    s.push_str(from);
}
