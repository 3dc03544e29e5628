//! Decoding ring-buffer records into typed events.

use tbd_common::{
    kind, AcceptEvent, ArrivalEvent, Chunk, CloseEvent, ConnectEvent, DataBatchEvent, DataEvent,
    DnsEvent, EventHeader, PeerEvent, RetransmitEvent, SockAddr, StateEvent, BATCH_HEADER_LEN,
};

/// One event from the probes.
///
/// The batch variant is boxed: unboxed, every event was an 816-byte value, copied whole at
/// each decode and move, and memmove was a fifth of tbd's CPU in a saturated capture (perf).
/// One allocation per batch (a batch carries up to 32 syscalls) costs less.
#[derive(Clone, Debug)]
pub enum Event {
    Connect(ConnectEvent),
    Accept(AcceptEvent),
    /// A server socket's peer from getpeername().
    Peer(PeerEvent),
    Data(DataEvent),
    /// Continuation chunks of one socket; [`batch_chunks`] turns them into data events.
    Batch(Box<DataBatchEvent>),
    Close(CloseEvent),
    State(StateEvent),
    Retransmit(RetransmitEvent),
    Dns(DnsEvent),
    /// A segment with payload reached a tracked socket.
    Arrival(ArrivalEvent),
}

/// A batch record: its header and the chunks it carries (see [`BATCH_HEADER_LEN`]); a count
/// beyond what the record holds is cut to it.
fn read_batch(buf: &[u8]) -> Option<Box<DataBatchEvent>> {
    if buf.len() < BATCH_HEADER_LEN {
        return None;
    }
    let mut b = Box::<DataBatchEvent>::new_zeroed();
    let len = buf.len().min(std::mem::size_of::<DataBatchEvent>());
    // SAFETY: `len` bytes fit the box; the struct is plain data valid for any bit pattern
    // (zeroed beyond what the record holds).
    let mut b = unsafe {
        std::ptr::copy_nonoverlapping(buf.as_ptr(), b.as_mut_ptr().cast::<u8>(), len);
        b.assume_init()
    };
    let held = (len - BATCH_HEADER_LEN) / std::mem::size_of::<Chunk>();
    b.n = b.n.min(held as u32);
    Some(b)
}

fn read<T: Copy>(buf: &[u8]) -> Option<T> {
    if buf.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a repr(C) plain-data event valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) })
}

impl Event {
    /// Decodes one ring-buffer record; None for a short or unknown record.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let hdr: EventHeader = read(buf)?;
        Some(match hdr.kind {
            kind::CONNECT => Event::Connect(read(buf)?),
            kind::ACCEPT => Event::Accept(read(buf)?),
            kind::PEER => Event::Peer(read(buf)?),
            kind::DATA => Event::Data(read(buf)?),
            kind::DATA_BATCH => Event::Batch(read_batch(buf)?),
            kind::CLOSE => Event::Close(read(buf)?),
            kind::STATE => Event::State(read(buf)?),
            kind::RETRANSMIT => Event::Retransmit(read(buf)?),
            kind::DNS => Event::Dns(read(buf)?),
            kind::ARRIVAL => Event::Arrival(read(buf)?),
            _ => return None,
        })
    }

    /// The common header.
    pub fn header(&self) -> &EventHeader {
        match self {
            Event::Connect(e) => &e.hdr,
            Event::Accept(e) => &e.hdr,
            Event::Peer(e) => &e.hdr,
            Event::Data(e) => &e.hdr,
            Event::Batch(e) => &e.hdr,
            Event::Close(e) => &e.hdr,
            Event::State(e) => &e.hdr,
            Event::Retransmit(e) => &e.hdr,
            Event::Dns(e) => &e.hdr,
            Event::Arrival(e) => &e.hdr,
        }
    }
}

/// A batch's valid chunks, in order. A count beyond the array (only from a corrupt record) is
/// clamped.
pub fn batch_chunks(b: &DataBatchEvent) -> &[Chunk] {
    &b.chunks[..(b.n as usize).min(b.chunks.len())]
}

/// The raw bytes of a plain-data event, for tests that replay recorded sequences.
pub fn as_bytes<T: Copy>(ev: &T) -> &[u8] {
    // SAFETY: any repr(C) Copy value can be viewed as bytes.
    unsafe { std::slice::from_raw_parts(ev as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// A socket address in std form.
pub fn socket_addr(a: &SockAddr) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match a.family {
        2 => IpAddr::V4(Ipv4Addr::new(a.addr[0], a.addr[1], a.addr[2], a.addr[3])),
        10 => IpAddr::V6(Ipv6Addr::from(a.addr)),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, a.port))
}

/// A NUL-padded kernel string (comm, DNS name) as text.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_decode_with_their_valid_chunks_in_order() {
        let mut b = DataBatchEvent {
            hdr: EventHeader {
                kind: kind::DATA_BATCH,
                pid: 7,
                tid: 8,
                _pad: 0,
                ts_ns: 999,
            },
            fd: 5,
            n: 3,
            op: u32::from(tbd_common::op::WRITE),
            _pad: 0,
            chunks: [tbd_common::Chunk::default(); tbd_common::BATCH_LEN],
        };
        for (i, c) in b.chunks.iter_mut().enumerate() {
            let i = i as u64;
            *c = tbd_common::Chunk {
                ts_ns: 100 + i,
                ts_enter_ns: 90 + i,
                bytes: 10 + i,
            };
        }
        let Some(Event::Batch(got)) = Event::decode(as_bytes(&b)) else {
            panic!("not a batch")
        };
        let chunks = batch_chunks(&got);
        assert_eq!(chunks.len(), 3, "only the first n chunks");
        for (i, c) in chunks.iter().enumerate() {
            let i = i as u64;
            assert_eq!((c.ts_ns, c.ts_enter_ns, c.bytes), (100 + i, 90 + i, 10 + i));
        }
        assert_eq!((got.hdr.pid, got.fd, got.op), (7, 5, 1));
        b.n = 1000;
        assert_eq!(
            batch_chunks(&b).len(),
            tbd_common::BATCH_LEN,
            "corrupt count clamped"
        );
        // The kernel sends the header and the valid chunks only.
        b.n = 3;
        let sent = &as_bytes(&b)[..BATCH_HEADER_LEN + 3 * 24];
        let Some(Event::Batch(got)) = Event::decode(sent) else {
            panic!("a batch of three chunks")
        };
        assert_eq!(
            batch_chunks(&got)
                .iter()
                .map(|c| c.bytes)
                .collect::<Vec<_>>(),
            [10, 11, 12]
        );
        // A count past the record's end is cut to what it holds.
        let cut = &as_bytes(&b)[..BATCH_HEADER_LEN + 2 * 24 + 5];
        let Some(Event::Batch(got)) = Event::decode(cut) else {
            panic!("a cut batch")
        };
        assert_eq!(batch_chunks(&got).len(), 2);
        assert!(
            Event::decode(&as_bytes(&b)[..BATCH_HEADER_LEN - 1]).is_none(),
            "short record"
        );
    }
}
