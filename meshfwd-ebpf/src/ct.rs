//! The netfilter coherence check (`meshfwd_common::conntrack`): forward a
//! packet only when conntrack has accepted its flow and does not translate
//! it.
//!
//! The kfuncs are declared here as plain externs; the loader
//! (`dataplane::object`) turns each call into a kfunc call with the running
//! kernel's BTF id, since aya 0.14 cannot.

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    btf_maps::Array,
    macros::btf_map,
    programs::{TcContext, XdpContext},
};
use meshfwd_common::{
    conntrack::{
        CFG_SLOTS, CT_OPTS_SIZE, CtOpts, NETFILTER_IGNORE, TUPLE4_SIZE, TUPLE6_SIZE, Tuple6, cfg,
        established, opens_or_closes, translated,
    },
    packet::{Ipv6Header, ipv4::Ipv4Header, proto},
};

/// Fast-path settings, indexed by [`cfg`] (zero: the checks are on).
#[btf_map]
static FASTPATH_CFG: Array<u32, { CFG_SLOTS as usize }> = Array::new();

/// A `struct nf_conn *` the lookup returned, held until released.
type NfConn = *mut core::ffi::c_void;

unsafe extern "C" {
    fn bpf_skb_ct_lookup(
        ctx: *mut __sk_buff,
        tuple: *mut Tuple6,
        tuple_size: u32,
        opts: *mut CtOpts,
        opts_size: u32,
    ) -> NfConn;
    fn bpf_xdp_ct_lookup(
        ctx: *mut xdp_md,
        tuple: *mut Tuple6,
        tuple_size: u32,
        opts: *mut CtOpts,
        opts_size: u32,
    ) -> NfConn;
    fn bpf_ct_release(ct: NfConn);
}

/// Byte offset of `status` in the running kernel's `struct nf_conn`
/// (`meshfwd_common::conntrack::STATUS_OFFSET_GLOBAL`), set by the loader.
/// The map holding it is read-only and frozen before the programs load,
/// so the verifier sees a constant and checks the read against the
/// kernel's BTF.
#[unsafe(no_mangle)]
static NF_CONN_STATUS_OFFSET: u32 = 0;

/// Why a packet must take the kernel path after all.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not TCP or UDP (or its header is cut): conntrack cannot be asked.
    Untracked,
    /// Conntrack has not accepted the flow, not yet seen it established,
    /// or the segment opens or closes a connection.
    NewFlow,
    /// Conntrack translates the flow.
    Translated,
}

/// What the first lookup found.
type Found = Option<u64>;

/// A packet's flow as conntrack is asked about it.
pub struct Flow {
    l4proto: u8,
    /// Whether the transport header holds the ports.
    has_ports: bool,
    tuple: Tuple6,
    /// How much of `tuple` the lookup reads: the family's member.
    tuple_size: u32,
}

impl Flow {
    #[inline(always)]
    pub fn ipv6(ip: &Ipv6Header, ports: u32) -> Self {
        Flow {
            l4proto: ip.next_header,
            has_ports: ip.has_ports(),
            tuple: Tuple6 {
                saddr: ip.src,
                daddr: ip.dst,
                ports,
            },
            tuple_size: TUPLE6_SIZE,
        }
    }

    #[inline(always)]
    pub fn ipv4(ip: &Ipv4Header, ports: u32) -> Self {
        Flow {
            l4proto: ip.protocol,
            has_ports: ip.has_ports(),
            tuple: Tuple6::ipv4(ip.src, ip.dst, ports),
            tuple_size: TUPLE4_SIZE,
        }
    }
}

/// Check a TC packet's flow (`Flow::ipv6` or `Flow::ipv4`) on its pod's
/// node, where conntrack must also have seen the flow established;
/// `tcp_flags` is the TCP flags byte (`None` when the packet is not TCP or
/// the byte is not in the linear data).
#[inline(always)]
pub fn check_skb(ctx: &TcContext, flow: Flow, tcp_flags: Option<u8>) -> Result<(), Refusal> {
    check(flow, tcp_flags, true, |tuple, size, opts| {
        // SAFETY: a kfunc call with pointers to this frame's stack and
        // their sizes; the verifier checks the arguments against the
        // kfunc's BTF, and `status_and_release` releases the result.
        unsafe {
            let ct = bpf_skb_ct_lookup(ctx.skb.skb, tuple, size, opts, CT_OPTS_SIZE);
            status_and_release(ct)
        }
    })
}

/// Check a transit frame's flow (as [`check_skb`], but accepted is
/// enough: a transit node may see one direction only).
#[inline(always)]
pub fn check_xdp(ctx: &XdpContext, flow: Flow, tcp_flags: Option<u8>) -> Result<(), Refusal> {
    check(flow, tcp_flags, false, |tuple, size, opts| {
        // SAFETY: as in `check_skb`.
        unsafe {
            let ct = bpf_xdp_ct_lookup(ctx.ctx, tuple, size, opts, CT_OPTS_SIZE);
            status_and_release(ct)
        }
    })
}

/// Read a lookup's `status` and release the entry; `None` when the lookup
/// found none.
///
/// # Safety
/// `ct` must be null or a reference the lookup kfunc just acquired.
#[inline(always)]
unsafe fn status_and_release(ct: NfConn) -> Found {
    if ct.is_null() {
        return None;
    }
    // SAFETY: `ct` points at a live `struct nf_conn` (the lookup took a
    // reference), and the offset is the kernel's own for `status`, a
    // constant the verifier checks against the kernel's BTF.
    let status = unsafe {
        let offset = core::ptr::read_volatile(&NF_CONN_STATUS_OFFSET) as usize;
        core::ptr::read_volatile((ct as *const u8).add(offset) as *const u64)
    };
    // SAFETY: the reference the lookup acquired, released once.
    unsafe { bpf_ct_release(ct) };
    Some(status)
}

#[inline(always)]
fn check(
    flow: Flow,
    tcp_flags: Option<u8>,
    must_be_established: bool,
    lookup: impl Fn(&mut Tuple6, u32, &mut CtOpts) -> Found,
) -> Result<(), Refusal> {
    if FASTPATH_CFG.get(cfg::NETFILTER).copied() == Some(NETFILTER_IGNORE) {
        return Ok(());
    }
    let flags = match (flow.l4proto, tcp_flags) {
        (proto::TCP, Some(flags)) => flags,
        (proto::UDP, _) => 0,
        _ => return Err(Refusal::Untracked),
    };
    if !flow.has_ports {
        return Err(Refusal::Untracked);
    }
    if flow.l4proto == proto::TCP && opens_or_closes(flags) {
        return Err(Refusal::NewFlow);
    }
    let mut tuple = flow.tuple;
    let mut opts = CtOpts {
        netns_id: -1,
        l4proto: flow.l4proto,
        ..CtOpts::default()
    };
    let Some(status) = lookup(&mut tuple, flow.tuple_size, &mut opts) else {
        return Err(Refusal::NewFlow);
    };
    if translated(status) {
        return Err(Refusal::Translated);
    }
    if must_be_established && !established(flow.l4proto, status) {
        return Err(Refusal::NewFlow);
    }
    Ok(())
}
