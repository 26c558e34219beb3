//! Settings and counters shared by the forwarding benchmark's eBPF helpers
//! (this crate's `bench-ebpf` program, built by `bench/build.rs`) and its
//! harness (`bench --bin forwarding`).
#![no_std]

/// Slots of the `BENCH_CFG` array.
pub mod cfg {
    /// Set to 1 to stop the reflector: it drops (and counts) what arrives.
    pub const STOP: u32 = 0;
    /// Number of egress ports of the ceiling program.
    pub const PORTS: u32 = 3;
}

/// Slots of the per-CPU `BENCH_COUNT` array.
pub mod counter {
    /// Frames the router delivered to the reflector (each one forwarded).
    pub const FORWARDED: u32 = 0;
    /// Frames the reflector dropped after the stop: those still circulating.
    pub const DRAINED: u32 = 1;
    /// The reflector's next destination prefix (a cursor, not a count).
    pub const PREFIX_CURSOR: u32 = 2;
}

/// Size of `BENCH_CFG`.
pub const CFG_SLOTS: u32 = 8;
/// Size of `BENCH_COUNT`.
pub const COUNTER_SLOTS: u32 = 4;
/// Most egress ports of the ceiling program.
pub const MAX_PORTS: u32 = 16;

/// Frame offset of the 32 bits of the destination address that carry the
/// prefix number (bytes 4-7 of the address: `fd00:0:H:L::/64` for number
/// `H << 16 | L`).
pub const PREFIX_OFFSET: usize = 14 + 24 + 4;
/// Frame offset of the IPv6 hop limit.
pub const HOP_LIMIT_OFFSET: usize = 14 + 7;
/// Frame offset of the UDP source port.
pub const SPORT_OFFSET: usize = 14 + 40;
/// The shortest frame the reflector takes: Ethernet, IPv6 and UDP headers.
pub const MIN_FRAME: usize = 14 + 40 + 8;

/// The IPv4 frames' offsets (no options): the TTL, the header checksum,
/// the destination address (which carries the prefix number) and the UDP
/// source port.
pub mod ipv4 {
    /// Frame offset of the IPv4 header.
    pub const HEADER: usize = 14;
    pub const TTL_OFFSET: usize = HEADER + 8;
    pub const CHECKSUM_OFFSET: usize = HEADER + 10;
    pub const DST_OFFSET: usize = HEADER + 16;
    pub const SPORT_OFFSET: usize = HEADER + 20;
    /// The benchmark's IPv4 space (`198.18.0.0/15`): prefix `n` of length
    /// `32 - shift` is `BASE + (n << shift)`.
    pub const BASE: u32 = 0xC612_0000;
    /// Addresses in the space.
    pub const SPACE: u32 = 1 << 17;

    /// The address the reflector sends prefix `n`'s frames to: the first
    /// host of the prefix.
    pub const fn host(n: u32, shift: u32) -> u32 {
        BASE + (n << shift) + if shift > 0 { 1 } else { 0 }
    }
}

/// The address of prefix number `n`: `fd00:0:H:L::` (its /64 is routed).
pub const fn prefix_groups(n: u32) -> [u16; 2] {
    [(n >> 16) as u16, n as u16]
}
