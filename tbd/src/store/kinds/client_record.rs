//! Stored kind: a load generator's request record uploaded by tbctl, keyed by its send.

use tb_proto::v1::ClientRecord;

use crate::store::Stored;

impl Stored for ClientRecord {
    const TREE: &'static str = "client_records";
    fn time_ns(&self) -> u64 {
        self.t_sent_ns
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn run_id_mut(&mut self) -> &mut String {
        &mut self.run_id
    }
}
