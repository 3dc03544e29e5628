//! Decoding ring-buffer records into typed events.

use tbd_common::{
    kind, AcceptEvent, CloseEvent, ConnectEvent, DataContEvent, DataEvent, DnsEvent, EventHeader,
    RetransmitEvent, SockAddr, StateEvent,
};

/// One event from the probes.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    Connect(ConnectEvent),
    Accept(AcceptEvent),
    Data(DataEvent),
    Close(CloseEvent),
    State(StateEvent),
    Retransmit(RetransmitEvent),
    Dns(DnsEvent),
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
            kind::DATA => Event::Data(read(buf)?),
            kind::DATA_CONT => {
                let c: DataContEvent = read(buf)?;
                Event::Data(DataEvent {
                    hdr: EventHeader {
                        kind: kind::DATA,
                        ..c.hdr
                    },
                    ts_enter_ns: c.ts_enter_ns,
                    fd: c.fd,
                    bytes: c.bytes,
                    op: c.op,
                    _pad: 0,
                    prefix_len: 0,
                    _pad2: 0,
                    prefix: [0; tbd_common::PREFIX_LEN],
                })
            }
            kind::CLOSE => Event::Close(read(buf)?),
            kind::STATE => Event::State(read(buf)?),
            kind::RETRANSMIT => Event::Retransmit(read(buf)?),
            kind::DNS => Event::Dns(read(buf)?),
            _ => return None,
        })
    }

    /// The common header.
    pub fn header(&self) -> &EventHeader {
        match self {
            Event::Connect(e) => &e.hdr,
            Event::Accept(e) => &e.hdr,
            Event::Data(e) => &e.hdr,
            Event::Close(e) => &e.hdr,
            Event::State(e) => &e.hdr,
            Event::Retransmit(e) => &e.hdr,
            Event::Dns(e) => &e.hdr,
        }
    }
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
    fn continuation_chunks_decode_as_data_without_prefix() {
        let c = DataContEvent {
            hdr: EventHeader {
                kind: kind::DATA_CONT,
                pid: 7,
                tid: 8,
                _pad: 0,
                ts_ns: 99,
            },
            ts_enter_ns: 90,
            fd: 5,
            bytes: 123,
            op: tbd_common::op::WRITE,
            _pad: [0; 7],
        };
        let Some(Event::Data(d)) = Event::decode(as_bytes(&c)) else {
            panic!("not data")
        };
        assert_eq!(
            (d.hdr.kind, d.hdr.pid, d.hdr.ts_ns, d.fd, d.bytes),
            (kind::DATA, 7, 99, 5, 123)
        );
        assert_eq!(
            (d.ts_enter_ns, d.op, d.prefix_len),
            (90, tbd_common::op::WRITE, 0)
        );
        assert!(Event::decode(&as_bytes(&c)[..20]).is_none(), "short record");
    }
}
