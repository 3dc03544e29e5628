//! Pairs the two ends of each connection on the host by address and port, for exchanges no
//! client record names (a `tbctl capture` of another load generator sends no request id): the
//! client and server sides of one TCP connection carry the same 4-tuple (tbd writes both as
//! src = the client's end, dst = the server's), and the n-th exchange on one end is the n-th
//! on the other. Paired lines get one synthetic request id, so the client / network / server
//! split works for any client.

use std::collections::HashMap;

use super::join::KernelLine;

/// Synthetic ids have the top bit set: tbctl's own request ids never do.
pub const SYNTHETIC: u64 = 1 << 63;

/// A connection's key: the client's end and the server's port (the server side may not know
/// its own address when accept() named only the port).
fn key(l: &KernelLine) -> Option<(String, String)> {
    let port = l.conn.dst.rsplit_once(':')?.1;
    (!l.conn.src.is_empty() && !port.is_empty() && port != "0")
        .then(|| (l.conn.src.clone(), port.to_string()))
}

/// Gives each client/server pair of unnamed exchanges a shared synthetic request id; returns
/// how many pairs it made.
pub fn by_connection(lines: &mut [KernelLine]) -> u64 {
    // Per side and key, the connections in order of their first exchange, each with its
    // exchanges in order.
    type Conns = HashMap<(String, String), Vec<(u64, Vec<usize>)>>;
    let mut sides: [Conns; 2] = Default::default();
    for (i, l) in lines.iter().enumerate() {
        if l.request_id.is_some() {
            continue;
        }
        let Some(k) = key(l) else { continue };
        let side = match l.side.as_str() {
            "client" => 0,
            "server" => 1,
            _ => continue,
        };
        let conns = sides[side].entry(k).or_default();
        match conns.iter_mut().find(|(id, _)| *id == l.conn.id) {
            Some((_, ex)) => ex.push(i),
            None => conns.push((l.conn.id, vec![i])),
        }
    }
    let start = |i: &usize| lines[*i].t_request_first_ns.unwrap_or(u64::MAX);
    let mut pairs = Vec::new();
    let [clients, mut servers] = sides;
    for (k, mut cs) in clients {
        let Some(mut ss) = servers.remove(&k) else {
            continue;
        };
        for conns in [&mut cs, &mut ss] {
            for (_, ex) in conns.iter_mut() {
                ex.sort_by_key(start);
            }
            conns.sort_by_key(|(_, ex)| ex.first().map_or(u64::MAX, start));
        }
        // A 4-tuple reused over the run: its connections pair in order.
        for ((_, c), (_, s)) in cs.iter().zip(&ss) {
            pairs.extend(c.iter().copied().zip(s.iter().copied()));
        }
    }
    pairs.sort_unstable();
    for (n, (c, s)) in pairs.iter().enumerate() {
        let id = SYNTHETIC | n as u64;
        lines[*c].request_id = Some(id);
        lines[*s].request_id = Some(id);
    }
    pairs.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::join::ConnInfo;

    fn line(side: &str, conn: u64, src: &str, dst: &str, t: u64) -> KernelLine {
        KernelLine {
            side: side.into(),
            conn: ConnInfo {
                id: conn,
                src: src.into(),
                dst: dst.into(),
                ..Default::default()
            },
            t_request_first_ns: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn the_ends_of_a_connection_pair_in_order_and_strangers_do_not() {
        let mut lines = vec![
            // Two exchanges on one connection, seen from both ends (server out of order).
            line("client", 1, "127.0.0.1:40000", "127.0.0.1:8000", 100),
            line("server", 7, "127.0.0.1:40000", ":8000", 260),
            line("client", 1, "127.0.0.1:40000", "127.0.0.1:8000", 250),
            line("server", 7, "127.0.0.1:40000", "127.0.0.1:8000", 110),
            // A client connection whose server is not on this host.
            line("client", 2, "10.0.0.5:40001", "10.0.0.9:8000", 300),
        ];
        let named = KernelLine {
            request_id: Some(5),
            ..line("client", 3, "127.0.0.1:40002", "127.0.0.1:8000", 1)
        };
        lines.push(named);
        assert_eq!(by_connection(&mut lines), 2);
        assert_eq!(lines[0].request_id, lines[3].request_id, "first with first");
        assert_eq!(
            lines[2].request_id, lines[1].request_id,
            "second with second"
        );
        assert_ne!(lines[0].request_id, lines[2].request_id);
        assert!(lines[0].request_id.unwrap() & SYNTHETIC != 0);
        assert_eq!(lines[4].request_id, None);
        assert_eq!(
            lines[5].request_id,
            Some(5),
            "a named exchange keeps its id"
        );
    }
}
