//! What the eBPF programs (`meshfwd-ebpf`) and user space (`dataplane`,
//! `meshfwd`, `cni`) must agree on: map layouts and pin names, and the pure
//! functions both sides run (packet classification, flow hash, the stable
//! hash names are derived from).
//!
//! Map values are `#[repr(C)]` with explicit padding and no `bool`, so the
//! kernel, the verifier and both sides of the map agree byte for byte.
#![cfg_attr(not(test), no_std)]

pub mod bfd;
pub mod conntrack;
pub mod endpoint;
pub mod fib;
pub mod hash;
pub mod packet;

/// Names under which the maps are pinned, below the agent's bpffs directory.
pub mod pin {
    /// Default bpffs directory for the node's pinned objects.
    pub const DEFAULT_DIR: &str = "/sys/fs/bpf/kubermesh";
    /// Per-CPU verdict counters of the XDP program.
    pub const STATS: &str = "MESH_STATS";
    /// IPv6 FIB (LPM trie): prefix -> [`crate::fib::FibEntry`].
    pub const FIB_V6: &str = "FIB_V6";
    /// IPv4 FIB (LPM trie): prefix -> [`crate::fib::FibEntry`].
    pub const FIB_V4: &str = "FIB_V4";
    /// Next-hop groups (array): id -> [`crate::fib::NextHopGroup`].
    pub const NH_GROUPS: &str = "NH_GROUPS";
    /// Next hops (array): id -> [`crate::fib::NextHop`].
    pub const NEXT_HOPS: &str = "NEXT_HOPS";
    /// Egress interfaces (devmap hash): ifindex -> ifindex.
    pub const EGRESS_DEVS: &str = "EGRESS_DEVS";
    /// FIB generation (array of one u32), bumped by the writer whenever a
    /// FIB entry changes: it invalidates the per-CPU destination cache.
    pub const FIB_GEN: &str = "FIB_GEN";
    /// Per-CPU destination cache (LRU hash): dst -> cached FIB entry.
    pub const DST_CACHE: &str = "DST_CACHE";
    /// Compiled IPv6 lookup table (array): see [`crate::fib::table`].
    pub const FIB6_TABLE: &str = "FIB6_TABLE";
    /// Which region of [`FIB6_TABLE`] is live (array of one u32).
    pub const FIB6_TABLE_ROOT: &str = "FIB6_TABLE_ROOT";
    /// Each region's shortcut (array of two [`crate::fib::table::Head`]).
    pub const FIB6_TABLE_HEAD: &str = "FIB6_TABLE_HEAD";
    /// Compiled IPv4 lookup table, its root and heads: the same layout
    /// over IPv4-mapped addresses, with fewer groups (see
    /// [`crate::fib::table`]).
    pub const FIB4_TABLE: &str = "FIB4_TABLE";
    pub const FIB4_TABLE_ROOT: &str = "FIB4_TABLE_ROOT";
    pub const FIB4_TABLE_HEAD: &str = "FIB4_TABLE_HEAD";
    /// Fast-path settings (array): see [`crate::conntrack::cfg`].
    pub const FASTPATH_CFG: &str = "FASTPATH_CFG";
    /// Redirects queued and not yet flushed (per-CPU array of
    /// [`crate::fib::PENDING_SLOTS`] flags, by egress ifindex): how the
    /// tracepoints tell this node's flushes from other namespaces'.
    pub const REDIRECT_PENDING: &str = "REDIRECT_PENDING";
    /// Redirected frames the egress device did not take (per-CPU hash):
    /// ifindex -> count.
    pub const REDIRECT_FAILS: &str = "REDIRECT_FAILS";
    /// BFD sessions the XDP program answers while the agent is away (hash):
    /// local discriminator -> [`crate::bfd::ReflectSession`].
    pub const BFD_SESSIONS: &str = "BFD_SESSIONS";
    /// The BFD thread's heartbeat (array of one u64, CLOCK_MONOTONIC ns).
    pub const BFD_HEARTBEAT: &str = "BFD_HEARTBEAT";
    /// Every map of the object (the forwarding maps and the endpoints),
    /// pinned by every process that loads it.
    pub const ALL: [&str; 20] = [
        STATS,
        FIB_V6,
        FIB_V4,
        NH_GROUPS,
        NEXT_HOPS,
        EGRESS_DEVS,
        FIB_GEN,
        DST_CACHE,
        FIB6_TABLE,
        FIB6_TABLE_ROOT,
        FIB6_TABLE_HEAD,
        FIB4_TABLE,
        FIB4_TABLE_ROOT,
        FIB4_TABLE_HEAD,
        FASTPATH_CFG,
        REDIRECT_PENDING,
        REDIRECT_FAILS,
        BFD_SESSIONS,
        BFD_HEARTBEAT,
        crate::endpoint::PIN,
    ];
}

/// Verdict counters kept per CPU by the XDP program, indexed by [`Stat`].
pub mod stats {
    /// Index into the per-CPU statistics array.
    ///
    /// Indices 0-8 count XDP's classes and verdicts; 9-25 the reason
    /// behind each `XDP_PASS` (exactly one per passed frame) and the fast
    /// path's notable events; 26-31 what the TC programs did with pods'
    /// traffic; from 32 on, later additions.
    #[repr(u32)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Stat {
        /// Every frame the program saw.
        Rx = 0,
        /// IPv6 frames that parsed cleanly.
        Ipv6 = 1,
        /// Frames that are neither IPv6 nor IPv4 (ARP, LLDP, ...); named
        /// `non_ipv6` from before the fast path took IPv4.
        NonIpv6 = 2,
        /// Frames too short for the header they claim, or not IPv6 version 6.
        Malformed = 3,
        /// Frames handed to the kernel (`XDP_PASS`).
        Pass = 4,
        /// Frames dropped (`XDP_DROP`).
        Drop = 5,
        /// Frames forwarded by the fast path (`XDP_REDIRECT`).
        Redirect = 6,
        /// Frames bounced back out of the ingress NIC (`XDP_TX`).
        Tx = 7,
        /// Redirects the kernel refused.
        Aborted = 8,
        /// Passed: multicast destination or source.
        Multicast = 9,
        /// Passed: link-local source or destination.
        LinkLocal = 10,
        /// Passed: unspecified or loopback address.
        BadAddress = 11,
        /// Passed: ND, RS, RA, redirect or MLD message.
        NdpMld = 12,
        /// Passed: a Hop-by-Hop Options header follows.
        HopByHop = 13,
        /// Passed: hop limit <= 1 (the kernel sends Time Exceeded).
        HopLimit = 14,
        /// Passed: an address of this node.
        Local = 15,
        /// Passed: no FIB entry covers the destination.
        NoRoute = 16,
        /// Passed: every member of the group is dead.
        NoLiveNextHop = 17,
        /// Passed: the chosen next hop's MAC is not resolved yet.
        NoNeighbour = 18,
        /// Passed: larger than the egress MTU (the kernel sends Packet Too Big).
        TooBig = 19,
        /// Passed: the egress interface is not in the devmap.
        NoEgressDev = 20,
        /// Passed: the map entries disagree (group or next hop missing).
        Inconsistent = 21,
        /// Event: the flow's first-choice member was dead and it was re-hashed.
        Rehashed = 22,
        /// Passed: not TCP or UDP, which conntrack cannot be asked about
        /// (with the netfilter check on).
        Untracked = 23,
        /// Passed: conntrack has not accepted the flow (yet).
        NewFlow = 24,
        /// Passed: conntrack translates the flow (NAT).
        Translated = 25,
        /// TC: a pod's packet sent straight out of a mesh NIC.
        TcPodToMesh = 26,
        /// TC: a pod's packet handed straight into another local pod.
        TcPodToPod = 27,
        /// TC: a packet from the mesh handed straight into a local pod.
        TcMeshToPod = 28,
        /// TC, left to the kernel: not TCP or UDP.
        TcUntracked = 29,
        /// TC, left to the kernel: conntrack has not accepted the flow.
        TcNewFlow = 30,
        /// TC, left to the kernel: conntrack translates the flow.
        TcTranslated = 31,
        /// Passed: the destination is on a shared segment (on-link); the
        /// kernel resolves its neighbour.
        OnLink = 32,
        /// Redirected frames the egress device did not take (its driver
        /// refused them or its queue was full); counted by the tracepoint
        /// programs, also in [`crate::pin::REDIRECT_FAILS`] per device.
        RedirectFailed = 33,
        /// XDP_TX: a BFD packet answered for the agent while it is away
        /// (see [`crate::bfd`]).
        BfdAnswered = 34,
        /// IPv4 frames, the counterpart of [`Stat::Ipv6`].
        Ipv4 = 35,
        /// Passed: an IPv4 header with options (RFC 1812 5.2.4).
        Ipv4Options = 36,
        /// Passed: an IPv4 fragment.
        Fragment = 37,
        /// Passed: an IPv4 header checksum that does not verify (the
        /// kernel drops and counts it).
        BadChecksum = 38,
    }

    /// Number of slots in the statistics array (room to grow without a
    /// map layout change).
    pub const MAX_STATS: u32 = 64;

    impl Stat {
        /// Every counter, in index order.
        pub const ALL: [Stat; 39] = [
            Stat::Rx,
            Stat::Ipv6,
            Stat::NonIpv6,
            Stat::Malformed,
            Stat::Pass,
            Stat::Drop,
            Stat::Redirect,
            Stat::Tx,
            Stat::Aborted,
            Stat::Multicast,
            Stat::LinkLocal,
            Stat::BadAddress,
            Stat::NdpMld,
            Stat::HopByHop,
            Stat::HopLimit,
            Stat::Local,
            Stat::NoRoute,
            Stat::NoLiveNextHop,
            Stat::NoNeighbour,
            Stat::TooBig,
            Stat::NoEgressDev,
            Stat::Inconsistent,
            Stat::Rehashed,
            Stat::Untracked,
            Stat::NewFlow,
            Stat::Translated,
            Stat::TcPodToMesh,
            Stat::TcPodToPod,
            Stat::TcMeshToPod,
            Stat::TcUntracked,
            Stat::TcNewFlow,
            Stat::TcTranslated,
            Stat::OnLink,
            Stat::RedirectFailed,
            Stat::BfdAnswered,
            Stat::Ipv4,
            Stat::Ipv4Options,
            Stat::Fragment,
            Stat::BadChecksum,
        ];

        /// Return the counter's stable name (used in JSON output).
        pub const fn name(self) -> &'static str {
            match self {
                Stat::Rx => "rx",
                Stat::Ipv6 => "ipv6",
                Stat::NonIpv6 => "non_ipv6",
                Stat::Malformed => "malformed",
                Stat::Pass => "pass",
                Stat::Drop => "drop",
                Stat::Redirect => "redirect",
                Stat::Tx => "tx",
                Stat::Aborted => "aborted",
                Stat::Multicast => "pass_multicast",
                Stat::LinkLocal => "pass_link_local",
                Stat::BadAddress => "pass_bad_address",
                Stat::NdpMld => "pass_ndp_mld",
                Stat::HopByHop => "pass_hop_by_hop",
                Stat::HopLimit => "pass_hop_limit",
                Stat::Local => "pass_local",
                Stat::NoRoute => "pass_no_route",
                Stat::NoLiveNextHop => "pass_no_live_next_hop",
                Stat::NoNeighbour => "pass_no_neighbour",
                Stat::TooBig => "pass_too_big",
                Stat::NoEgressDev => "pass_no_egress_dev",
                Stat::Inconsistent => "pass_inconsistent",
                Stat::Rehashed => "rehashed",
                Stat::Untracked => "pass_untracked",
                Stat::NewFlow => "pass_new_flow",
                Stat::Translated => "pass_translated",
                Stat::TcPodToMesh => "tc_pod_to_mesh",
                Stat::TcPodToPod => "tc_pod_to_pod",
                Stat::TcMeshToPod => "tc_mesh_to_pod",
                Stat::TcUntracked => "tc_kernel_untracked",
                Stat::TcNewFlow => "tc_kernel_new_flow",
                Stat::TcTranslated => "tc_kernel_translated",
                Stat::OnLink => "pass_on_link",
                Stat::RedirectFailed => "redirect_failed",
                Stat::BfdAnswered => "bfd_answered",
                Stat::Ipv4 => "ipv4",
                Stat::Ipv4Options => "pass_ipv4_options",
                Stat::Fragment => "pass_fragment",
                Stat::BadChecksum => "pass_bad_checksum",
            }
        }
    }
}

/// `aya::Pod` for the map values, so user space can read and write them.
#[cfg(feature = "user")]
mod pod {
    use crate::bfd::ReflectSession;
    use crate::fib::{CachedRoute, FibEntry, NextHop, NextHopGroup, table::Head};

    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    // SAFETY: each type is `#[repr(C)]`, made only of integers and byte
    // arrays with no implicit padding (checked by the size asserts below),
    // so every bit pattern is valid and no byte is uninitialised.
    mod impls {
        use super::*;
        unsafe impl aya::Pod for FibEntry {}
        unsafe impl aya::Pod for NextHopGroup {}
        unsafe impl aya::Pod for NextHop {}
        unsafe impl aya::Pod for CachedRoute {}
        unsafe impl aya::Pod for Head {}
        unsafe impl aya::Pod for ReflectSession {}
    }

    const _: () = assert!(size_of::<FibEntry>() == 8);
    const _: () = assert!(size_of::<NextHopGroup>() == 68);
    const _: () = assert!(size_of::<NextHop>() == 24);
    const _: () = assert!(size_of::<CachedRoute>() == 12);
    const _: () = assert!(size_of::<Head>() == 40);
}
