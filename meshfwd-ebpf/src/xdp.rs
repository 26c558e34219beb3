//! XDP entry point on mesh NICs: hop-by-hop IPv6 forwarding, and IPv4
//! routed over the same IPv6 neighbours (no IPv4 address on any link).
//!
//! A frame is forwarded here only when a router may forward it without the
//! kernel's help; everything else (control traffic, anything that needs an
//! ICMPv6 error, traffic for this node, unresolved neighbours) is passed to
//! the kernel, which holds the same routes. The maps are filled by the
//! agent's map writer (`meshfwd::fib`); their layout is in
//! `meshfwd_common::fib`.

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, DevMapHash, HashMap, LpmTrie, LruPerCpuHashMap, PerCpuArray, lpm_trie::Key},
    helpers::generated::bpf_ktime_get_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use meshfwd_common::{
    bfd::{self, ReflectSession},
    conntrack::TCP_FLAGS_OFFSET,
    fib::{
        self, CachedRoute, DST_CACHE_MAX_ENTRIES, EGRESS_DEV_MAX_ENTRIES, FIB_V4_MAX_ENTRIES,
        FIB_V6_MAX_ENTRIES, FibEntry, GROUP_MAX_ENTRIES, GROUP_MAX_MEMBERS, NEXT_HOP_MAX_ENTRIES,
        NextHop, NextHopGroup, table,
    },
    packet::{
        self, Addr, ETH_HDR_LEN, ETH_P_IPV6, HOP_LIMIT_OFFSET, IPV6_HDR_LEN, L4_OFFSET,
        ipv4::{self, IPV4_HDR_LEN},
        proto,
    },
    stats::{MAX_STATS, Stat},
};

use crate::ct::{self, Flow, Refusal};

/// Per-CPU frame counters, indexed by [`Stat`].
#[btf_map]
static MESH_STATS: PerCpuArray<u64, { MAX_STATS as usize }> = PerCpuArray::new();

/// IPv6 FIB: longest-prefix match on the destination address.
#[btf_map]
pub(crate) static FIB_V6: LpmTrie<[u8; 16], FibEntry, { FIB_V6_MAX_ENTRIES as usize }> =
    LpmTrie::new();

/// IPv4 FIB, over the same groups and next hops.
#[btf_map]
pub(crate) static FIB_V4: LpmTrie<[u8; 4], FibEntry, { FIB_V4_MAX_ENTRIES as usize }> =
    LpmTrie::new();

/// ECMP groups, by group id.
#[btf_map]
pub(crate) static NH_GROUPS: Array<NextHopGroup, { GROUP_MAX_ENTRIES as usize }> = Array::new();

/// Next hops, by next-hop id.
#[btf_map]
static NEXT_HOPS: Array<NextHop, { NEXT_HOP_MAX_ENTRIES as usize }> = Array::new();

/// Egress interfaces the fast path may redirect to, by ifindex.
#[btf_map]
static EGRESS_DEVS: DevMapHash<{ EGRESS_DEV_MAX_ENTRIES as usize }> = DevMapHash::new();

/// FIB generation: slot 0 changes whenever a FIB entry does.
#[btf_map]
static FIB_GEN: Array<u32, 1> = Array::new();

/// The compiled lookup table (`meshfwd_common::fib::table`): two regions.
#[btf_map]
static FIB6_TABLE: Array<u32, { table::ENTRIES as usize }> = Array::new();

/// Each region's shortcut past the groups every route shares.
#[btf_map]
static FIB6_TABLE_HEAD: Array<table::Head, { table::REGIONS as usize }> = Array::new();

/// Slot 0: 0 when there is no table, else 1 + the live region.
#[btf_map]
static FIB6_TABLE_ROOT: Array<u32, 1> = Array::new();

/// The compiled IPv4 table, over IPv4-mapped addresses.
#[btf_map]
static FIB4_TABLE: Array<u32, { table::ENTRIES4 as usize }> = Array::new();

#[btf_map]
static FIB4_TABLE_HEAD: Array<table::Head, { table::REGIONS as usize }> = Array::new();

#[btf_map]
static FIB4_TABLE_ROOT: Array<u32, 1> = Array::new();

/// Per-CPU destination cache in front of the LPM trie, used when there is
/// no compiled table.
#[btf_map]
static DST_CACHE: LruPerCpuHashMap<Addr, CachedRoute, { DST_CACHE_MAX_ENTRIES as usize }> =
    LruPerCpuHashMap::new();

/// BFD sessions answered while the agent is away, by local discriminator
/// (`meshfwd_common::bfd`).
#[btf_map]
static BFD_SESSIONS: HashMap<u32, ReflectSession, { bfd::SESSIONS_MAX_ENTRIES as usize }> =
    HashMap::new();

/// The agent's BFD thread's last heartbeat (CLOCK_MONOTONIC ns).
#[btf_map]
static BFD_HEARTBEAT: Array<u64, 1> = Array::new();

/// Room to build a BFD answer in, per CPU: the stack has none to spare.
#[btf_map]
static BFD_SCRATCH: PerCpuArray<[u8; bfd::UDP_BFD_LEN], 1> = PerCpuArray::new();

/// The fixed IPv6 header (RFC 8200 3), as it lies in the frame.
///
/// Packed to 2 bytes because the header follows the 14-byte Ethernet
/// header; the compiler then reads each word as two half-word loads
/// instead of four byte loads.
#[repr(C, packed(2))]
struct Ipv6Hdr {
    vtc_flow: u32,
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    /// Addresses in native-endian words: only compared and hashed.
    src: Addr,
    dst: Addr,
}

/// The IPv4 header without options (RFC 791), as it lies in the frame.
#[repr(C, packed(2))]
struct Ipv4Hdr {
    version_ihl: u8,
    tos: u8,
    total_len: u16,
    id: u16,
    frag: u16,
    ttl: u8,
    protocol: u8,
    checksum: u16,
    /// Addresses in native-endian words: only compared and hashed.
    src: u32,
    dst: u32,
}

/// The first four transport bytes (both ports for TCP, UDP, SCTP).
#[repr(C, packed(2))]
struct Ports(u32);

/// Verdict plus the reason counted with it.
type Verdict = (u32, Stat);

const fn pass(reason: Stat) -> Verdict {
    (xdp_action::XDP_PASS, reason)
}

#[xdp]
pub fn meshfwd_xdp(ctx: XdpContext) -> u32 {
    count(Stat::Rx);
    let (verdict, reason) = try_forward(&ctx);
    let verdict_stat = match verdict {
        xdp_action::XDP_DROP => Stat::Drop,
        xdp_action::XDP_REDIRECT => Stat::Redirect,
        xdp_action::XDP_TX => Stat::Tx,
        xdp_action::XDP_ABORTED => Stat::Aborted,
        _ => Stat::Pass,
    };
    count(verdict_stat);
    // A forwarded frame's reason is its verdict: count it once.
    if reason != verdict_stat {
        count(reason);
    }
    verdict
}

/// Decide one frame. Every early return is an `XDP_PASS` with its reason;
/// the only way to `XDP_REDIRECT` is the end of this function.
#[inline(always)]
fn try_forward(ctx: &XdpContext) -> Verdict {
    let Some(ethertype) = read_u16_be(ctx, 12) else {
        return pass(Stat::Malformed);
    };
    if ethertype == ipv4::ETH_P_IP {
        return try_forward4(ctx);
    }
    if ethertype != ETH_P_IPV6 {
        return pass(Stat::NonIpv6);
    }
    // The whole fixed header must be present before we call it IPv6.
    let Some(ip) = ptr_at(ctx, ETH_HDR_LEN, IPV6_HDR_LEN) else {
        return pass(Stat::Malformed);
    };
    let ip = ip as *const Ipv6Hdr;
    // Fields are read in place, a word at a time: copying the header to
    // the stack byte by byte cost more than the rest of the parse.
    // SAFETY: `ptr_at` proved the 40 header bytes lie inside the frame;
    // `Ipv6Hdr` is packed to the 2-byte alignment the frame guarantees.
    let ip = unsafe {
        packet::Ipv6Header {
            vtc_flow: u32::from_be((*ip).vtc_flow),
            payload_len: u16::from_be((*ip).payload_len),
            next_header: (*ip).next_header,
            hop_limit: (*ip).hop_limit,
            src: (*ip).src,
            dst: (*ip).dst,
        }
    };
    if let Err(reason) = packet::check_frame(&ip, ctx.data_end() - ctx.data()) {
        return pass(reason);
    }
    count(Stat::Ipv6);
    if let Err(reason) = packet::classify(&ip, || read_u8(ctx, L4_OFFSET)) {
        // BFD runs between link-local addresses (the OSPF neighbours'):
        // answered here only while the agent is away; otherwise the kernel
        // hands it to the agent. Tested only here, off the forwarding path.
        if reason == Stat::LinkLocal
            && ip.next_header == proto::UDP
            && ip.hop_limit == 255
            && ip.payload_len as usize == bfd::UDP_BFD_LEN
            && answer_bfd(ctx).is_some()
        {
            return (xdp_action::XDP_TX, Stat::BfdAnswered);
        }
        return pass(reason);
    }
    let mut ports = 0u32;
    if ip.has_ports() {
        let Some(p) = ptr_at(ctx, L4_OFFSET, 4) else {
            return pass(Stat::Malformed);
        };
        // SAFETY: `ptr_at` proved the four port bytes lie inside the frame,
        // and `Ports` asks only for the 2-byte alignment the frame has.
        ports = unsafe { (*(p as *const Ports)).0 };
    }

    // Longest-prefix match on the destination, through the cache; one
    // flow, one path: the flow's invariant fields pick the member.
    let entry = lookup_route(&ip.dst);
    let h = fib::flow_hash(&ip.src, &ip.dst, ip.vtc_flow, ip.next_header, ports);
    let nh = match next_hop(entry, h, IPV6_HDR_LEN + ip.payload_len as usize) {
        Ok(nh) => nh,
        Err(reason) => return pass(reason),
    };
    // Last, as the dearest check: only flows netfilter has accepted and
    // does not translate are forwarded here.
    let tcp_flags = match ip.next_header {
        proto::TCP => read_u8(ctx, L4_OFFSET + TCP_FLAGS_OFFSET),
        _ => None,
    };
    if let Err(refusal) = ct::check_xdp(ctx, Flow::ipv6(&ip, ports), tcp_flags) {
        return pass(match refusal {
            Refusal::Untracked => Stat::Untracked,
            Refusal::NewFlow => Stat::NewFlow,
            Refusal::Translated => Stat::Translated,
        });
    }

    // Commit: hop limit, then both MACs, then hand to the egress device.
    let Some(hl) = ptr_at(ctx, ETH_HDR_LEN + HOP_LIMIT_OFFSET, 1) else {
        return pass(Stat::Malformed);
    };
    send(ctx, nh, || {
        // SAFETY: `ptr_at` proved the byte lies inside the frame, and XDP
        // frames are writable.
        unsafe { *(hl as *mut u8) = ip.hop_limit - 1 };
    })
}

/// Decide one IPv4 frame, by the same steps as IPv6: the header's rules
/// (`meshfwd_common::packet::ipv4`), the FIB, the group's live member for
/// the flow, netfilter's word; then TTL and checksum, MACs, redirect.
#[inline(always)]
fn try_forward4(ctx: &XdpContext) -> Verdict {
    let Some(p) = ptr_at(ctx, ETH_HDR_LEN, IPV4_HDR_LEN) else {
        return pass(Stat::Malformed);
    };
    let hdr = p as *const Ipv4Hdr;
    // SAFETY: `ptr_at` proved the 20 header bytes lie inside the frame;
    // `Ipv4Hdr` is packed to the 2-byte alignment the frame guarantees.
    let ip = unsafe {
        ipv4::Ipv4Header {
            version_ihl: (*hdr).version_ihl,
            total_len: u16::from_be((*hdr).total_len),
            frag: u16::from_be((*hdr).frag),
            ttl: (*hdr).ttl,
            protocol: (*hdr).protocol,
            checksum: u16::from_be((*hdr).checksum),
            src: (*hdr).src,
            dst: (*hdr).dst,
        }
    };
    if let Err(reason) = ipv4::check_frame(&ip, ctx.data_end() - ctx.data()) {
        return pass(reason);
    }
    count(Stat::Ipv4);
    // Summed where they lie, in load order (see `checksum_ok`).
    // SAFETY: as above; ten 2-aligned words inside the proven range.
    let words = unsafe { &*(p as *const [u16; IPV4_HDR_LEN / 2]) };
    if !ipv4::checksum_ok(words) {
        return pass(Stat::BadChecksum);
    }
    if let Err(reason) = ipv4::classify(&ip) {
        return pass(reason);
    }
    let mut ports = 0u32;
    if ip.has_ports() {
        let Some(p) = ptr_at(ctx, ipv4::L4_OFFSET, 4) else {
            return pass(Stat::Malformed);
        };
        // SAFETY: `ptr_at` proved the four port bytes lie inside the frame,
        // and `Ports` asks only for the 2-byte alignment the frame has.
        ports = unsafe { (*(p as *const Ports)).0 };
    }

    let (src, dst) = (fib::ipv4_mapped(ip.src), fib::ipv4_mapped(ip.dst));
    let entry = lookup_route4(&dst);
    let h = fib::flow_hash(&src, &dst, 0, ip.protocol, ports);
    let nh = match next_hop(entry, h, ip.total_len as usize) {
        Ok(nh) => nh,
        Err(reason) => return pass(reason),
    };
    let tcp_flags = match ip.protocol {
        proto::TCP => read_u8(ctx, ipv4::L4_OFFSET + TCP_FLAGS_OFFSET),
        _ => None,
    };
    if let Err(refusal) = ct::check_xdp(ctx, Flow::ipv4(&ip, ports), tcp_flags) {
        return pass(match refusal {
            Refusal::Untracked => Stat::Untracked,
            Refusal::NewFlow => Stat::NewFlow,
            Refusal::Translated => Stat::Translated,
        });
    }

    // Commit: TTL and checksum (RFC 1624), then both MACs, then redirect.
    let Some(ttl) = ptr_at(ctx, ETH_HDR_LEN + ipv4::TTL_OFFSET, 4) else {
        return pass(Stat::Malformed);
    };
    let (new_ttl, checksum) = ipv4::decrement_ttl(ip.ttl, ip.protocol, ip.checksum);
    send(ctx, nh, || {
        // SAFETY: `ptr_at` proved the TTL, protocol and checksum bytes lie
        // inside the frame, and XDP frames are writable.
        unsafe {
            let at = ttl as *mut u8;
            *at = new_ttl;
            (at.add(ipv4::CHECKSUM_OFFSET - ipv4::TTL_OFFSET) as *mut [u8; 2])
                .write_unaligned(checksum.to_be_bytes());
        }
    })
}

/// The next hop for a destination's FIB `entry`, flow hash `h` and an IP
/// packet of `ip_len` bytes, or why the kernel must take the packet.
#[inline(always)]
fn next_hop(entry: FibEntry, h: u32, ip_len: usize) -> Result<&'static NextHop, Stat> {
    if entry.kind == fib::kind::LOCAL {
        return Err(Stat::Local);
    }
    if entry.kind == fib::kind::ON_LINK {
        return Err(Stat::OnLink);
    }
    if entry.kind != fib::kind::FORWARD {
        return Err(Stat::NoRoute);
    }
    let Some(group) = NH_GROUPS.get(entry.group) else {
        return Err(Stat::Inconsistent);
    };
    let nh = pick_member(group, h)?;
    if !nh.has_mac() {
        return Err(Stat::NoNeighbour);
    }
    if ip_len > nh.mtu as usize {
        return Err(Stat::TooBig);
    }
    Ok(nh)
}

/// Hand the frame to `nh`'s device: `rewrite` the IP header (hop limit or
/// TTL), set both MACs, redirect. Nothing is written unless the redirect
/// is taken.
#[inline(always)]
fn send(ctx: &XdpContext, nh: &NextHop, rewrite: impl FnOnce()) -> Verdict {
    let Some(eth) = ptr_at(ctx, 0, 12) else {
        return pass(Stat::Malformed);
    };
    match EGRESS_DEVS.redirect(nh.ifindex, xdp_action::XDP_PASS as u64) {
        Ok(action) => {
            crate::trace::note_redirect(nh.ifindex);
            rewrite();
            let mut macs = [0u8; 12];
            macs[..6].copy_from_slice(&nh.dst_mac);
            macs[6..].copy_from_slice(&nh.src_mac);
            // SAFETY: `ptr_at` proved 12 bytes from the frame start lie
            // inside the frame, and XDP frames are writable.
            unsafe { (eth as *mut [u8; 12]).write_unaligned(macs) };
            (action, Stat::Redirect)
        }
        Err(_) => pass(Stat::NoEgressDev),
    }
}

/// Return the FIB entry for `dst` (`kind` 0 when there is none): from the
/// compiled table when there is one; else from this CPU's destination
/// cache while the FIB generation is unchanged, else from the LPM trie,
/// refreshing the cache.
#[inline(always)]
pub(crate) fn lookup_route(dst: &Addr) -> FibEntry {
    let root = FIB6_TABLE_ROOT.get(0).copied().unwrap_or(0);
    if root != 0 {
        return lookup_table(
            &FIB6_TABLE,
            &FIB6_TABLE_HEAD,
            table::REGION_ENTRIES,
            (root - 1) & 1,
            dst,
        );
    }
    through_cache(dst, || {
        FIB_V6
            .get(&Key::new(128, fib::addr_bytes(dst)))
            .copied()
            .unwrap_or_default()
    })
}

/// Return `dst`'s FIB entry from this CPU's destination cache while the
/// FIB generation is unchanged, else from `lookup`, refreshing the cache.
#[inline(always)]
fn through_cache(dst: &Addr, lookup: impl FnOnce() -> FibEntry) -> FibEntry {
    // Stored plus one: an entry another CPU inserted reads as all zeroes
    // on this CPU, and must never look valid.
    let generation = FIB_GEN.get(0).copied().unwrap_or(0).wrapping_add(1);
    if let Some(cached) = DST_CACHE.get_ptr(dst) {
        // SAFETY: a per-CPU value of this CPU; only plain integers are read.
        let cached = unsafe { *cached };
        if cached.generation == generation {
            return cached.entry;
        }
    }
    let entry = lookup();
    let _ = DST_CACHE.insert(dst, CachedRoute { entry, generation }, 0);
    entry
}

/// Return the FIB entry for IPv4 destination `dst` (as its IPv4-mapped
/// words): from the compiled IPv4 table when there is one; else from this
/// CPU's destination cache while the FIB generation is unchanged, else
/// from the IPv4 LPM trie, refreshing the cache.
#[inline(always)]
pub(crate) fn lookup_route4(dst: &Addr) -> FibEntry {
    let root = FIB4_TABLE_ROOT.get(0).copied().unwrap_or(0);
    if root != 0 {
        return lookup_table(
            &FIB4_TABLE,
            &FIB4_TABLE_HEAD,
            table::REGION_ENTRIES4,
            (root - 1) & 1,
            dst,
        );
    }
    through_cache(dst, || {
        FIB_V4
            .get(&Key::new(32, dst[3].to_ne_bytes()))
            .copied()
            .unwrap_or_default()
    })
}

/// Walk region `region` (of `region_entries` entries) of a compiled
/// table, one address byte per level, from where the region's head says.
#[inline(always)]
fn lookup_table<const N: usize>(
    entries: &Array<u32, N>,
    heads: &Array<table::Head, { table::REGIONS as usize }>,
    region_entries: u32,
    region: u32,
    dst: &Addr,
) -> FibEntry {
    let (skip, group) = match heads.get(region) {
        Some(head) => head.start(dst),
        None => (0, 0),
    };
    let region_base = region * region_entries;
    let mut base = region_base + group * 256;
    let mut level = 0u32;
    for word in dst {
        // Wire order: the first address byte is the word's top byte.
        let word = u32::from_be(*word);
        for shift in [24u32, 16, 8, 0] {
            if level >= skip {
                let byte = (word >> shift) & 0xff;
                let Some(&e) = entries.get(base + byte) else {
                    return FibEntry::default();
                };
                if e & table::POINTER == 0 {
                    return table::entry(e);
                }
                base = region_base + (e & table::INDEX_MASK) * 256;
            }
            level += 1;
        }
    }
    // The writer never puts a pointer at the last byte.
    FibEntry::default()
}

/// Choose the group member for flow hash `h`: the hashed member if it is
/// alive, else a re-hash over the live members only, so a dead member's
/// flows spread over the survivors and nobody else's flows move.
#[inline(always)]
pub(crate) fn pick_member(group: &NextHopGroup, h: u32) -> Result<&'static NextHop, Stat> {
    let len = group.len;
    if len == 0 {
        return Err(Stat::Inconsistent);
    }
    let first = group.members[slot(fib::reduce(h, len))];
    let Some(nh) = NEXT_HOPS.get(first) else {
        return Err(Stat::Inconsistent);
    };
    if nh.is_alive() {
        return Ok(nh);
    }
    count(Stat::Rehashed);
    let mut live = [0u32; GROUP_MAX_MEMBERS];
    let mut n_live = 0usize;
    for i in 0..GROUP_MAX_MEMBERS {
        if i as u32 >= len {
            break;
        }
        let id = group.members[i];
        if let Some(nh) = NEXT_HOPS.get(id)
            && nh.is_alive()
        {
            live[slot(n_live as u32)] = id;
            n_live += 1;
        }
    }
    if n_live == 0 {
        return Err(Stat::NoLiveNextHop);
    }
    let id = live[slot(fib::reduce(fib::rehash(h), n_live as u32))];
    NEXT_HOPS.get(id).ok_or(Stat::Inconsistent)
}

/// Bound an index into a group's member array in a way the compiler cannot
/// drop as redundant, so the verifier sees the bound too.
#[inline(always)]
fn slot(i: u32) -> usize {
    (core::hint::black_box(i) as usize) & (GROUP_MAX_MEMBERS - 1)
}

/// Bump one per-CPU counter.
#[inline(always)]
pub(crate) fn count(stat: Stat) {
    count_n(stat, 1);
}

#[inline(always)]
pub(crate) fn count_n(stat: Stat, n: u64) {
    if let Some(slot) = MESH_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: the map slot is this CPU's own copy, and the programs that
        // count (XDP, TC, the tracepoints) do not nest on one CPU, so nothing
        // else writes it concurrently.
        unsafe { *slot += n };
    }
}

/// Answer a BFD Control packet in place for a session of [`BFD_SESSIONS`]
/// when the agent's heartbeat is stale (see `meshfwd_common::bfd`): swap
/// the addresses, write the session's packet, and send it back. Nothing is
/// copied to the stack (the forwarding path leaves it little room): the
/// packet and the session are read where they lie, the answer is built in
/// a per-CPU scratch slot.
#[inline(always)]
fn answer_bfd(ctx: &XdpContext) -> Option<()> {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let beat = *BFD_HEARTBEAT.get(0)?;
    if beat == 0 || now.saturating_sub(beat) < bfd::HEARTBEAT_STALE_NS {
        return None;
    }
    let frame = ptr_at(ctx, 0, L4_OFFSET + bfd::UDP_BFD_LEN)? as *mut u8;
    let (src_at, dst_at) = (ETH_HDR_LEN + 8, ETH_HDR_LEN + 24);
    // SAFETY: `ptr_at` proved the 32 UDP and BFD bytes lie in the frame;
    // byte arrays ask for no alignment.
    let req = unsafe { &*(frame.add(L4_OFFSET) as *const [u8; bfd::UDP_BFD_LEN]) };
    let your_disc = u32::from_be_bytes([req[16], req[17], req[18], req[19]]);
    // SAFETY: the session is only read; the agent writes a session whole,
    // and a torn read would only make an answer the peer discards.
    let s = unsafe { BFD_SESSIONS.get(your_disc)? };
    if s.ifindex as usize != ctx.ingress_ifindex() {
        return None;
    }
    // SAFETY: as for `req`: the addresses lie inside the proven range.
    let src = unsafe { &*(frame.add(src_at) as *const [u8; 16]) };
    // SAFETY: as above.
    let dst = unsafe { &*(frame.add(dst_at) as *const [u8; 16]) };
    let out = BFD_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's own scratch slot; XDP does not nest on a CPU.
    if !bfd::answer(req, s, src, dst, unsafe { &mut *out }) {
        return None;
    }
    // Swap the MACs and the addresses a word at a time, then lay the
    // answer over the request.
    for (a, b, n) in [(0usize, 6usize, 6usize), (src_at, dst_at, 16)] {
        let mut i = 0;
        while i < n {
            // SAFETY: both bytes lie inside the proven range.
            unsafe { core::ptr::swap(frame.add(a + i), frame.add(b + i)) };
            i += 1;
        }
    }
    // SAFETY: the hop limit and the 32 bytes lie inside the proven range;
    // `out` is this CPU's scratch slot, apart from the frame.
    unsafe {
        *frame.add(ETH_HDR_LEN + HOP_LIMIT_OFFSET) = 255;
        core::ptr::copy_nonoverlapping(out as *const u8, frame.add(L4_OFFSET), bfd::UDP_BFD_LEN);
    }
    Some(())
}

/// Return a pointer to `len` bytes at `offset`, or `None` if the frame is
/// shorter: the single place where packet bounds are checked.
#[inline(always)]
fn ptr_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*const u8> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + len > end {
        return None;
    }
    Some((start + offset) as *const u8)
}

#[inline(always)]
fn read_u8(ctx: &XdpContext, offset: usize) -> Option<u8> {
    let p = ptr_at(ctx, offset, 1)?;
    // SAFETY: `ptr_at` proved the byte lies inside the frame.
    Some(unsafe { *p })
}

#[inline(always)]
fn read_u16_be(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = ptr_at(ctx, offset, 2)?;
    // SAFETY: `ptr_at` proved both bytes lie inside the frame.
    let bytes = unsafe { [*p, *p.add(1)] };
    Some(u16::from_be_bytes(bytes))
}
