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

/// The reflector's settings, set by the loader before the programs load:
/// read-only globals the verifier sees as constants, so the per-frame work
/// needs no map lookups for them.
#[unsafe(no_mangle)]
static REFL_PREFIXES: u32 = 1;
#[unsafe(no_mangle)]
static REFL_RETURN_IFINDEX: u32 = 0;
/// Destination and source MAC of the frames sent back: router ingress,
/// reflector's return end.
#[unsafe(no_mangle)]
static REFL_MACS: [u8; 12] = [0; 12];
/// 1: the frames are IPv4 (`bench_ebpf::ipv4`), prefix `n` being
/// `ipv4::host(n, REFL_V4_SHIFT)`.
#[unsafe(no_mangle)]
static REFL_IPV4: u32 = 0;
#[unsafe(no_mangle)]
static REFL_V4_SHIFT: u32 = 0;
/// The frame byte the ceiling picks its port by: the destination's last.
#[unsafe(no_mangle)]
static CEIL_PORT_BYTE: u32 = (bench::PREFIX_OFFSET + 3) as u32;

/// The return end, for the redirect (a devmap, so frames go in bulk).
#[btf_map]
static REFL_DEVS: DevMapHash<1> = DevMapHash::new();

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

/// Generator and sink in one, on the far end of every router egress link:
/// count the frame the router forwarded, give it the next flow (destination
/// prefix and UDP source port), restore its hop limit, address it to the
/// router's ingress and send it there through the return link. A few
/// frames primed into the loop thus keep the router busy with no
/// live-frames test runs and no user-space sender; after the stop flag
/// they are dropped and counted.
#[xdp]
pub fn bench_reflect(ctx: XdpContext) -> u32 {
    let n = bump(counter::FORWARDED);
    if setting(cfg::STOP) != 0 {
        bump(counter::DRAINED);
        return xdp_action::XDP_DROP;
    }
    // SAFETY: plain reads of the loader-set globals (volatile, so the
    // compiler does not fold the defaults in).
    let (prefixes, ret, macs, v4, shift) = unsafe {
        (
            core::ptr::read_volatile(&REFL_PREFIXES),
            core::ptr::read_volatile(&REFL_RETURN_IFINDEX),
            core::ptr::read_volatile(&REFL_MACS),
            core::ptr::read_volatile(&REFL_IPV4),
            core::ptr::read_volatile(&REFL_V4_SHIFT),
        )
    };
    let start = ctx.data();
    // Both families' frames are 64 bytes (an IPv4 frame carries more
    // payload), so one constant bound covers every offset written.
    if start + bench::MIN_FRAME > ctx.data_end() {
        return xdp_action::XDP_DROP;
    }
    // The next prefix in turn, by a per-CPU cursor: no division per frame.
    let prefix = match BENCH_COUNT.get_ptr_mut(counter::PREFIX_CURSOR) {
        // SAFETY: this CPU's own slot; XDP programs do not nest on a CPU.
        Some(p) => unsafe {
            let cur = *p as u32;
            *p = if cur + 1 >= prefixes {
                0
            } else {
                u64::from(cur + 1)
            };
            cur
        },
        None => 0,
    };
    let sport = (n as u16) | 0x8000;
    // SAFETY: the check above proved every offset written lies inside the
    // frame (all are below MIN_FRAME), and XDP frames are writable.
    unsafe {
        (start as *mut [u8; 12]).write_unaligned(macs);
        if v4 != 0 {
            use bench::ipv4;
            ((start + ipv4::TTL_OFFSET) as *mut u8).write(64);
            ((start + ipv4::DST_OFFSET) as *mut [u8; 4])
                .write_unaligned(ipv4::host(prefix, shift).to_be_bytes());
            ((start + ipv4::SPORT_OFFSET) as *mut [u8; 2]).write_unaligned(sport.to_be_bytes());
            // The header checksum from scratch: the router verifies it.
            ((start + ipv4::CHECKSUM_OFFSET) as *mut [u8; 2]).write_unaligned([0, 0]);
            let mut sum = 0u32;
            let mut i = 0;
            while i < 10 {
                let at = (start + ipv4::HEADER + 2 * i) as *const [u8; 2];
                sum += u32::from(u16::from_be_bytes(at.read_unaligned()));
                i += 1;
            }
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            ((start + ipv4::CHECKSUM_OFFSET) as *mut [u8; 2])
                .write_unaligned((!(sum as u16)).to_be_bytes());
        } else {
            ((start + bench::HOP_LIMIT_OFFSET) as *mut u8).write(64);
            ((start + bench::PREFIX_OFFSET) as *mut [u8; 4]).write_unaligned(prefix.to_be_bytes());
            ((start + bench::SPORT_OFFSET) as *mut [u8; 2]).write_unaligned(sport.to_be_bytes());
        }
    }
    match REFL_DEVS.redirect(ret, xdp_action::XDP_DROP as u64) {
        Ok(action) | Err(action) => action,
    }
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
    // SAFETY: a plain read of a loader-set global (volatile: not folded).
    let at = unsafe { core::ptr::read_volatile(&CEIL_PORT_BYTE) } as usize;
    if at > bench::PREFIX_OFFSET + 3 {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the checks above proved the byte lies inside the frame.
    let low = unsafe { *((start + at) as *const u8) };
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
