//! TC programs for pods: the fast path between pods and the mesh.
//!
//! - `meshfwd_tc_pod`, TCX ingress on a pod's host-side veth (traffic the
//!   pod sends): a destination in `ENDPOINTS` (a pod on this node) is
//!   delivered straight into that pod with `bpf_redirect_peer`; any other
//!   destination is looked up in the same FIB as transit traffic and sent
//!   out of the chosen mesh NIC with both MACs rewritten (`bpf_redirect`).
//! - `meshfwd_tc_mesh`, TCX ingress on mesh NICs (behind XDP, which passes
//!   traffic for this node's own prefix): a destination in `ENDPOINTS` is
//!   delivered into the pod with `bpf_redirect_peer`.
//!
//! Either takes a packet only when conntrack has accepted its flow and does
//! not translate it (`crate::ct`): Service and hostPort traffic, whose
//! replies must be un-NATed, and flows a rule dropped go through netfilter.
//!
//! Anything either program cannot handle is `TCX_NEXT` (`TC_ACT_UNSPEC`):
//! the hook's next program or classic filter runs, then the kernel, which
//! holds the same routes, takes it (`TC_ACT_OK` would end the hook there
//! and skip, say, a qdisc filter another plugin installed). That is every
//! frame the shared classification (`meshfwd_common::packet`, the same
//! rules as XDP) sends to the kernel, and no route, a dead or unresolved
//! next hop, too big (for a GSO skb: one segment too big), or headers not
//! in the linear part.

use aya_ebpf::{
    bindings::{BPF_F_RECOMPUTE_CSUM, TC_ACT_REDIRECT, TC_ACT_UNSPEC},
    btf_maps::HashMap,
    helpers::generated::{bpf_redirect, bpf_redirect_peer},
    macros::{btf_map, classifier},
    programs::TcContext,
};
use meshfwd_common::{
    conntrack::TCP_FLAGS_OFFSET,
    endpoint::{ENDPOINT_MAX_ENTRIES, Endpoint, EndpointKey},
    fib,
    packet::{
        self, ETH_HDR_LEN, ETH_P_IPV6, HOP_LIMIT_OFFSET, IPV6_HDR_LEN, Ipv6Header, L4_OFFSET, proto,
    },
    stats::Stat,
};

use crate::{
    ct::{self, Refusal},
    xdp::{NH_GROUPS, count, lookup_route, pick_member},
};

/// Pods on this node: address -> host veth and MACs (filled by the CNI
/// plugin).
#[btf_map]
static ENDPOINTS: HashMap<EndpointKey, Endpoint, { ENDPOINT_MAX_ENTRIES as usize }> =
    HashMap::new();

#[classifier]
pub fn meshfwd_tc_pod(ctx: TcContext) -> i32 {
    try_pod(&ctx).unwrap_or(TC_ACT_UNSPEC)
}

#[classifier]
pub fn meshfwd_tc_mesh(ctx: TcContext) -> i32 {
    try_mesh(&ctx).unwrap_or(TC_ACT_UNSPEC)
}

/// Pod egress: to a local pod, else along the FIB.
#[inline(always)]
fn try_pod(ctx: &TcContext) -> Option<i32> {
    let ip = parse(ctx)?;
    let ports = ports(ctx, &ip);
    if let Some(verdict) = to_local_pod(ctx, &ip, ports, Stat::TcPodToPod) {
        return Some(verdict);
    }
    // The same lookup and flow hash as transit traffic.
    let entry = lookup_route(&ip.dst);
    if entry.kind != fib::kind::FORWARD {
        return None;
    }
    let group = NH_GROUPS.get(entry.group)?;
    let h = fib::flow_hash(&ip.src, &ip.dst, ip.vtc_flow, ip.next_header, ports);
    let nh = pick_member(group, h).ok()?;
    if !nh.has_mac() || !fits(ctx, &ip, nh.mtu as usize) {
        return None;
    }
    accepted(ctx, &ip, ports)?;
    rewrite(ctx, ip.hop_limit, &nh.dst_mac, &nh.src_mac)?;
    // SAFETY: a plain helper call; the kernel checks the ifindex.
    let r = unsafe { bpf_redirect(nh.ifindex, 0) };
    count(Stat::TcPodToMesh);
    Some(r as i32)
}

/// Mesh ingress: deliver to a local pod, else leave it to the kernel.
#[inline(always)]
fn try_mesh(ctx: &TcContext) -> Option<i32> {
    let ip = parse(ctx)?;
    to_local_pod(ctx, &ip, ports(ctx, &ip), Stat::TcMeshToPod)
}

/// Redirect into the pod owning `ip.dst`, if it lives on this node and
/// netfilter lets the flow through untranslated; count it as `done`.
#[inline(always)]
fn to_local_pod(ctx: &TcContext, ip: &Ipv6Header, ports: u32, done: Stat) -> Option<i32> {
    // SAFETY: the entry is only read, and only its plain-integer fields.
    let ep = *unsafe { ENDPOINTS.get(fib::addr_bytes(&ip.dst)) }?;
    accepted(ctx, ip, ports)?;
    rewrite(ctx, ip.hop_limit, &ep.pod_mac, &ep.host_mac)?;
    // SAFETY: a plain helper call; the kernel checks the ifindex.
    let r = unsafe { bpf_redirect_peer(ep.ifindex, 0) };
    if r == i64::from(TC_ACT_REDIRECT) {
        count(done);
        Some(TC_ACT_REDIRECT)
    } else {
        None
    }
}

/// Ask conntrack (`crate::ct`); count a refusal, which leaves the packet
/// to the kernel.
#[inline(always)]
fn accepted(ctx: &TcContext, ip: &Ipv6Header, ports: u32) -> Option<()> {
    let tcp_flags = match ip.next_header {
        // SAFETY: `ptr_at` proved the byte lies in the linear data.
        proto::TCP => ptr_at(ctx, L4_OFFSET + TCP_FLAGS_OFFSET, 1).map(|p| unsafe { *p }),
        _ => None,
    };
    match ct::check_skb(ctx, ip, ports, tcp_flags) {
        Ok(()) => Some(()),
        Err(refusal) => {
            count(match refusal {
                Refusal::Untracked => Stat::TcUntracked,
                Refusal::NewFlow => Stat::TcNewFlow,
                Refusal::Translated => Stat::TcTranslated,
            });
            None
        }
    }
}

/// Parse Ethernet + IPv6; `None` for anything the kernel must see.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Ipv6Header> {
    let eth = ptr_at(ctx, 0, ETH_HDR_LEN)?;
    // SAFETY: `ptr_at` proved the 14 header bytes lie in the linear data.
    let eth = unsafe { (eth as *const [u8; ETH_HDR_LEN]).read_unaligned() };
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IPV6 {
        return None;
    }
    let hdr = ptr_at(ctx, ETH_HDR_LEN, IPV6_HDR_LEN)?;
    // SAFETY: `ptr_at` proved the 40 header bytes lie in the linear data.
    let ip =
        Ipv6Header::from_bytes(&unsafe { (hdr as *const [u8; IPV6_HDR_LEN]).read_unaligned() });
    // `len` counts the whole skb, paged data and all.
    packet::check_frame(&ip, ctx.len() as usize).ok()?;
    packet::classify(&ip, || {
        let t = ptr_at(ctx, L4_OFFSET, 1)?;
        // SAFETY: `ptr_at` proved the byte lies in the linear data.
        Some(unsafe { *t })
    })
    .ok()?;
    Some(ip)
}

/// Whether every packet this skb becomes on the wire fits `mtu`.
///
/// A pod with TSO on (the veth default) hands its host veth TCP skbs of up
/// to 64 KiB; the mesh NIC, or the stack in front of a NIC without TSO,
/// cuts them into segments of `gso_size` payload behind the same headers.
/// Checking such an skb's total length would send every bulk flow to the
/// kernel. A plain skb is one packet of its own length.
#[inline(always)]
fn fits(ctx: &TcContext, ip: &Ipv6Header, mtu: usize) -> bool {
    // SAFETY: a plain read of a field of the context the kernel passed in.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size } as usize;
    if gso_size == 0 {
        return IPV6_HDR_LEN + ip.payload_len as usize <= mtu;
    }
    let l4_header = match ip.next_header {
        // The TCP data offset, in 32-bit words.
        proto::TCP => match ptr_at(ctx, L4_OFFSET + 12, 1) {
            // SAFETY: `ptr_at` proved the byte lies in the linear data.
            Some(p) => usize::from(unsafe { *p } >> 4) * 4,
            None => return false,
        },
        proto::UDP => 8,
        _ => return false,
    };
    IPV6_HDR_LEN + l4_header + gso_size <= mtu
}

/// Return the transport ports as one word (0 when absent).
#[inline(always)]
fn ports(ctx: &TcContext, ip: &Ipv6Header) -> u32 {
    if !ip.has_ports() {
        return 0;
    }
    match ptr_at(ctx, L4_OFFSET, 4) {
        // SAFETY: `ptr_at` proved the four bytes lie in the linear data.
        Some(p) => unsafe { (p as *const u32).read_unaligned() },
        None => 0,
    }
}

/// Route the frame one hop: hop limit down by one, new MACs.
///
/// Written with `bpf_skb_store_bytes`, never through packet pointers. A
/// program that writes packet data directly gets a prologue from the
/// verifier that un-clones every cloned skb over its whole linear part,
/// and every TCP segment is a clone (TCP keeps the original for
/// retransmission): a fresh head and a copy of the linear part per
/// packet. The helper only asks for the bytes it writes, which a TCP clone
/// already owns (its headers were pushed after the clone), so nothing is
/// copied.
#[inline(always)]
fn rewrite(ctx: &TcContext, hop_limit: u8, dst_mac: &[u8; 6], src_mac: &[u8; 6]) -> Option<()> {
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(dst_mac);
    macs[6..].copy_from_slice(src_mac);
    // The MACs lie outside what a CHECKSUM_COMPLETE sum covers; the hop
    // limit lies inside it, so the kernel folds that change into the sum.
    ctx.store(0, &macs, 0).ok()?;
    ctx.store(
        ETH_HDR_LEN + HOP_LIMIT_OFFSET,
        &(hop_limit - 1),
        u64::from(BPF_F_RECOMPUTE_CSUM),
    )
    .ok()
}

/// Return a pointer to `len` bytes at `offset` of the linear data, or
/// `None`: the single place where packet bounds are checked.
#[inline(always)]
fn ptr_at(ctx: &TcContext, offset: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const u8)
}
