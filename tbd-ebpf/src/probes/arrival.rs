//! Chunk arrival: the cgroup_skb ingress program on segments reaching tracked sockets.

use super::*;

/// (IP packet length, IP header length, TCP sequence number, TCP data-offset byte) of an IPv4
/// segment without IP options or an IPv6 one with TCP next, read straight from the packet (no
/// helper call: most segments a tracked socket gets are ACKs without payload, which leave
/// here). The context's data starts at the network header.
#[inline(always)]
fn headers_direct(ctx: &SkBuffContext) -> Option<(u32, u32, u32, u8)> {
    // SAFETY: every load is bounds-checked against data_end first (the verifier checks it).
    unsafe {
        let skb = ctx.skb.skb;
        let (data, end) = ((*skb).data as usize, (*skb).data_end as usize);
        if data + 56 <= end && *(data as *const u8) >> 4 == 6 {
            if *((data + 6) as *const u8) != IPPROTO_TCP as u8 {
                return None;
            }
            let len = u16::from_be(*((data + 4) as *const u16));
            let seq = u32::from_be(*((data + 44) as *const u32));
            return Some((u32::from(len) + 40, 40, seq, *((data + 52) as *const u8)));
        }
        if data + 36 > end || *(data as *const u8) != 0x45 {
            return None;
        }
        let len = u16::from_be(*((data + 2) as *const u16));
        let seq = u32::from_be(*((data + 24) as *const u32));
        Some((u32::from(len), 20, seq, *((data + 32) as *const u8)))
    }
}

/// [`headers_direct`]'s figures through `bpf_skb_load_bytes`, for a segment whose headers are
/// not all in the packet's linear part or that carries IP options.
#[inline(always)]
fn headers_loaded(ctx: &SkBuffContext) -> Option<(u32, u32, u32, u8)> {
    let ip: [u8; 8] = ctx.load(0).ok()?;
    let (ip_len, ip_hl) = match ip[0] >> 4 {
        4 => (
            u32::from(u16::from_be_bytes([ip[2], ip[3]])),
            u32::from(ip[0] & 0xf) * 4,
        ),
        // Extension headers before TCP are not followed: such segments are not counted.
        6 if ip[6] == IPPROTO_TCP as u8 => (u32::from(u16::from_be_bytes([ip[4], ip[5]])) + 40, 40),
        _ => return None,
    };
    let tcp: [u8; 16] = ctx.load(ip_hl as usize).ok()?;
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some((ip_len, ip_hl, seq, tcp[12]))
}

/// The sequence number and count of the bytes of a segment's payload that a tracked socket did
/// not have yet, from its IP and TCP headers and the socket's next expected sequence number
/// (a segment past it, which overtook a lost one, is sent whole: tbd holds it until the gap
/// is filled); None when the segment brings
/// nothing new (a pure ACK, a tail-loss probe or a spurious retransmission, frequent on a busy
/// loopback: counting those would shift every later arrival onto the bytes before it).
#[inline(always)]
fn new_payload(ctx: &SkBuffContext, sk: *mut bpf_sock) -> Option<(u32, u32, u32)> {
    let (ip_len, ip_hl, seq, doff) = match headers_direct(ctx) {
        Some(h) => h,
        None => headers_loaded(ctx)?,
    };
    let hl = ip_hl + u32::from(doff >> 4) * 4;
    if ip_len <= hl {
        return None;
    }
    let bytes = ip_len - hl;
    // SAFETY: `sk` is the context's non-null socket; the helper returns a checked pointer.
    let tp = unsafe { generated::bpf_tcp_sock(sk) };
    if tp.is_null() {
        return None;
    }
    let rcv_nxt = unsafe { (*tp).rcv_nxt };
    // Sequence space wraps: how far the segment's end is past what the socket has.
    let end = seq.wrapping_add(bytes);
    let past = end.wrapping_sub(rcv_nxt) as i32;
    if past <= 0 {
        return None;
    }
    // The bytes before rcv_nxt the socket had already; a segment past it is new whole.
    let new = if (past as u32) < bytes {
        past as u32
    } else {
        bytes
    };
    Some((end.wrapping_sub(new), new, rcv_nxt))
}

/// `sk`'s address as a number. The verifier types the context's socket field as a pointer and
/// refuses arithmetic on it, the table's hash included; a pointer stored in a map value (which
/// it allows a privileged program) reads back as a plain number. Volatile, so that the
/// compiler does not forward the stored pointer to the load.
#[inline(always)]
fn address_of(sk: *mut bpf_sock) -> Option<u64> {
    let p = SK_ADDRESS.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; nothing else runs on this CPU while this program does.
    unsafe {
        core::ptr::write_volatile(p as *mut *mut bpf_sock, sk);
        Some(core::ptr::read_volatile(p))
    }
}

/// A segment with new payload reaching a tracked socket: its arrival, which the reader's read
/// follows by however long the reader takes. A cgroup_skb ingress program sees each segment
/// as the TCP receive path filters it, before it can wait behind a socket its owner holds,
/// with no tracepoint dispatch; it replaced the `tcp_probe` and `sk_data_ready` pair (two
/// programs per data segment, which missed the bytes of segments that overtook a lost one).
/// It always lets the segment through.
#[cgroup_skb(ingress)]
pub fn tb_arrival(ctx: SkBuffContext) -> i32 {
    // SAFETY: a load of the context's socket field, checked by the verifier.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return 1;
    }
    // The socket's address, as the sock tracepoints name it (tracked sockets are keyed by it).
    let Some(skaddr) = address_of(sk) else {
        return 1;
    };
    if !sk_tracked(skaddr) {
        return 1;
    }
    let Some((seq, bytes, rcv_nxt)) = new_payload(&ctx, sk) else {
        return 1;
    };
    let ev = ArrivalEvent {
        hdr: header(kind::ARRIVAL, 0, unsafe { bpf_ktime_get_ns() }),
        skaddr,
        bytes,
        seq,
        rcv_nxt,
        _pad: 0,
    };
    emit(&ev);
    1
}
