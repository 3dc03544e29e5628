//! tbd's eBPF programs.
//!
//! Every program starts with the cheapest filter that can reject the event (one map lookup on the
//! calling process or socket), because every process on the host pays that cost on every traced
//! syscall. Only tracked sockets reach the ring buffer.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
// BPF_CMPXCHG for claiming a socket slot: the bpf target has no `compare_exchange`.
#![cfg_attr(
    target_arch = "bpf",
    feature(core_intrinsics),
    allow(internal_features)
)]

#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
