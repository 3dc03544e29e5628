//! Stored kind: a request and its response, keyed by the request's first byte.
//!
//! Stored with its chunk and arrival lists packed: each entry's time as its gap from the one
//! before (the first's from the response's, or the request's, first byte) and its bytes, as
//! two packed varint lists. A
//! streamed chunk then costs two to four bytes of time and one or two of size instead of a
//! nested message of thirteen, and every time comes back exactly.

use tb_proto::v1::{Chunk, Exchange};

use crate::store::Stored;

impl Stored for Exchange {
    const TREE: &'static str = "exchanges";
    fn time_ns(&self) -> u64 {
        self.t_request_first_ns
    }
    fn run_id(&self) -> &str {
        &self.run_id
    }
    fn run_id_mut(&mut self) -> &mut String {
        &mut self.run_id
    }
    fn pack(&mut self) {
        pack(
            &mut self.chunks,
            self.t_response_first_ns,
            &mut self.packed_chunk_gaps_ns,
            &mut self.packed_chunk_bytes,
        );
        pack(
            &mut self.arrivals,
            self.t_request_first_ns,
            &mut self.packed_arrival_gaps_ns,
            &mut self.packed_arrival_bytes,
        );
    }
    fn unpack(&mut self) {
        unpack(
            &mut self.chunks,
            self.t_response_first_ns,
            &mut self.packed_chunk_gaps_ns,
            &mut self.packed_chunk_bytes,
        );
        unpack(
            &mut self.arrivals,
            self.t_request_first_ns,
            &mut self.packed_arrival_gaps_ns,
            &mut self.packed_arrival_bytes,
        );
    }
}

/// Moves `list` into gaps from `base` (each from the one before) and sizes.
fn pack(list: &mut Vec<Chunk>, base: u64, gaps: &mut Vec<i64>, sizes: &mut Vec<u64>) {
    let mut prev = base;
    gaps.clear();
    sizes.clear();
    gaps.reserve(list.len());
    sizes.reserve(list.len());
    // Drained, not dropped: the list keeps its capacity for the tracker to reuse.
    for c in list.drain(..) {
        // Wrapping, so that any order of times (none is expected) comes back exactly.
        gaps.push(c.t_ns.wrapping_sub(prev) as i64);
        sizes.push(c.bytes);
        prev = c.t_ns;
    }
}

/// Undoes [`pack`].
fn unpack(list: &mut Vec<Chunk>, base: u64, gaps: &mut Vec<i64>, sizes: &mut Vec<u64>) {
    let mut t = base;
    list.extend(gaps.drain(..).zip(sizes.drain(..)).map(|(gap, bytes)| {
        t = t.wrapping_add(gap as u64);
        Chunk { t_ns: t, bytes }
    }));
    sizes.clear();
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn exchange(chunks: &[(u64, u64)]) -> Exchange {
        Exchange {
            run_id: "r".into(),
            t_request_first_ns: 1_000,
            t_response_first_ns: chunks.first().map_or(0, |c| c.0),
            chunks: chunks
                .iter()
                .map(|&(t_ns, bytes)| Chunk { t_ns, bytes })
                .collect(),
            // Each chunk's bytes arrived a little before it was read.
            arrivals: chunks
                .iter()
                .map(|&(t_ns, bytes)| Chunk {
                    t_ns: t_ns.wrapping_sub(3_000),
                    bytes,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn packing_keeps_every_chunk_exactly_in_a_third_of_the_bytes() {
        // 16 chunks 1 to 8 ms apart, as a streamed response, at a realistic monotonic time.
        let t0 = 9_876_543_210_123u64;
        let chunks: Vec<(u64, u64)> = (0..16u64)
            .map(|i| (t0 + i * 1_000_000 + (i * 7_919 % 7_000_000), 180 + i))
            .collect();
        let plain = exchange(&chunks);
        let mut stored = plain.clone();
        stored.pack();
        assert!(stored.chunks.is_empty() && stored.arrivals.is_empty());
        let (before, after) = (plain.encoded_len(), stored.encoded_len());
        assert!(after * 3 < before * 2, "{before} bytes packed to {after}");
        let mut back = Exchange::decode(&*stored.encode_to_vec()).unwrap();
        back.unpack();
        assert_eq!(back, plain);
    }

    #[test]
    fn odd_times_and_responses_without_chunks_come_back_exactly() {
        // A chunk before the response's first byte, one at the clock's end, none at all.
        for chunks in [vec![(500, 1), (u64::MAX, 2), (0, 3)], vec![], vec![(7, 0)]] {
            let plain = exchange(&chunks);
            let mut x = plain.clone();
            x.t_response_first_ns = 600;
            let mut want = plain.clone();
            want.t_response_first_ns = 600;
            x.pack();
            x.unpack();
            assert_eq!(x, want);
        }
    }
}
