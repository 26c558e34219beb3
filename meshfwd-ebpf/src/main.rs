//! The kubermesh data plane, in eBPF: XDP on every mesh NIC forwards
//! transit traffic hop by hop ([`xdp`]); TC programs move traffic between
//! pods and the mesh ([`tc`]); two tracepoint programs count the redirects
//! egress devices refuse ([`trace`]). Both read the maps the agent's map writer
//! and the CNI plugin fill (layouts in `meshfwd_common`), classify packets
//! with the rules `meshfwd_common::packet` shares with host tests, and hand
//! everything they must not forward to the kernel. User space loads the
//! object through the `dataplane` crate.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The kernel interface is raw pointers into the packet: unsafe is confined to
// `ptr_at` and the map access, each with its reason.
#![allow(unsafe_code)]

#[cfg(target_arch = "bpf")]
mod ct;
#[cfg(target_arch = "bpf")]
mod tc;
#[cfg(target_arch = "bpf")]
mod trace;
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
