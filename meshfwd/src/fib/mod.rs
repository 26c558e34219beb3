//! The map writer: turns a desired route table (prefix -> next hops, each
//! an interface and a neighbour's link-local address) into the XDP fast
//! path's maps and the kernel's FIB, with the smallest change.
//!
//! - [`plan`]: pure planner, desired table -> ordered map ops
//!   (make-before-break, shared reference-counted groups);
//! - [`neigh`]: the kernel's neighbour table and links over rtnetlink
//!   (MACs, MTUs, resolution, events);
//! - [`kroute`]: the same routes in the kernel FIB under
//!   [`RTPROT_KUBERMESH`], so host traffic, ICMPv6 errors and `ip -6 route`
//!   agree with the fast path;
//! - [`table`]: the multibit lookup table compiled from the FIB, which the
//!   XDP program reads instead of walking the trie;
//! - [`writer`]: [`FibWriter`], which applies plans to the maps, fills in
//!   next hops' MACs and keeps them fresh, and flips alive flags.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv6Addr,
    str::FromStr,
};

pub mod dump;
pub mod kroute;
pub mod neigh;
pub mod plan;
pub mod table;
pub mod writer;

pub use writer::{ApplyReport, FibWriter};

/// Routing protocol id of kubermesh's routes in the kernel FIB (`proto
/// 198` in `ip -6 route`; unassigned in iproute2's `rt_protos`).
pub const RTPROT_KUBERMESH: u8 = 198;

/// An IPv6 prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix6 {
    addr: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub len: u8,
}

impl Prefix6 {
    /// Return the prefix `addr/len` (host bits cleared, `len` capped at 128).
    pub fn new(addr: Ipv6Addr, len: u8) -> Self {
        let len = len.min(128);
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        Prefix6 {
            addr: Ipv6Addr::from(u128::from(addr) & mask),
            len,
        }
    }

    /// Return the /128 for one address.
    pub fn host_route(addr: Ipv6Addr) -> Self {
        Prefix6 { addr, len: 128 }
    }

    /// Return the network address.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// Return the network address (the host itself for a /128).
    pub fn host(&self) -> Ipv6Addr {
        self.addr
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a prefix did not parse.
#[derive(Debug, thiserror::Error)]
#[error("not an IPv6 prefix (ADDR/LEN): {0:?}")]
pub struct BadPrefix(String);

impl FromStr for Prefix6 {
    type Err = BadPrefix;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPrefix(s.to_string());
        let (addr, len) = s.split_once('/').unwrap_or((s, "128"));
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > 128 {
            return Err(bad());
        }
        Ok(Prefix6::new(addr, len))
    }
}

/// A next hop as routing names it: a neighbour's (link-local) address on
/// an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHopKey {
    /// Egress interface.
    pub ifindex: u32,
    /// The neighbour's address on that link (usually `fe80::/10`).
    pub via: Ipv6Addr,
}

impl fmt::Display for NextHopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%{}", self.via, self.ifindex)
    }
}

/// The desired forwarding state of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Prefix -> ECMP next hops (at most 16 are used; an empty set means no
    /// route).
    pub routes: BTreeMap<Prefix6, BTreeSet<NextHopKey>>,
    /// This node's own addresses: always handed to the kernel.
    pub local: BTreeSet<Ipv6Addr>,
}

impl RouteTable {
    /// Add `prefix` via `hops`, replacing what it had.
    pub fn route(&mut self, prefix: Prefix6, hops: impl IntoIterator<Item = NextHopKey>) {
        self.routes.insert(prefix, hops.into_iter().collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_clear_host_bits() {
        let p: Prefix6 = "2001:db8:1:2::5/48".parse().unwrap();
        assert_eq!(p.to_string(), "2001:db8:1::/48");
        assert_eq!("fd00::1".parse::<Prefix6>().unwrap().len, 128);
        assert_eq!("::/0".parse::<Prefix6>().unwrap().to_string(), "::/0");
        assert!("2001:db8::/129".parse::<Prefix6>().is_err());
        assert!("10.0.0.0/8".parse::<Prefix6>().is_err());
    }
}
