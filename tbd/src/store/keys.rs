//! Record keys and batch values: run prefix, time, sequence; length-delimited messages,
//! compressed.

use std::borrow::Cow;

use crate::error::TbdError;

/// First byte of a compressed batch value (a zstd frame follows). Values written before
/// compression start with their first record's length, never 0: every record then carried
/// its run id, so it was never empty. Those are read as they are.
const COMPRESSED: u8 = 0;
/// zstd's fastest level: the batches are records of one kind and one run, full of repeated
/// field tags, strings and close times, and compress about fourfold even so.
const LEVEL: i32 = 1;

/// A batch value as stored: the marker and the zstd frame of `raw`.
pub(super) fn seal(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        // One compression context per writing thread: making one per batch was 1.3% of
        // tbd's CPU in a saturated capture.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut out = vec![0u8; 1 + zstd::zstd_safe::compress_bound(raw.len())];
    out[0] = COMPRESSED;
    let n = COMPRESSOR.with_borrow_mut(|c| {
        let c = match c {
            Some(c) => c,
            None => c.insert(zstd::bulk::Compressor::new(LEVEL).expect("a zstd context")),
        };
        // The buffer holds the worst case, so this cannot fail.
        c.compress_to_buffer(raw, &mut out[1..])
            .expect("zstd within its bound")
    });
    out.truncate(1 + n);
    out
}

/// The length-delimited records of a stored batch value.
pub(super) fn open(value: &[u8]) -> Result<Cow<'_, [u8]>, TbdError> {
    match value.split_first() {
        Some((&COMPRESSED, frame)) => zstd::stream::decode_all(frame)
            .map(Cow::Owned)
            .map_err(|e| TbdError::Corrupt(format!("a stored batch does not decompress: {e}"))),
        _ => Ok(Cow::Borrowed(value)),
    }
}

/// How many messages one batch value holds, without decoding them.
pub(super) fn count_batch(value: &[u8]) -> Result<u64, TbdError> {
    let raw = open(value)?;
    let mut buf: &[u8] = &raw;
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
