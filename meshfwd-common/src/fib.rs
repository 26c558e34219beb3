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
//! In front of the IPv6 trie sits [`table`], a multibit trie compiled from
//! it by the writer: one array read per address byte instead of a walk over
//! trie nodes, so lookups stay cheap however many destinations are active.
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
/// Slots of the per-CPU pending-redirect flags, indexed by the egress
/// ifindex modulo this. Two egress devices of one node 256 ifindexes apart
/// share a slot, which only matters if both are flushed in one poll.
pub const PENDING_SLOTS: u32 = 256;

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
    /// A prefix on a shared segment (on-link, no next hop): hand the
    /// packet to the kernel, which resolves each destination's neighbour.
    pub const ON_LINK: u32 = 3;
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

/// Map hash `h` onto `0..n` by multiply and shift: as even as `h % n` for
/// a well-mixed hash, without a division on the per-packet path.
#[inline(always)]
pub const fn reduce(h: u32, n: u32) -> u32 {
    ((h as u64 * n as u64) >> 32) as u32
}

/// Return IPv4 address `v4` (a native-endian load of its wire bytes) as
/// the words of its IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), the
/// form IPv4 destinations take in the destination cache and the flow hash.
#[inline(always)]
pub const fn ipv4_mapped(v4: u32) -> [u32; 4] {
    [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), v4]
}

/// Return an address as four words in wire order, the way the fast path
/// loads it from a packet (native-endian loads of the wire bytes).
#[inline(always)]
pub fn addr_words(a: &[u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    for (word, chunk) in out.iter_mut().zip(a.chunks_exact(4)) {
        *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    out
}

/// Return the wire bytes of an address held as [`addr_words`].
#[inline(always)]
pub fn addr_bytes(a: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(a) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    out
}

/// Seed of the flow hash.
pub const HASH_SEED: u32 = 0x6B75_6265; // "kube"

/// Fold an address (four words in wire order) into one word; the rotations
/// keep equal words from cancelling out.
#[inline(always)]
pub const fn fold(a: &[u32; 4]) -> u32 {
    a[0] ^ a[1].rotate_left(8) ^ a[2].rotate_left(16) ^ a[3].rotate_left(24)
}

/// The ECMP flow hash of a packet: source and destination (as four words
/// in wire order), flow label, next header and the first four transport
/// bytes (both ports). Addresses are folded first, so the per-packet chain
/// is four multiplies instead of eleven.
#[inline(always)]
pub const fn flow_hash(
    src: &[u32; 4],
    dst: &[u32; 4],
    flow_label: u32,
    next_header: u8,
    ports: u32,
) -> u32 {
    let mut h = mix(HASH_SEED, fold(src));
    h = mix(h, fold(dst));
    h = mix(h, (flow_label & 0x000F_FFFF) | ((next_header as u32) << 20));
    h = mix(h, ports);
    finish(h)
}

/// The compiled IPv6 lookup table: a multibit trie with 8-bit strides and
/// leaf pushing (controlled prefix expansion), in one array map.
///
/// ```text
/// FIB6_TABLE_ROOT[0]  0: no table, use the LPM trie; 1 + r: region r is live
/// FIB6_TABLE_HEAD[r]  region r's shortcut: prefix, mask, level, group
/// FIB6_TABLE[r * REGION_ENTRIES + g * 256 + byte]  entry of group g
/// ```
///
/// The head skips the chain of groups every route of a cluster shares (a
/// /48 is six groups with one pointer each): an address under the head's
/// prefix starts at the head's group and level, any other at the root.
///
/// A lookup starts at group 0 of the live region with the address's first
/// byte; an entry is either a leaf (the FIB entry of the longest prefix
/// covering that range) or a pointer to the group for the next byte. A /64
/// takes at most eight reads. The writer builds the next table in the
/// other region and then flips the root: a lookup never sees a half-written
/// table. The trie stays authoritative: when the table would not fit in a
/// region, the root is set to 0 and the fast path walks the trie.
///
/// IPv4 has a table of its own (`FIB4_TABLE`, `FIB4_TABLE_HEAD`,
/// `FIB4_TABLE_ROOT`) in the same layout, built over IPv4-mapped addresses
/// (`::ffff:a.b.c.d`, a /24 being a /120): its head skips the twelve
/// mapped bytes and whatever the cluster's IPv4 prefixes share. It has far
/// fewer groups ([`GROUPS4`]): at most 65,536 IPv4 prefixes need at most
/// a group per /24 below the head.
pub mod table {
    use super::FibEntry;

    /// Groups (of 256 entries) per region of the IPv6 table.
    pub const GROUPS: u32 = 8_192;
    /// Entries per region (8 MiB of `u32`).
    pub const REGION_ENTRIES: u32 = GROUPS * 256;
    /// Regions: one live, one being written.
    pub const REGIONS: u32 = 2;
    /// Entries of the whole array map.
    pub const ENTRIES: u32 = REGION_ENTRIES * REGIONS;
    /// The same for the IPv4 table.
    pub const GROUPS4: u32 = 1_024;
    pub const REGION_ENTRIES4: u32 = GROUPS4 * 256;
    pub const ENTRIES4: u32 = REGION_ENTRIES4 * REGIONS;

    /// Entry bit: the low bits are a group index, not a leaf.
    pub const POINTER: u32 = 1 << 31;
    /// Leaf bits 24-27: the FIB entry's `kind`.
    const KIND_SHIFT: u32 = 24;
    /// Leaf bits 0-23: the FIB entry's group (or a pointer's group index).
    pub const INDEX_MASK: u32 = (1 << KIND_SHIFT) - 1;
    const _: () = assert!(super::GROUP_MAX_ENTRIES <= INDEX_MASK + 1);
    const _: () = assert!(GROUPS <= INDEX_MASK + 1);

    /// Encode a FIB entry as a leaf (`kind` 0, no route, encodes as 0).
    #[inline(always)]
    pub const fn leaf(entry: FibEntry) -> u32 {
        ((entry.kind & 0xF) << KIND_SHIFT) | (entry.group & INDEX_MASK)
    }

    /// Decode a leaf.
    #[inline(always)]
    pub const fn entry(leaf: u32) -> FibEntry {
        FibEntry {
            kind: (leaf >> KIND_SHIFT) & 0xF,
            group: leaf & INDEX_MASK,
        }
    }

    /// A region's shortcut past the groups all routes share. The all-zero
    /// head (an empty mask) matches every address and starts at the root.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Head {
        /// The shared leading bytes, as four words in wire order.
        pub prefix: [u32; 4],
        /// Which bits of `prefix` an address must match.
        pub mask: [u32; 4],
        /// The level (address byte) the walk starts at.
        pub level: u32,
        /// The group the walk starts at.
        pub group: u32,
    }

    impl Head {
        /// Return where a walk for `dst` (wire-order words) starts:
        /// (level, group).
        #[inline(always)]
        pub fn start(&self, dst: &[u32; 4]) -> (u32, u32) {
            let differs = ((dst[0] ^ self.prefix[0]) & self.mask[0])
                | ((dst[1] ^ self.prefix[1]) & self.mask[1])
                | ((dst[2] ^ self.prefix[2]) & self.mask[2])
                | ((dst[3] ^ self.prefix[3]) & self.mask[3]);
            if differs == 0 {
                (self.level, self.group)
            } else {
                (0, 0)
            }
        }
    }

    /// Return the pointer entry to group `g`.
    #[inline(always)]
    pub const fn pointer(g: u32) -> u32 {
        POINTER | (g & INDEX_MASK)
    }
}
