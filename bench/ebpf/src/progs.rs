//! The benchmark programs; their maps are private to each load.

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, DevMapHash, PerCpuArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use bench_ebpf::{self as bench, cfg, counter};
use meshfwd_common::fib::NextHop;

/// Settings written by the harness before a run, indexed by [`cfg`].
#[btf_map]
static BENCH_CFG: Array<u32, { bench::CFG_SLOTS as usize }> = Array::new();

/// Per-CPU counters, indexed by [`counter`].
#[btf_map]
static BENCH_COUNT: PerCpuArray<u64, { bench::COUNTER_SLOTS as usize }> = PerCpuArray::new();

/// The ceiling's egress ports (ifindex and MACs), by port number.
#[btf_map]
static CEIL_PORTS: Array<NextHop, { bench::MAX_PORTS as usize }> = Array::new();

/// The ceiling's redirect targets, by ifindex.
#[btf_map]
static CEIL_DEVS: DevMapHash<{ bench::MAX_PORTS as usize }> = DevMapHash::new();

#[inline(always)]
fn setting(slot: u32) -> u32 {
    BENCH_CFG.get(slot).copied().unwrap_or(0)
}

/// Add one to a counter and return its previous value.
#[inline(always)]
fn bump(slot: u32) -> u64 {
    match BENCH_COUNT.get_ptr_mut(slot) {
        Some(p) => {
            // SAFETY: this CPU's own slot; XDP programs do not nest on a CPU.
            unsafe {
                let old = *p;
                *p = old + 1;
                old
            }
        }
        None => 0,
    }
}

/// Generator and sink in one, on the far end of every router link: count
/// the frame the router forwarded, give it the next flow (destination
/// prefix and UDP source port), restore its hop limit, swap its MACs and
/// send it back into the router (`XDP_TX`). A few frames primed into the
/// loop thus keep the router busy with no live-frames test runs and no
/// user-space sender; after the stop flag they are dropped and counted.
#[xdp]
pub fn bench_reflect(ctx: XdpContext) -> u32 {
    let n = bump(counter::FORWARDED);
    if setting(cfg::STOP) != 0 {
        bump(counter::DRAINED);
        return xdp_action::XDP_DROP;
    }
    let start = ctx.data();
    if start + bench::MIN_FRAME > ctx.data_end() {
        return xdp_action::XDP_DROP;
    }
    let flows = setting(cfg::FLOWS).max(1) as u64;
    let prefixes = setting(cfg::PREFIXES).max(1) as u64;
    let flow = n % flows;
    let prefix = (flow % prefixes) as u32;
    let sport = (flow as u16) | 0x8000;
    // SAFETY: the check above proved every offset written lies inside the
    // frame (all are below MIN_FRAME), and XDP frames are writable.
    unsafe {
        let macs = (start as *const [u8; 12]).read_unaligned();
        let mut swapped = [0u8; 12];
        swapped[..6].copy_from_slice(&macs[6..]);
        swapped[6..].copy_from_slice(&macs[..6]);
        (start as *mut [u8; 12]).write_unaligned(swapped);
        ((start + bench::HOP_LIMIT_OFFSET) as *mut u8).write(64);
        ((start + bench::PREFIX_OFFSET) as *mut [u8; 4]).write_unaligned(prefix.to_be_bytes());
        ((start + bench::SPORT_OFFSET) as *mut [u8; 2]).write_unaligned(sport.to_be_bytes());
    }
    xdp_action::XDP_TX
}

/// The cheapest router there is: swap the MACs and send the frame back out
/// where it came in. Measured once per scale, its rate is a floor of what
/// the reflector can offer (the reflector does the same work in every
/// mode); above the ceiling's rate, the reflector never limits the router.
#[xdp]
pub fn bench_bounce(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the check above proved both MACs lie inside the frame, and
    // XDP frames are writable.
    unsafe {
        let macs = (start as *const [u8; 12]).read_unaligned();
        let mut swapped = [0u8; 12];
        swapped[..6].copy_from_slice(&macs[6..]);
        swapped[6..].copy_from_slice(&macs[..6]);
        (start as *mut [u8; 12]).write_unaligned(swapped);
    }
    xdp_action::XDP_TX
}

/// Kernel baseline: hand every frame to the stack.
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Ceiling: pick a port from the destination prefix, rewrite both MACs and
/// redirect; no parsing, no lookup, no checks.
#[xdp]
pub fn bench_ceiling(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + bench::PREFIX_OFFSET + 4 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the check above proved the byte lies inside the frame.
    let low = unsafe { *((start + bench::PREFIX_OFFSET + 3) as *const u8) };
    let ports = setting(cfg::PORTS).max(1);
    let Some(port) = CEIL_PORTS.get(low as u32 % ports) else {
        return xdp_action::XDP_PASS;
    };
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&port.dst_mac);
    macs[6..].copy_from_slice(&port.src_mac);
    // SAFETY: the frame is at least PREFIX_OFFSET + 4 > 12 bytes long and
    // XDP frames are writable.
    unsafe { (start as *mut [u8; 12]).write_unaligned(macs) };
    match CEIL_DEVS.redirect(port.ifindex, xdp_action::XDP_PASS as u64) {
        Ok(action) | Err(action) => action,
    }
}
