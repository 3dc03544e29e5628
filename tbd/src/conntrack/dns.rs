//! DNS lookups: getaddrinfo's uprobe events become lookup records.

use super::*;

impl ConnTracker {
    pub(super) fn on_dns(&mut self, d: &DnsEvent, out: &mut impl FnMut(Output)) {
        self.stats.dns_lookups += 1;
        out(Output::Dns(DnsLookup {
            run_id: self.run_id.clone(),
            pid: d.hdr.pid,
            name: c_str(&d.name),
            t_start_ns: d.ts_start_ns,
            t_end_ns: d.hdr.ts_ns,
            ret: d.ret,
            source: "getaddrinfo".to_owned(),
        }));
    }
}
