//! The forwarding tables read by the XDP fast path and written by the
//! agent's map writer (`meshfwd::fib`).
//!
//! Three levels, so a route change is one map write and a link failure is
//! one map write:
//!
//! ```text
//! FIB_V6 / FIB_V4 (LPM trie)  prefix  -> FibEntry { kind, group }
//! NH_GROUPS (array)           group   -> NextHopGroup { len, members[16] }
//! NEXT_HOPS (array)           next hop -> NextHop { ifindex, mtu, MACs, flags }
//! EGRESS_DEVS (devmap hash)   ifindex -> ifindex (the XDP_REDIRECT target)
//! ```
//!
//! Groups are immutable once published and shared by every prefix with the
//! same set of next hops; a prefix moves to another group with a single
//! trie update (make-before-break). A next hop's liveness and MAC live in
//! the next hop itself, so fast reroute and neighbour changes touch one
//! entry whatever the number of prefixes.
//!
//! The IPv4 FIB uses the same groups and next hops: IPv4 prefixes are
//! routed over the IPv6 mesh to the neighbour's MAC (RFC 8950 style), so a
//! next hop never needs an IPv4 address.

/// Capacity of the IPv6 FIB (prefixes).
pub const FIB_V6_MAX_ENTRIES: u32 = 131_072;
/// Capacity of the IPv4 FIB (prefixes).
pub const FIB_V4_MAX_ENTRIES: u32 = 65_536;
/// Capacity of the next-hop group table; slot 0 is never used.
pub const GROUP_MAX_ENTRIES: u32 = 16_384;
/// Capacity of the next-hop table; slot 0 is never used.
pub const NEXT_HOP_MAX_ENTRIES: u32 = 4_096;
/// Members per next-hop group (the widest ECMP fan-out).
pub const GROUP_MAX_MEMBERS: usize = 16;
/// Capacity of the egress device map.
pub const EGRESS_DEV_MAX_ENTRIES: u32 = 1_024;

/// Capacity of the per-CPU destination cache (exact destination -> FIB
/// entry), which spares most packets the LPM walk.
pub const DST_CACHE_MAX_ENTRIES: u32 = 32_768;

/// A destination cache entry: the FIB entry found for one destination,
/// valid while `generation` equals `FIB_GEN[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedRoute {
    /// The LPM result (`kind` 0: no route).
    pub entry: FibEntry,
    /// `FIB_GEN[0]` when the entry was looked up.
    pub generation: u32,
}

/// What a FIB entry tells the fast path to do.
pub mod kind {
    /// Forward through the entry's next-hop group.
    pub const FORWARD: u32 = 1;
    /// An address of this node: hand the packet to the kernel.
    pub const LOCAL: u32 = 2;
}

/// Value of the FIB tries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibEntry {
    /// One of [`kind`].
    pub kind: u32,
    /// Index into `NH_GROUPS` (0 for [`kind::LOCAL`]).
    pub group: u32,
}

/// An ECMP set: indices into `NEXT_HOPS`, the first `len` of `members`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHopGroup {
    /// Number of valid members (1..=16).
    pub len: u32,
    /// Next-hop ids; entries at and past `len` are 0.
    pub members: [u32; GROUP_MAX_MEMBERS],
}

/// Bits of [`NextHop::flags`].
pub mod nh_flags {
    /// The link to this next hop is up; clear it to reroute its flows.
    pub const ALIVE: u32 = 1;
    /// `dst_mac` holds the neighbour's resolved MAC.
    pub const MAC_VALID: u32 = 2;
}

/// One neighbour on one interface, as the fast path needs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface (also the key in `EGRESS_DEVS`).
    pub ifindex: u32,
    /// Egress MTU: larger IP packets go to the kernel for Packet Too Big.
    pub mtu: u32,
    /// The neighbour's MAC (valid when [`nh_flags::MAC_VALID`] is set).
    pub dst_mac: [u8; 6],
    /// The egress interface's MAC.
    pub src_mac: [u8; 6],
    /// [`nh_flags`] bits.
    pub flags: u32,
}

impl NextHop {
    /// Return whether the fast path may use this next hop at all.
    pub const fn is_alive(&self) -> bool {
        self.flags & nh_flags::ALIVE != 0
    }

    /// Return whether the neighbour's MAC is known.
    pub const fn has_mac(&self) -> bool {
        self.flags & nh_flags::MAC_VALID != 0
    }
}

/// Mix one 32-bit word into a running flow hash.
///
/// Cheap enough for the per-packet path (a multiply and a rotate) and good
/// enough to spread flows evenly once [`finish`] has run.
#[inline(always)]
pub const fn mix(hash: u32, word: u32) -> u32 {
    (hash ^ word).wrapping_mul(0x9E37_79B1).rotate_left(13)
}

/// Finalise a flow hash (the murmur3 avalanche).
#[inline(always)]
pub const fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    h
}

/// Derive the second hash used to pick among live members when the first
/// choice is dead (independent of the first, so the dead member's flows
/// spread over all survivors).
#[inline(always)]
pub const fn rehash(h: u32) -> u32 {
    finish(h ^ 0x5BD1_E995)
}

/// Seed of the flow hash.
pub const HASH_SEED: u32 = 0x6B75_6265; // "kube"
