//! The benchmark programs; their maps are private to each load.

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, DevMapHash, PerCpuArray},
    helpers::bpf_redirect,
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

/// The frame the generator sends (before its flow is filled in).
#[btf_map]
static GEN_TEMPLATE: Array<[u8; bench::TEMPLATE_LEN], 1> = Array::new();

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

/// Load generator: give each frame its flow (destination prefix and UDP
/// source port) and send it out of the generator's veth.
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let n = bump(counter::GENERATED);
    let flows = setting(cfg::FLOWS).max(1) as u64;
    let prefixes = setting(cfg::PREFIXES).max(1) as u64;
    let flow = n % flows;
    let prefix = (flow % prefixes) as u16;
    let sport = (flow as u16) | 0x8000;
    let start = ctx.data();
    if start + bench::TEMPLATE_LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let Some(template) = GEN_TEMPLATE.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: the check above proved the template's length and both flow
    // fields lie inside the frame, and XDP frames are writable.
    unsafe {
        (start as *mut [u8; bench::TEMPLATE_LEN]).write_unaligned(*template);
        ((start + bench::PREFIX_OFFSET) as *mut [u8; 2]).write_unaligned(prefix.to_be_bytes());
        ((start + bench::SPORT_OFFSET) as *mut [u8; 2]).write_unaligned(sport.to_be_bytes());
    }
    // SAFETY: a plain helper call; the kernel checks the ifindex.
    unsafe { bpf_redirect(setting(cfg::GEN_IFINDEX), 0) as u32 }
}

/// Sink: count the frame and drop it.
#[xdp]
pub fn bench_sink(_ctx: XdpContext) -> u32 {
    bump(counter::SUNK);
    xdp_action::XDP_DROP
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
    if start + bench::PREFIX_OFFSET + 2 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the check above proved the byte lies inside the frame.
    let low = unsafe { *((start + bench::PREFIX_OFFSET + 1) as *const u8) };
    let ports = setting(cfg::PORTS).max(1);
    let Some(port) = CEIL_PORTS.get(low as u32 % ports) else {
        return xdp_action::XDP_PASS;
    };
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&port.dst_mac);
    macs[6..].copy_from_slice(&port.src_mac);
    // SAFETY: the frame is at least PREFIX_OFFSET + 2 > 12 bytes long and
    // XDP frames are writable.
    unsafe { (start as *mut [u8; 12]).write_unaligned(macs) };
    match CEIL_DEVS.redirect(port.ifindex, xdp_action::XDP_PASS as u64) {
        Ok(action) | Err(action) => action,
    }
}
