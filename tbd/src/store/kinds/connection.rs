//! Stored kind: a TCP connection, keyed by its connect's start.

use tb_proto::v1::Connection;

use crate::store::Stored;

impl Stored for Connection {
    const TREE: &'static str = "connections";
    fn time_ns(&self) -> u64 {
        self.t_connect_start_ns
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn run_id_mut(&mut self) -> &mut String {
        &mut self.run_id
    }
}
