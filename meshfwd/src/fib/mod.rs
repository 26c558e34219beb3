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
    net::{IpAddr, Ipv6Addr},
};

use ipnet::IpNet;

pub mod dump;
pub mod kroute;
pub mod neigh;
pub mod plan;
pub mod table;
pub mod writer;
pub mod xdp_features;

pub use writer::{ApplyReport, FibWriter};

/// A failed step of the map writer, and what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    /// A map, netlink or socket request failed.
    #[error("{what}: {source}")]
    Failed {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading the maps back failed.
    #[error("reading the maps: {0}")]
    Read(#[from] aya::maps::MapError),
    #[error(transparent)]
    Dataplane(#[from] dataplane::Error),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// The kernel lacked something it should have had.
    #[error("{0}")]
    Kernel(String),
}

/// The map writer's result.
pub type Result<T, E = FibError> = std::result::Result<T, E>;

/// Say what was being done when a request failed.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Doing<T> for std::result::Result<T, E> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| FibError::Failed {
            what: what(),
            source: Box::new(source),
        })
    }
}

/// Something the kernel should have had and did not.
impl<T> Doing<T> for Option<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| FibError::Kernel(what()))
    }
}

/// Routing protocol id of kubermesh's routes in the kernel FIB (`proto
/// 198` in `ip -6 route`; unassigned in iproute2's `rt_protos`).
pub const RTPROT_KUBERMESH: u8 = 198;

/// A next hop as routing names it: a neighbour's (link-local) address on
/// an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHopKey {
    /// Egress interface.
    pub ifindex: u32,
    /// The neighbour's address on that link (usually `fe80::/10`); `::`
    /// for a prefix on the link itself (a shared segment's), which the
    /// kernel forwards.
    pub via: Ipv6Addr,
}

impl NextHopKey {
    /// Return whether this is the link itself rather than a neighbour.
    pub fn is_on_link(&self) -> bool {
        self.via.is_unspecified()
    }
}

impl fmt::Display for NextHopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%{}", self.via, self.ifindex)
    }
}

/// The desired forwarding state of a node.
///
/// Both families share the next hops: an IPv4 prefix goes via IPv6
/// neighbours too (`ip route ... via inet6 fe80::...`), so no link needs an
/// IPv4 address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Prefix -> ECMP next hops (at most 16 are used; an empty set means no
    /// route). A prefix with an on-link hop goes to the kernel only: the
    /// fast path hands its packets over (`ON_LINK`).
    pub routes: BTreeMap<IpNet, BTreeSet<NextHopKey>>,
    /// This node's own addresses: always handed to the kernel.
    pub local: BTreeSet<IpAddr>,
}

impl RouteTable {
    /// Add `prefix` via `hops`, replacing what it had.
    pub fn route(&mut self, prefix: impl Into<IpNet>, hops: impl IntoIterator<Item = NextHopKey>) {
        self.routes
            .insert(prefix.into(), hops.into_iter().collect());
    }
}
