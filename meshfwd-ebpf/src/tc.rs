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
//! IPv4 takes the same paths (pods' IPv4 addresses are in `ENDPOINTS` as
//! IPv4-mapped keys, the FIB is the IPv4 one), with the TTL and header
//! checksum updated instead of the hop limit.
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
        self, ETH_HDR_LEN, ETH_P_IPV6, HOP_LIMIT_OFFSET, IPV6_HDR_LEN, Ipv6Header, L4_OFFSET,
        ipv4::{self, IPV4_HDR_LEN, Ipv4Header},
        proto,
    },
    stats::Stat,
};

use crate::{
    ct::{self, Flow, Refusal},
    xdp::{NH_GROUPS, count, lookup_route, lookup_route4, pick_member},
};

/// Pods on this node: address -> host veth and MACs (filled by the CNI
/// plugin).
#[btf_map]
static ENDPOINTS: HashMap<EndpointKey, Endpoint, { ENDPOINT_MAX_ENTRIES as usize }> =
    HashMap::new();

#[classifier]
pub fn meshfwd_tc_pod(ctx: TcContext) -> i32 {
    match ethertype(&ctx) {
        Some(ETH_P_IPV6) => try_pod(&ctx),
        Some(ipv4::ETH_P_IP) => try_pod4(&ctx),
        _ => None,
    }
    .unwrap_or(TC_ACT_UNSPEC)
}

#[classifier]
pub fn meshfwd_tc_mesh(ctx: TcContext) -> i32 {
    match ethertype(&ctx) {
        Some(ETH_P_IPV6) => try_mesh(&ctx),
        Some(ipv4::ETH_P_IP) => try_mesh4(&ctx),
        _ => None,
    }
    .unwrap_or(TC_ACT_UNSPEC)
}

/// The frame's EtherType.
#[inline(always)]
fn ethertype(ctx: &TcContext) -> Option<u16> {
    let p = ptr_at(ctx, 12, 2)?;
    // SAFETY: `ptr_at` proved both bytes lie in the linear data.
    Some(u16::from_be_bytes(unsafe {
        (p as *const [u8; 2]).read_unaligned()
    }))
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
    redirect_peer(ep.ifindex, done)
}

/// Hand the frame to the pod behind host veth `ifindex`; count it as
/// `done`.
#[inline(always)]
fn redirect_peer(ifindex: u32, done: Stat) -> Option<i32> {
    // SAFETY: a plain helper call; the kernel checks the ifindex.
    let r = unsafe { bpf_redirect_peer(ifindex, 0) };
    if r == i64::from(TC_ACT_REDIRECT) {
        count(done);
        Some(TC_ACT_REDIRECT)
    } else {
        None
    }
}

/// Pod egress of IPv4: to a local pod, else along the IPv4 FIB.
#[inline(always)]
fn try_pod4(ctx: &TcContext) -> Option<i32> {
    let ip = parse4(ctx)?;
    let ports = ports_at(ctx, ip.has_ports(), ipv4::L4_OFFSET);
    let (src, dst) = (fib::ipv4_mapped(ip.src), fib::ipv4_mapped(ip.dst));
    if let Some(verdict) = to_local_pod4(ctx, &ip, &dst, ports, Stat::TcPodToPod) {
        return Some(verdict);
    }
    let entry = lookup_route4(&dst);
    if entry.kind != fib::kind::FORWARD {
        return None;
    }
    let group = NH_GROUPS.get(entry.group)?;
    let h = fib::flow_hash(&src, &dst, 0, ip.protocol, ports);
    let nh = pick_member(group, h).ok()?;
    if !nh.has_mac() || !fits4(ctx, &ip, nh.mtu as usize) {
        return None;
    }
    accepted4(ctx, &ip, ports)?;
    rewrite4(ctx, &ip, &nh.dst_mac, &nh.src_mac)?;
    // SAFETY: a plain helper call; the kernel checks the ifindex.
    let r = unsafe { bpf_redirect(nh.ifindex, 0) };
    count(Stat::TcPodToMesh);
    Some(r as i32)
}

/// Mesh ingress of IPv4: deliver to a local pod, else leave it.
#[inline(always)]
fn try_mesh4(ctx: &TcContext) -> Option<i32> {
    let ip = parse4(ctx)?;
    let ports = ports_at(ctx, ip.has_ports(), ipv4::L4_OFFSET);
    to_local_pod4(
        ctx,
        &ip,
        &fib::ipv4_mapped(ip.dst),
        ports,
        Stat::TcMeshToPod,
    )
}

/// [`to_local_pod`] for IPv4: the pod is found by its IPv4-mapped address.
#[inline(always)]
fn to_local_pod4(
    ctx: &TcContext,
    ip: &Ipv4Header,
    dst: &packet::Addr,
    ports: u32,
    done: Stat,
) -> Option<i32> {
    // SAFETY: the entry is only read, and only its plain-integer fields.
    let ep = *unsafe { ENDPOINTS.get(fib::addr_bytes(dst)) }?;
    accepted4(ctx, ip, ports)?;
    rewrite4(ctx, ip, &ep.pod_mac, &ep.host_mac)?;
    redirect_peer(ep.ifindex, done)
}

/// Ask conntrack about an IPv4 flow; count a refusal.
#[inline(always)]
fn accepted4(ctx: &TcContext, ip: &Ipv4Header, ports: u32) -> Option<()> {
    let tcp_flags = match ip.protocol {
        // SAFETY: `ptr_at` proved the byte lies in the linear data.
        proto::TCP => ptr_at(ctx, ipv4::L4_OFFSET + TCP_FLAGS_OFFSET, 1).map(|p| unsafe { *p }),
        _ => None,
    };
    counted(ct::check_skb(ctx, Flow::ipv4(ip, ports), tcp_flags))
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
    counted(ct::check_skb(ctx, Flow::ipv6(ip, ports), tcp_flags))
}

/// Count conntrack's refusal, if any.
#[inline(always)]
fn counted(check: Result<(), Refusal>) -> Option<()> {
    match check {
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

/// Parse the IPv6 header (the frame is IPv6: the caller read the
/// EtherType); `None` for anything the kernel must see.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Ipv6Header> {
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

/// Parse Ethernet + IPv4 and verify the header (the frame is IPv4);
/// `None` for anything the kernel must see.
#[inline(always)]
fn parse4(ctx: &TcContext) -> Option<Ipv4Header> {
    let hdr = ptr_at(ctx, ETH_HDR_LEN, IPV4_HDR_LEN)?;
    // SAFETY: `ptr_at` proved the 20 header bytes lie in the linear data.
    let bytes = unsafe { (hdr as *const [u8; IPV4_HDR_LEN]).read_unaligned() };
    let ip = Ipv4Header::from_bytes(&bytes);
    ipv4::check_frame(&ip, ctx.len() as usize).ok()?;
    let mut words = [0u16; IPV4_HDR_LEN / 2];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    }
    if !ipv4::checksum_ok(&words) {
        return None;
    }
    ipv4::classify(&ip).ok()?;
    Some(ip)
}

/// [`fits`] for IPv4.
#[inline(always)]
fn fits4(ctx: &TcContext, ip: &Ipv4Header, mtu: usize) -> bool {
    // SAFETY: a plain read of a field of the context the kernel passed in.
    let gso_size = unsafe { (*ctx.skb.skb).gso_size } as usize;
    if gso_size == 0 {
        return usize::from(ip.total_len) <= mtu;
    }
    let l4_header = match ip.protocol {
        proto::TCP => match ptr_at(ctx, ipv4::L4_OFFSET + 12, 1) {
            // SAFETY: `ptr_at` proved the byte lies in the linear data.
            Some(p) => usize::from(unsafe { *p } >> 4) * 4,
            None => return false,
        },
        proto::UDP => 8,
        _ => return false,
    };
    IPV4_HDR_LEN + l4_header + gso_size <= mtu
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
    ports_at(ctx, ip.has_ports(), L4_OFFSET)
}

/// Return the four bytes at `offset` as one word if `present` (0 else).
#[inline(always)]
fn ports_at(ctx: &TcContext, present: bool, offset: usize) -> u32 {
    if !present {
        return 0;
    }
    match ptr_at(ctx, offset, 4) {
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

/// [`rewrite`] for IPv4: new MACs, then the TTL, protocol and checksum
/// (RFC 1624) in one store. The header still sums to all ones after it,
/// so a CHECKSUM_COMPLETE sum over it stays right without a fix-up.
#[inline(always)]
fn rewrite4(ctx: &TcContext, ip: &Ipv4Header, dst_mac: &[u8; 6], src_mac: &[u8; 6]) -> Option<()> {
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(dst_mac);
    macs[6..].copy_from_slice(src_mac);
    ctx.store(0, &macs, 0).ok()?;
    let (ttl, checksum) = ipv4::decrement_ttl(ip.ttl, ip.protocol, ip.checksum);
    let [c0, c1] = checksum.to_be_bytes();
    ctx.store(
        ETH_HDR_LEN + ipv4::TTL_OFFSET,
        &[ttl, ip.protocol, c0, c1],
        0,
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
