//! Linking connections to their kernel sockets and TCP states: connect and accept, the peer
//! address, state changes (handshake, who closed first), retransmits and close.

use super::*;

impl ConnTracker {
    pub(super) fn on_connect(&mut self, c: &ConnectEvent, out: &mut impl FnMut(Output)) {
        let key = (c.hdr.pid, c.fd as u32);
        let ok = c.ret == 0 || c.ret == EINPROGRESS;
        if !ok && self.conns.contains_key(&key) {
            // connect() again on a socket already connecting or connected (EALREADY, EISCONN):
            // a completion check, not a new connection.
            return;
        }
        let pending = self
            .pending_by_fd
            .remove(&key)
            .and_then(|sk| self.pending.remove(&sk).map(|p| (sk, p)));
        if self.conns.contains_key(&key) {
            self.stats.missed_closes += 1;
            self.finish(key, c.hdr.ts_ns, out);
        }
        let id = self.next_id();
        let mut msg = Connection {
            run_id: self.run_id.clone(),
            conn_id: id,
            side: "client".to_owned(),
            pid: c.hdr.pid,
            comm: c_str(&c.comm),
            src: None,
            dst: Some(endpoint(&c.dst)),
            t_connect_start_ns: c.ts_enter_ns,
            connect_ret: c.ret,
            is_dns: c.dst.port == DNS_PORT,
            ..Default::default()
        };
        if let Some((_, p)) = &pending {
            msg.src = Some(endpoint(&p.local));
            msg.t_established_ns = p.t_established_ns;
            msg.retransmits = p.retransmits;
        }
        if !ok {
            // The attempt ended when connect() returned.
            msg.t_closed_ns = c.hdr.ts_ns;
            self.stats.failed_connects += 1;
            self.stats.connections += 1;
            out(Output::Connection(msg));
            return;
        }
        let mut conn = Conn {
            is_client: true,
            skaddr: 0,
            tuple: None,
            open: None,
            seq: 0,
            dns: msg.is_dns.then(DnsState::default),
            last_data_ns: 0,
            tcp_closed_ns: 0,
            arrived: Default::default(),
            msg,
        };
        if let Some((sk, _)) = pending {
            conn.skaddr = sk;
            self.by_sk.insert(sk, key);
        }
        self.conns.insert(key, conn);
    }

    pub(super) fn on_accept(&mut self, a: &AcceptEvent, out: &mut impl FnMut(Output)) {
        let key = (a.hdr.pid, a.fd as u32);
        if self.conns.contains_key(&key) {
            self.stats.missed_closes += 1;
            self.finish(key, a.hdr.ts_ns, out);
        }
        let id = self.next_id();
        let conn = Conn {
            msg: Connection {
                run_id: self.run_id.clone(),
                conn_id: id,
                side: "server".to_owned(),
                pid: a.hdr.pid,
                comm: c_str(&a.comm),
                src: Some(endpoint(&a.peer)),
                // accept() names only the port; the address comes from a linked state event.
                dst: Some(Endpoint {
                    addr: String::new(),
                    port: u32::from(a.local_port),
                }),
                t_connect_start_ns: a.hdr.ts_ns,
                ..Default::default()
            },
            is_client: false,
            last_data_ns: 0,
            tcp_closed_ns: 0,
            arrived: Default::default(),
            skaddr: 0,
            tuple: None,
            open: None,
            seq: 0,
            dns: None,
        };
        self.conns.insert(key, conn);
        self.link_server(key, a.local_port, &a.peer);
    }

    /// A server socket's peer from getpeername(), for servers that accepted it with a null
    /// address: the connection gets its source and is linked to its kernel socket.
    pub(super) fn on_peer(&mut self, p: &PeerEvent) {
        let key = (p.hdr.pid, p.fd as u32);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.is_client || conn.skaddr != 0 || conn.tuple.is_some() {
            return;
        }
        conn.msg.src = Some(endpoint(&p.peer));
        let local_port = conn.msg.dst.as_ref().map_or(0, |e| e.port as u16);
        self.link_server(key, local_port, &p.peer);
    }

    /// Links server connection `key` to its kernel socket by 4-tuple: now, when the socket's
    /// handshake was seen before accept() handed it out, or when a later state event names it.
    pub(super) fn link_server(&mut self, key: FdKey, local_port: u16, peer: &SockAddr) {
        let Some(tuple) = TupleKey::new(local_port, peer) else {
            return;
        };
        let pending = self
            .pending_by_tuple
            .remove(&tuple)
            .and_then(|sk| self.pending.remove(&sk).map(|p| (sk, p)));
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        match pending {
            Some((sk, p)) => {
                conn.skaddr = sk;
                set_local_addr(&mut conn.msg.dst, &p.local);
                conn.msg.t_established_ns = p.t_established_ns;
                conn.msg.retransmits = p.retransmits;
                self.by_sk.insert(sk, key);
            }
            None => {
                conn.tuple = Some(tuple);
                self.by_tuple.insert(tuple, key);
            }
        }
    }

    pub(super) fn on_close(&mut self, c: &CloseEvent, out: &mut impl FnMut(Output)) {
        let key = (c.hdr.pid, c.fd as u32);
        if let Some(conn) = self.conns.get_mut(&key) {
            // close() of an established socket whose peer has sent no FIN (nor a reset) sends
            // this side's FIN first. Its own FIN_WAIT1 comes after the connection is emitted.
            if conn.msg.closed_by.is_empty()
                && conn.msg.t_established_ns != 0
                && conn.tcp_closed_ns == 0
                && !conn.msg.is_dns
            {
                conn.msg.closed_by = side_name(conn.is_client).to_owned();
            }
        }
        self.finish(key, c.hdr.ts_ns, out);
    }

    pub(super) fn on_state(&mut self, s: &StateEvent) {
        if s.skaddr == 0 {
            return;
        }
        if s.newstate == tcp_state::SYN_SENT && s.fd >= 0 {
            let key = (s.hdr.pid, s.fd as u32);
            if let Some(old) = self.pending_by_fd.remove(&key) {
                self.pending.remove(&old);
            }
            // A new socket at the address of one whose TCP_CLOSE was lost: unlink the old one.
            if let Some(stale) = self.by_sk.remove(&s.skaddr) {
                if let Some(conn) = self.conns.get_mut(&stale) {
                    conn.skaddr = 0;
                }
            }
            self.add_pending(
                s.skaddr,
                Pending {
                    claim: Claim::Connect(key),
                    local: s.src,
                    t_established_ns: 0,
                    retransmits: 0,
                },
            );
            return;
        }
        if let Some(key) = self.resolve(s.skaddr, &s.src, &s.dst) {
            if let Some(conn) = self.conns.get_mut(&key) {
                if conn.is_client {
                    set_local_port(&mut conn.msg.src, &s.src);
                } else {
                    set_local_addr(&mut conn.msg.dst, &s.src);
                }
                if s.newstate == tcp_state::ESTABLISHED && conn.msg.t_established_ns == 0 {
                    conn.msg.t_established_ns = s.hdr.ts_ns;
                }
                if conn.msg.closed_by.is_empty() {
                    if let Some(who) = closer(conn.is_client, s.oldstate, s.newstate) {
                        conn.msg.closed_by = who.to_owned();
                    }
                }
            }
            if s.newstate == tcp_state::CLOSE {
                // The TCP connection is over (a reset, a shutdown() answered, a failed
                // handshake), but the fd may still be open: reads taken before it may still be
                // held in the kernel's batch, sent at close(), and a write into a reset
                // connection returns after this event. So the connection ends at close(), at
                // the fd's reuse or at capture stop; only the socket's address is released
                // now, since the kernel may reuse it.
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.tcp_closed_ns = s.hdr.ts_ns;
                    conn.skaddr = 0;
                }
                if self.by_sk.get(&s.skaddr) == Some(&key) {
                    self.by_sk.remove(&s.skaddr);
                }
            }
            return;
        }
        if let Some(p) = self.pending.get_mut(&s.skaddr) {
            if s.newstate == tcp_state::CLOSE {
                let claim = p.claim;
                self.pending.remove(&s.skaddr);
                self.unindex_pending(s.skaddr, claim);
                return;
            }
            if s.src.port != 0 {
                p.local = s.src;
            }
            if s.newstate == tcp_state::ESTABLISHED && p.t_established_ns == 0 {
                p.t_established_ns = s.hdr.ts_ns;
            }
            return;
        }
        if s.newstate == tcp_state::ESTABLISHED && s.fd < 0 {
            // A server-side socket finishing its handshake before accept() hands it out.
            if let Some(tuple) = TupleKey::new(s.src.port, &s.dst) {
                if let Some(old) = self.pending_by_tuple.remove(&tuple) {
                    self.pending.remove(&old);
                }
                self.add_pending(
                    s.skaddr,
                    Pending {
                        claim: Claim::Accept(tuple),
                        local: s.src,
                        t_established_ns: s.hdr.ts_ns,
                        retransmits: 0,
                    },
                );
            }
        }
    }

    /// New bytes reached a tracked socket: queued on its connection, in stream order, until
    /// the reads that take them. Segments of sockets tied to no connection are counted.
    pub(super) fn on_arrival(&mut self, a: &ArrivalEvent) {
        let conn = self
            .by_sk
            .get(&a.skaddr)
            .and_then(|key| self.conns.get_mut(key));
        let Some(conn) = conn else {
            self.stats.orphan_arrivals += 1;
            return;
        };
        conn.arrived
            .push(a.seq, a.rcv_nxt, a.hdr.ts_ns, a.bytes, &mut self.stats);
    }

    pub(super) fn on_retransmit(&mut self, r: &RetransmitEvent) {
        self.stats.retransmits += 1;
        if let Some(key) = self.resolve(r.skaddr, &r.src, &r.dst) {
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.msg.retransmits += 1;
                if let Some(x) = conn.open.as_mut() {
                    x.retransmits += 1;
                }
                return;
            }
        }
        // A SYN retransmitted while a blocking connect() waits belongs to the connection it
        // will become.
        match self.pending.get_mut(&r.skaddr) {
            Some(p) => p.retransmits += 1,
            None => self.stats.orphan_retransmits += 1,
        }
    }

    /// The open connection a kernel socket belongs to: linked already, or a server connection
    /// claimed now by its 4-tuple.
    pub(super) fn resolve(
        &mut self,
        skaddr: u64,
        local: &SockAddr,
        peer: &SockAddr,
    ) -> Option<FdKey> {
        if let Some(key) = self.by_sk.get(&skaddr) {
            return Some(*key);
        }
        if self.by_tuple.is_empty() {
            return None;
        }
        let tuple = TupleKey::new(local.port, peer)?;
        let key = self.by_tuple.remove(&tuple)?;
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.skaddr = skaddr;
            conn.tuple = None;
        }
        self.by_sk.insert(skaddr, key);
        Some(key)
    }

    pub(super) fn add_pending(&mut self, skaddr: u64, p: Pending) {
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&skaddr) {
            self.stats.pending_dropped += 1;
            return;
        }
        if let Some(old) = self.pending.insert(skaddr, p) {
            // The kernel reused the address of a socket whose TCP_CLOSE was lost.
            self.unindex_pending(skaddr, old.claim);
        }
        match p.claim {
            Claim::Connect(k) => self.pending_by_fd.insert(k, skaddr),
            Claim::Accept(t) => self.pending_by_tuple.insert(t, skaddr),
        };
    }

    pub(super) fn unindex_pending(&mut self, skaddr: u64, claim: Claim) {
        match claim {
            Claim::Connect(k) => {
                if self.pending_by_fd.get(&k) == Some(&skaddr) {
                    self.pending_by_fd.remove(&k);
                }
            }
            Claim::Accept(t) => {
                if self.pending_by_tuple.get(&t) == Some(&skaddr) {
                    self.pending_by_tuple.remove(&t);
                }
            }
        }
    }
}
