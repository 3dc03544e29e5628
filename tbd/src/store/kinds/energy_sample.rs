//! Stored kind: the host's energy readings at one time (run id empty: samples belong to the
//! host, and a run's energy is the samples in its time range).

use tb_proto::v1::EnergySample;

use crate::store::Stored;

impl Stored for EnergySample {
    const TREE: &'static str = "energy";
    fn time_ns(&self) -> u64 {
        self.t_ns
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn run_id_mut(&mut self) -> &mut String {
        &mut self.run_id
    }
}
