//! Settings and counters shared by the forwarding benchmark's eBPF helpers
//! (this crate's `bench-ebpf` program, built by `bench/build.rs`) and its
//! harness (`bench --bin forwarding`).
#![no_std]

/// Slots of the `BENCH_CFG` array.
pub mod cfg {
    /// ifindex the generator redirects into (its veth).
    pub const GEN_IFINDEX: u32 = 0;
    /// Number of distinct flows the generator cycles through.
    pub const FLOWS: u32 = 1;
    /// Number of destination prefixes the flows spread over.
    pub const PREFIXES: u32 = 2;
    /// Number of egress ports of the ceiling program.
    pub const PORTS: u32 = 3;
}

/// Slots of the per-CPU `BENCH_COUNT` array.
pub mod counter {
    /// Frames the generator produced.
    pub const GENERATED: u32 = 0;
    /// Frames the sink counted and dropped.
    pub const SUNK: u32 = 1;
}

/// Size of `BENCH_CFG`.
pub const CFG_SLOTS: u32 = 8;
/// Size of `BENCH_COUNT`.
pub const COUNTER_SLOTS: u32 = 4;
/// Most egress ports of the ceiling program.
pub const MAX_PORTS: u32 = 16;

/// Frame offset of the 16-bit group of the destination address that
/// carries the prefix number (bytes 6-7 of the address: `fd00:0:0:N::/64`).
pub const PREFIX_OFFSET: usize = 14 + 24 + 6;
/// Frame offset of the UDP source port.
pub const SPORT_OFFSET: usize = 14 + 40;

/// Length of the generator's frame template (`GEN_TEMPLATE`), which it
/// copies over every frame it sends: live-frames mode recycles pages
/// without resetting them, and the router rewrites MACs and hop limit.
pub const TEMPLATE_LEN: usize = 64;
