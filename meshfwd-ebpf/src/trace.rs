//! Redirect failures, which the XDP program cannot see: `bpf_redirect_map`
//! only queues a frame, and the egress driver takes or refuses it later,
//! when the queue is flushed at the end of the poll (`xdp:xdp_devmap_xmit`,
//! with the count dropped), or refuses it at once (`xdp:xdp_redirect_err`).
//!
//! Tracepoints fire for every namespace's XDP, and ifindexes repeat across
//! namespaces. So the XDP program raises a per-CPU flag for the egress
//! device of each frame it redirects ([`note_redirect`]), and only an event
//! on a CPU whose flag for that device is up counts here, clearing it at
//! the flush. A flush runs on the CPU and in the poll that queued its
//! frames, and polls on one CPU never interleave, so a raised flag means
//! this node's program queued for that device in the poll being flushed.

use aya_ebpf::{
    btf_maps::{PerCpuArray, PerCpuHashMap},
    macros::{btf_map, tracepoint},
    programs::TracePointContext,
};
use meshfwd_common::{
    fib::{EGRESS_DEV_MAX_ENTRIES, PENDING_SLOTS},
    stats::Stat,
};

use crate::xdp::count_n;

/// Per CPU: 1 where this node's XDP queued frames for the egress device
/// (by ifindex modulo [`PENDING_SLOTS`]) and no flush has come yet.
#[btf_map]
static REDIRECT_PENDING: PerCpuArray<u32, { PENDING_SLOTS as usize }> = PerCpuArray::new();

/// Frames each egress device (by ifindex) did not take.
#[btf_map]
static REDIRECT_FAILS: PerCpuHashMap<u32, u64, { EGRESS_DEV_MAX_ENTRIES as usize }> =
    PerCpuHashMap::new();

// Field offsets in the tracepoints' records, from
// /sys/kernel/tracing/events/xdp/<event>/format (stable since 4.18).
/// `xdp_devmap_xmit`: `int to_ifindex`.
const XMIT_TO_IFINDEX: usize = 16;
/// `xdp_devmap_xmit`: `int drops`.
const XMIT_DROPS: usize = 20;
/// `xdp_redirect_err`: `int to_ifindex` (the device, for devmap redirects).
const ERR_TO_IFINDEX: usize = 24;

/// Raise the pending flag of egress device `ifindex` on this CPU.
#[inline(always)]
pub(crate) fn note_redirect(ifindex: u32) {
    if let Some(slot) = REDIRECT_PENDING.get_ptr_mut(ifindex % PENDING_SLOTS) {
        // SAFETY: the slot is this CPU's own copy, and the XDP program and
        // the tracepoints that clear it run one at a time on a CPU.
        unsafe { *slot = 1 };
    }
}

/// Return whether this CPU has frames of ours queued for `ifindex`;
/// lower the flag when `flushed`.
#[inline(always)]
fn ours(ifindex: u32, flushed: bool) -> bool {
    let Some(slot) = REDIRECT_PENDING.get_ptr_mut(ifindex % PENDING_SLOTS) else {
        return false;
    };
    // SAFETY: as in `note_redirect`.
    unsafe {
        let pending = *slot != 0;
        if flushed {
            *slot = 0;
        }
        pending
    }
}

/// Count `n` frames `ifindex` did not take.
#[inline(always)]
fn failed(ifindex: u32, n: u64) {
    count_n(Stat::RedirectFailed, n);
    match REDIRECT_FAILS.get_ptr_mut(ifindex) {
        // SAFETY: the value is this CPU's own copy (see `note_redirect`).
        Some(v) => unsafe { *v += n },
        None => {
            let _ = REDIRECT_FAILS.insert(ifindex, n, 0);
        }
    }
}

#[tracepoint]
pub fn meshfwd_devmap_xmit(ctx: TracePointContext) -> u32 {
    // SAFETY: the offsets are those of the event's record (see above), and
    // `read_at` copies with bpf_probe_read_kernel, which faults safely.
    let fields = unsafe {
        (
            ctx.read_at::<i32>(XMIT_TO_IFINDEX),
            ctx.read_at::<i32>(XMIT_DROPS),
        )
    };
    if let (Ok(to), Ok(drops)) = fields {
        let to = to as u32;
        if ours(to, true) && drops > 0 {
            failed(to, drops as u64);
        }
    }
    0
}

#[tracepoint]
pub fn meshfwd_redirect_err(ctx: TracePointContext) -> u32 {
    // SAFETY: as in `meshfwd_devmap_xmit`.
    if let Ok(to) = unsafe { ctx.read_at::<i32>(ERR_TO_IFINDEX) } {
        let to = to as u32;
        if ours(to, false) {
            failed(to, 1);
        }
    }
    0
}
