//! Helper programs for the forwarding benchmark (`bench --bin forwarding`):
//! the reflector, which counts what the router forwarded and sends it back
//! into the router with the next flow (generator and sink in one), a
//! pass-all program for the kernel baseline, and the ceiling, which only
//! rewrites MACs and redirects.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Raw packet pointers and helpers: each unsafe block says why it holds.
#![allow(unsafe_code)]

#[cfg(target_arch = "bpf")]
mod progs;

/// A host build exists only so `cargo clippy --workspace` checks the crate.
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
