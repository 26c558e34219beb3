//! The kubermesh data plane: XDP on every mesh NIC.
//!
//! Today the program parses Ethernet and IPv6, counts every frame by class
//! and verdict in a per-CPU array, and hands everything to the kernel. The
//! forwarding decision grows here, reading the maps the agent fills.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The kernel interface is raw pointers into the packet: unsafe is confined to
// `ptr_at` and the map access, each with its reason.
#![allow(unsafe_code)]

#[cfg(target_arch = "bpf")]
mod tc;
#[cfg(target_arch = "bpf")]
mod xdp;

/// A host build of this crate exists only so `cargo clippy --workspace`
/// checks it; the real object is built for `bpfel-unknown-none`.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic path,
    // so a loaded program can never get here.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
