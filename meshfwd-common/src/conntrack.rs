//! Netfilter coherence: the fast path forwards a packet only when the
//! kernel's connection tracking has already accepted its flow and does not
//! translate it, so kube-proxy's Services, `portmap`'s hostPorts and
//! netfilter policies behave as if there were no fast path.
//!
//! The programs ask conntrack with the kernel's lookup kfuncs
//! (`bpf_skb_ct_lookup`, `bpf_xdp_ct_lookup`, `bpf_ct_release`), once per
//! packet, and read the entry's `status`:
//! 1. no entry for the packet's tuple (in either direction) means the
//!    kernel has not accepted the flow yet: its first packets, or a flow a
//!    rule dropped (an entry is only confirmed once the first packet has
//!    passed every chain);
//! 2. `IPS_SRC_NAT` or `IPS_DST_NAT` means this node translates the flow
//!    ([`translated`]): DNAT to a Service's endpoint or a hostPort's pod,
//!    SNAT, masquerade. Only the kernel can apply the translation.
//!
//! TCP segments that open or close a connection (SYN, FIN, RST) always go
//! through conntrack ([`opens_or_closes`]), so its entries end when the
//! flow does. On a pod's own node the TC programs also wait until
//! conntrack has seen the flow established ([`established`]: for TCP its
//! handshake, so the entry is `ASSURED`; for UDP a reply): that node sees
//! both directions of its pods' flows, and its entries are the ones NAT
//! and policies rely on. A transit node may see one direction only (a
//! mesh's paths need not be symmetric), so there conntrack would never
//! call the flow established; XDP asks only that the kernel accepted it.
//!
//! Like the kernel's own flowtable, conntrack then does not see the
//! packets in between, so the agent turns on `nf_conntrack_tcp_be_liberal`:
//! conntrack's TCP window tracking would otherwise call the closing FIN
//! out of window, and kube-proxy drops packets conntrack calls invalid.
//!
//! Only TCP and UDP can be asked (the kfuncs know no other protocol); every
//! other packet takes the kernel path while the check is on. The check is
//! on unless the agent is told netfilter does not matter on its nodes
//! ([`cfg::NETFILTER`]).

/// `struct bpf_ct_opts` as the kernel takes it (with the zone fields:
/// 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtOpts {
    /// -1: the namespace of the packet.
    pub netns_id: i32,
    /// Out: why the lookup failed.
    pub error: i32,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub l4proto: u8,
    /// Out: the direction the tuple matched.
    pub dir: u8,
    pub ct_zone_id: u16,
    pub ct_zone_dir: u8,
    pub reserved: [u8; 3],
}

/// Size of [`CtOpts`], passed along with it.
pub const CT_OPTS_SIZE: u32 = 16;
const _: () = assert!(size_of::<CtOpts>() == CT_OPTS_SIZE as usize);

/// The IPv6 member of `struct bpf_sock_tuple`: addresses and ports as they
/// lie on the wire (the fast path's native-endian words of wire bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple6 {
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
    /// Source then destination port, the first four transport bytes.
    pub ports: u32,
}

/// Size of [`Tuple6`], passed along with it.
pub const TUPLE6_SIZE: u32 = 36;
const _: () = assert!(size_of::<Tuple6>() == TUPLE6_SIZE as usize);

/// Size of the IPv4 member of `struct bpf_sock_tuple` (addresses, then
/// ports), passed with a [`Tuple6`] built by [`Tuple6::ipv4`].
pub const TUPLE4_SIZE: u32 = 12;

impl Tuple6 {
    /// The IPv4 member laid over the start of the same buffer: the lookup
    /// reads only [`TUPLE4_SIZE`] bytes, so one stack slot serves both
    /// families.
    #[inline(always)]
    pub const fn ipv4(saddr: u32, daddr: u32, ports: u32) -> Self {
        Tuple6 {
            saddr: [saddr, daddr, ports, 0],
            daddr: [0; 4],
            ports: 0,
        }
    }
}

/// `IPS_SRC_NAT` in `nf_conn.status`: the flow's source is translated.
pub const IPS_SRC_NAT: u64 = 1 << 4;
/// `IPS_DST_NAT` in `nf_conn.status`: the flow's destination is translated.
pub const IPS_DST_NAT: u64 = 1 << 5;
/// `IPS_SEEN_REPLY` in `nf_conn.status`: the kernel saw the flow's reply.
pub const IPS_SEEN_REPLY: u64 = 1 << 1;
/// `IPS_ASSURED` in `nf_conn.status`: for TCP, the handshake completed.
pub const IPS_ASSURED: u64 = 1 << 2;

/// Offset of the TCP flags byte in the TCP header.
pub const TCP_FLAGS_OFFSET: usize = 13;
/// TCP flags that open or close a connection: FIN, SYN, RST.
pub const TCP_CONTROL: u8 = 0x01 | 0x02 | 0x04;

/// The program's global holding the byte offset of `status` in the
/// running kernel's `struct nf_conn`, set by the loader from the kernel's
/// BTF (the layout depends on the kernel's configuration).
pub const STATUS_OFFSET_GLOBAL: &str = "NF_CONN_STATUS_OFFSET";

/// Whether a TCP segment with flags byte `tcp_flags` opens or closes a
/// connection (such segments always go through conntrack).
#[inline(always)]
pub const fn opens_or_closes(tcp_flags: u8) -> bool {
    tcp_flags & TCP_CONTROL != 0
}

/// Whether conntrack, holding a flow in state `status`, translates it. The
/// kernel sets these bits only for a binding that changes the tuple.
#[inline(always)]
pub const fn translated(status: u64) -> bool {
    status & (IPS_SRC_NAT | IPS_DST_NAT) != 0
}

/// Whether conntrack, holding a flow in state `status`, has seen it
/// established: for TCP the handshake, for UDP a reply.
#[inline(always)]
pub const fn established(l4proto: u8, status: u64) -> bool {
    match l4proto {
        crate::packet::proto::TCP => status & IPS_ASSURED != 0,
        crate::packet::proto::UDP => status & IPS_SEEN_REPLY != 0,
        _ => false,
    }
}

/// The kernel functions the programs call, resolved by the loader against
/// the running kernel's BTF.
pub const KFUNCS: [&str; 3] = ["bpf_skb_ct_lookup", "bpf_xdp_ct_lookup", "bpf_ct_release"];

/// Slots of the `FASTPATH_CFG` array.
pub mod cfg {
    /// 0 (the default): forward only flows conntrack has accepted and does
    /// not translate. 1: ignore netfilter (nothing on the node filters or
    /// translates forwarded traffic).
    pub const NETFILTER: u32 = 0;
}

/// Size of `FASTPATH_CFG`.
pub const CFG_SLOTS: u32 = 4;
/// [`cfg::NETFILTER`]: netfilter may act on forwarded traffic.
pub const NETFILTER_CHECK: u32 = 0;
/// [`cfg::NETFILTER`]: netfilter does not act on forwarded traffic.
pub const NETFILTER_IGNORE: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::proto;

    #[test]
    fn established_means_the_handshake_for_tcp_and_a_reply_for_udp() {
        assert!(established(proto::TCP, IPS_ASSURED | IPS_SEEN_REPLY));
        assert!(
            !established(proto::TCP, IPS_SEEN_REPLY),
            "handshake unfinished"
        );
        assert!(established(proto::UDP, IPS_SEEN_REPLY));
        assert!(!established(proto::UDP, 0));
        assert!(!established(proto::ICMPV6, IPS_ASSURED | IPS_SEEN_REPLY));
    }

    #[test]
    fn syn_fin_and_rst_open_or_close() {
        const ACK: u8 = 0x10;
        const PSH: u8 = 0x08;
        for control in [0x01, 0x02, 0x04] {
            assert!(opens_or_closes(control | ACK));
        }
        assert!(!opens_or_closes(ACK | PSH));
    }

    #[test]
    fn only_a_binding_that_changes_the_tuple_is_a_translation() {
        assert!(translated(IPS_DST_NAT | IPS_ASSURED));
        assert!(translated(IPS_SRC_NAT));
        // IPS_SRC_NAT_DONE and IPS_DST_NAT_DONE: NAT looked, changed nothing.
        assert!(!translated((1 << 7) | (1 << 8) | IPS_ASSURED));
    }
}
