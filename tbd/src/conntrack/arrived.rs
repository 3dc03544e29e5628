//! A connection's arrived and unread bytes, in stream order. The ingress program sends each
//! segment's new bytes with their sequence number as they reach the host; a segment that
//! overtook a lost one is held until the gap is filled, and its bytes count as arrived when
//! they became readable (the filler's arrival), so that reads, which take bytes in stream
//! order, are matched to the right times. Bytes already seen (a retransmission of a held
//! segment) are counted once.

use std::collections::VecDeque;

use tb_proto::v1::Chunk;

use super::{TrackerStats, MAX_ARRIVED};

/// Out-of-order segments held per connection at most; beyond, the oldest is dropped.
const MAX_HELD: usize = 64;

/// A segment that came before the bytes ahead of it.
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u32,
    t_ns: u64,
    bytes: u32,
}

/// Arrived bytes not yet read, oldest first, each segment with the bytes of it still unread.
#[derive(Debug, Default)]
pub(super) struct Arrived {
    queue: VecDeque<Chunk>,
    /// Sequence number of the next byte in stream order; None before the first arrival.
    next: Option<u32>,
    held: Vec<Held>,
}

/// How far `a` is past `b` in TCP's wrapping sequence space.
fn after(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

impl Arrived {
    /// `bytes` starting at sequence number `seq` reached the socket at `t_ns`, when it expected
    /// `rcv_nxt` next (where the stream stands for the first arrival seen).
    pub(super) fn push(
        &mut self,
        seq: u32,
        rcv_nxt: u32,
        t_ns: u64,
        bytes: u32,
        stats: &mut TrackerStats,
    ) {
        let next = *self.next.get_or_insert(rcv_nxt);
        if after(seq, next) > 0 {
            if self.held.len() >= MAX_HELD {
                self.held.remove(0);
                stats.dropped_arrivals += 1;
            }
            self.held.push(Held { seq, t_ns, bytes });
            return;
        }
        self.take_in_order(seq, t_ns, bytes);
        // Held segments the gap's filling made readable, at the filler's time or their own.
        self.release(t_ns);
        if self.queue.len() > MAX_ARRIVED {
            // A reader that reads nothing (or whose reads were lost): the oldest go.
            let over = self.queue.len() - MAX_ARRIVED;
            self.queue.drain(..over);
            stats.dropped_arrivals += over as u64;
        }
    }

    /// Takes the `bytes` a read returned at `t_read`, oldest first, and notes them in the
    /// exchange that read them (a segment the read ends inside keeps its rest for the next
    /// read, and one two reads share is noted once). A segment that arrived after the read
    /// returned cannot be in it: the arrivals of the bytes read were lost (or came before the
    /// capture), so none is taken, the bytes count as unarrived, and the stream moves past
    /// them, which may make held segments readable.
    pub(super) fn take(
        &mut self,
        bytes: u64,
        t_read: u64,
        mut into: Option<&mut Vec<Chunk>>,
        stats: &mut TrackerStats,
    ) {
        let mut need = bytes;
        while need > 0 {
            let Some(front) = self.queue.front_mut() else {
                let gap = self.gap();
                if gap == 0 || gap > need {
                    // Nothing queued: the read's bytes are passed unarrived.
                    self.next = self.next.map(|n| n.wrapping_add(need as u32));
                    break;
                }
                // A lost arrival left a gap before a held segment: the read passes it.
                stats.unarrived_bytes += gap;
                need -= gap;
                self.next = self.next.map(|n| n.wrapping_add(gap as u32));
                self.release(0);
                continue;
            };
            if front.t_ns > t_read {
                break;
            }
            let take = need.min(front.bytes);
            if let Some(list) = into.as_deref_mut() {
                match list.last_mut() {
                    Some(last) if last.t_ns == front.t_ns => last.bytes += take,
                    _ => list.push(Chunk {
                        t_ns: front.t_ns,
                        bytes: take,
                    }),
                }
            }
            front.bytes -= take;
            need -= take;
            if front.bytes == 0 {
                self.queue.pop_front();
            }
        }
        stats.unarrived_bytes += need;
    }

    /// Bytes from the stream's next byte to the nearest held segment; 0 when none is held.
    fn gap(&self) -> u64 {
        let Some(next) = self.next else { return 0 };
        self.held
            .iter()
            .map(|h| after(h.seq, next))
            .filter(|&d| d > 0)
            .min()
            .map_or(0, |d| d as u64)
    }

    /// Queues the held segments that the stream's next byte has reached, each at its own time
    /// or at `t_ns`, whichever is later.
    fn release(&mut self, t_ns: u64) {
        while let Some(i) = self
            .held
            .iter()
            .position(|h| self.next.is_some_and(|n| after(h.seq, n) <= 0))
        {
            let h = self.held.swap_remove(i);
            self.take_in_order(h.seq, h.t_ns.max(t_ns), h.bytes);
        }
    }

    /// Queues the part of a segment at or before the stream's next byte that is new.
    fn take_in_order(&mut self, seq: u32, t_ns: u64, bytes: u32) {
        let next = self.next.unwrap_or(seq);
        let end = seq.wrapping_add(bytes);
        let new = after(end, next);
        if new <= 0 {
            return;
        }
        self.next = Some(end);
        self.queue.push_back(Chunk {
            t_ns,
            bytes: new as u64,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(chunks: impl IntoIterator<Item = &'a Chunk>) -> Vec<(u64, u64)> {
        chunks.into_iter().map(|c| (c.t_ns, c.bytes)).collect()
    }

    fn queued(a: &Arrived) -> Vec<(u64, u64)> {
        pairs(&a.queue)
    }

    #[test]
    fn in_order_segments_queue_as_they_come_and_duplicates_count_once() {
        let (mut a, mut s) = (Arrived::default(), TrackerStats::default());
        a.push(1_000, 1_000, 10, 100, &mut s);
        a.push(1_100, 1_100, 20, 50, &mut s);
        // A tail-loss probe repeating the last 50 bytes, and one half new.
        a.push(1_100, 1_100, 30, 50, &mut s);
        a.push(1_120, 1_120, 40, 60, &mut s);
        assert_eq!(queued(&a), [(10, 100), (20, 50), (40, 30)]);
    }

    #[test]
    fn a_segment_that_overtook_a_lost_one_counts_when_the_gap_fills() {
        let (mut a, mut s) = (Arrived::default(), TrackerStats::default());
        a.push(0, 0, 10, 100, &mut s);
        // 100..200 is lost; 200..300 and 300..350 arrive first and wait.
        a.push(200, 200, 20, 100, &mut s);
        a.push(300, 300, 25, 50, &mut s);
        assert_eq!(queued(&a), [(10, 100)]);
        // A retransmission of a held segment before the gap fills is not counted again.
        a.push(200, 200, 28, 100, &mut s);
        a.push(100, 100, 30, 100, &mut s);
        assert_eq!(queued(&a), [(10, 100), (30, 100), (30, 100), (30, 50)]);
        // A held segment later than the filler keeps its own time.
        a.push(450, 450, 50, 10, &mut s);
        a.push(350, 350, 40, 100, &mut s);
        assert_eq!(queued(&a)[4..], [(40, 100), (50, 10)]);
        assert_eq!(s.dropped_arrivals, 0);
    }

    #[test]
    fn a_read_past_a_lost_arrival_moves_the_stream_on() {
        let (mut a, mut s) = (Arrived::default(), TrackerStats::default());
        let mut got = Vec::new();
        a.push(0, 0, 10, 100, &mut s);
        // The arrival of 100..150 was lost; 150..200 waits for it.
        a.push(150, 150, 20, 50, &mut s);
        a.take(120, 30, Some(&mut got), &mut s);
        assert_eq!(s.unarrived_bytes, 20);
        // The next read passes the rest of the gap and takes the held segment, at its time.
        a.take(80, 40, Some(&mut got), &mut s);
        assert_eq!(s.unarrived_bytes, 50);
        assert_eq!(pairs(&got), [(10, 100), (20, 50)]);
        // Bytes read with nothing queued or held are passed: the next arrival is in order.
        a.take(25, 50, None, &mut s);
        a.push(225, 225, 60, 5, &mut s);
        assert_eq!(queued(&a), [(60, 5)]);
        assert_eq!(s.unarrived_bytes, 75);
    }

    #[test]
    fn a_connections_first_segment_seen_may_have_overtaken_a_lost_one() {
        let (mut a, mut s) = (Arrived::default(), TrackerStats::default());
        // The head (0..300) was lost; the first chunk came first, then both retransmitted.
        a.push(300, 0, 10, 180, &mut s);
        assert_eq!(queued(&a), []);
        a.push(0, 0, 20, 480, &mut s);
        assert_eq!(queued(&a), [(20, 480)]);
    }

    #[test]
    fn held_segments_past_the_cap_drop_the_oldest_and_count_it() {
        let (mut a, mut s) = (Arrived::default(), TrackerStats::default());
        a.push(0, 0, 1, 10, &mut s);
        for i in 0..=MAX_HELD as u32 {
            a.push(20 + 10 * i, 0, 2, 10, &mut s);
        }
        assert_eq!(s.dropped_arrivals, 1);
        // The oldest held (20..30) went; filling 10..20 releases only up to the next gap.
        a.push(10, 10, 3, 10, &mut s);
        assert_eq!(queued(&a), [(1, 10), (3, 10)]);
    }

    #[test]
    fn a_read_takes_what_arrived_by_its_return_and_nothing_later() {
        let (mut a, mut s) = (Arrived::default(), TrackerStats::default());
        let mut got = Vec::new();
        a.push(0, 0, 10, 5, &mut s);
        a.push(5, 5, 20, 5, &mut s);
        // Returned at the first arrival's instant: it has those bytes, not the later ones
        // (which came before the capture for this read: none of them is its).
        a.take(8, 10, Some(&mut got), &mut s);
        assert_eq!(pairs(&got), [(10, 5)]);
        assert_eq!(s.unarrived_bytes, 3);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (mut a, mut s) = (Arrived::default(), TrackerStats::default());
        a.push(u32::MAX - 9, u32::MAX - 9, 10, 20, &mut s);
        a.push(10, 10, 20, 5, &mut s);
        a.push(u32::MAX - 9, u32::MAX - 9, 30, 20, &mut s);
        assert_eq!(queued(&a), [(10, 20), (20, 5)]);
    }
}
