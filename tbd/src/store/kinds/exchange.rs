//! Stored kind: a request and its response, keyed by the request's first byte.
//!
//! Stored with its chunk and arrival lists packed: each entry's time as its gap from the one
//! before (the first's from the response's, or the request's, first byte) and its bytes, as
//! two packed varint lists. A
//! streamed chunk then costs two to four bytes of time and one or two of size instead of a
//! nested message of thirteen, and every time comes back exactly.

use prost::encoding::{decode_varint, encode_varint};
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

/// Moves `list` into gaps from `base` (each from the one before, zigzag varints) and sizes
/// (varints): the wire form of packed `sint64` and `uint64` lists, written in one pass.
fn pack(list: &mut Vec<Chunk>, base: u64, gaps: &mut Vec<u8>, sizes: &mut Vec<u8>) {
    let mut prev = base;
    gaps.clear();
    sizes.clear();
    // Drained, not dropped: the list keeps its capacity for the tracker to reuse.
    for c in list.drain(..) {
        // Wrapping, so that any order of times (none is expected) comes back exactly.
        let gap = c.t_ns.wrapping_sub(prev) as i64;
        encode_varint(((gap << 1) ^ (gap >> 63)) as u64, gaps);
        encode_varint(c.bytes, sizes);
        prev = c.t_ns;
    }
}

/// Undoes [`pack`]; a list cut short (a corrupt record) ends at its last whole entry.
fn unpack(list: &mut Vec<Chunk>, base: u64, gaps: &mut Vec<u8>, sizes: &mut Vec<u8>) {
    let (mut g, mut s) = (&gaps[..], &sizes[..]);
    let mut t = base;
    while !g.is_empty() && !s.is_empty() {
        let (Ok(zigzag), Ok(bytes)) = (decode_varint(&mut g), decode_varint(&mut s)) else {
            break;
        };
        let gap = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        t = t.wrapping_add(gap as u64);
        list.push(Chunk { t_ns: t, bytes });
    }
    gaps.clear();
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

    /// The stored form before tbd wrote the lists as bytes: packed repeated fields.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Listed {
        #[prost(uint64, tag = "10")]
        t_request_first_ns: u64,
        #[prost(uint64, tag = "12")]
        t_response_first_ns: u64,
        #[prost(sint64, repeated, tag = "20")]
        chunk_gaps: Vec<i64>,
        #[prost(uint64, repeated, tag = "21")]
        chunk_bytes: Vec<u64>,
        #[prost(sint64, repeated, tag = "23")]
        arrival_gaps: Vec<i64>,
        #[prost(uint64, repeated, tag = "24")]
        arrival_bytes: Vec<u64>,
    }

    #[test]
    fn records_stored_as_packed_lists_read_back_the_same_and_are_written_the_same() {
        let old = Listed {
            t_request_first_ns: 1_000,
            t_response_first_ns: 5_000,
            chunk_gaps: vec![0, 300, -20, i64::MAX, i64::MIN],
            chunk_bytes: vec![1, 200, 70_000, u64::MAX, 0],
            arrival_gaps: vec![3_000, -1],
            arrival_bytes: vec![9, 10],
        };
        let mut x = Exchange::decode(&*old.encode_to_vec()).unwrap();
        x.unpack();
        let mut t = 5_000u64;
        let want: Vec<Chunk> = old
            .chunk_gaps
            .iter()
            .zip(&old.chunk_bytes)
            .map(|(&g, &bytes)| {
                t = t.wrapping_add(g as u64);
                Chunk { t_ns: t, bytes }
            })
            .collect();
        assert_eq!(x.chunks, want);
        assert_eq!(
            x.arrivals,
            [
                Chunk {
                    t_ns: 4_000,
                    bytes: 9
                },
                Chunk {
                    t_ns: 3_999,
                    bytes: 10
                }
            ]
        );
        // And what tbd writes now is what the packed lists were on the wire, byte for byte.
        x.pack();
        assert_eq!(x.encode_to_vec(), old.encode_to_vec());
    }

    #[test]
    fn a_list_cut_short_ends_at_its_last_whole_entry() {
        let mut x = exchange(&[(5_000, 1), (6_000, 300), (7_000, 2)]);
        x.pack();
        // The last size's varint cut (300 takes two bytes; 2 one): two whole entries remain.
        x.packed_chunk_bytes.truncate(2);
        x.unpack();
        assert_eq!(
            x.chunks,
            [Chunk {
                t_ns: 5_000,
                bytes: 1
            }]
        );
        let mut y = exchange(&[(5_000, 1), (6_000, 300), (7_000, 2)]);
        y.pack();
        y.packed_chunk_bytes.truncate(3);
        y.unpack();
        assert_eq!(y.chunks.len(), 2);
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
