//! Stored kind: a request and its response, keyed by the request's first byte.

use tb_proto::v1::Exchange;

use crate::store::Stored;

impl Stored for Exchange {
    const TREE: &'static str = "exchanges";
    fn time_ns(&self) -> u64 {
        self.t_request_first_ns
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
}
