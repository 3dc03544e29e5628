//! Record keys and batch values: run prefix, time, sequence; length-delimited messages.

use crate::error::TbdError;

/// How many messages one batch value holds, without decoding them.
pub(super) fn count_batch(mut buf: &[u8]) -> Result<u64, TbdError> {
    let mut n = 0;
    while !buf.is_empty() {
        let len = prost::encoding::decode_length_delimiter(&mut buf)?;
        if len > buf.len() {
            return Err(TbdError::Corrupt(format!(
                "a record of {len} bytes runs past the batch's end"
            )));
        }
        buf = &buf[len..];
        n += 1;
    }
    Ok(n)
}

/// A stored u64 (0 when it is not 8 bytes).
pub(super) fn be_u64(b: &[u8]) -> u64 {
    b.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Key prefix shared by all records of a run.
pub(super) fn run_prefix(run_id: &str) -> Vec<u8> {
    let id = run_id.as_bytes();
    let mut k = Vec::with_capacity(1 + id.len() + 16);
    k.push(id.len().min(255) as u8);
    k.extend_from_slice(&id[..id.len().min(255)]);
    k
}

pub(super) fn record_key(run_id: &str, t_ns: u64, seq: u64) -> Vec<u8> {
    let mut k = run_prefix(run_id);
    k.extend_from_slice(&t_ns.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Key of a run's byte count in one stored kind's tree: the run's prefix, then the tree.
pub(super) fn kind_size_key(run_id: &str, tree: &str) -> Vec<u8> {
    let mut k = run_prefix(run_id);
    k.extend_from_slice(tree.as_bytes());
    k
}
