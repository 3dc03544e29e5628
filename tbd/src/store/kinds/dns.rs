//! Stored kind: a DNS lookup, keyed by its query.

use tb_proto::v1::DnsLookup;

use crate::store::Stored;

impl Stored for DnsLookup {
    const TREE: &'static str = "dns";
    fn time_ns(&self) -> u64 {
        self.t_start_ns
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn run_id_mut(&mut self) -> &mut String {
        &mut self.run_id
    }
}
