//! Address management inside the plugin: each pod gets a /128 from the
//! node's IPv6 pod prefix and, on a node with IPv4, a /32 from its IPv4
//! pod prefix.
//!
//! The policy (which address next) is pure and lives here, the same for
//! both families over the address's integer value; the record of who holds
//! what lives on disk in [`store`], under a file lock, so many plugin
//! processes running at once never hand one address to two pods, and
//! neither does a reboot (the store outlives the namespaces it names).
//!
//! The first two addresses of a prefix are never handed out: the first is
//! the subnet-router anycast address (RFC 4291 2.6.1) or the IPv4 network
//! address, the second is the node's own address. In IPv4 the last address
//! (the directed broadcast of the prefix) is not handed out either: nothing
//! on the node treats it specially, but software elsewhere may.

pub mod store;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

pub use store::{Allocation, Store};

/// Return an address as an integer (IPv4 in the low 32 bits).
fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Return the host bits of `prefix`.
fn host_mask(prefix: &IpNet) -> u128 {
    !bits(prefix.netmask())
        & match prefix {
            IpNet::V4(_) => u128::from(u32::MAX),
            IpNet::V6(_) => u128::MAX,
        }
}

/// Return the address at `offset` from the start of `prefix` (wrapping
/// inside it).
pub fn nth(prefix: &IpNet, offset: u128) -> IpAddr {
    let v = bits(prefix.network()) | (offset & host_mask(prefix));
    match prefix {
        // The mask keeps `v` inside 32 bits.
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// Return the offset of `a` inside `prefix`.
pub fn offset(prefix: &IpNet, a: IpAddr) -> u128 {
    bits(a) & host_mask(prefix)
}

/// Return the number of addresses in `prefix`, saturating at `u128::MAX`
/// for ::/0.
pub fn size(prefix: &IpNet) -> u128 {
    host_mask(prefix).saturating_add(1)
}

/// Offsets at the start of a prefix that are never allocated.
pub const RESERVED_OFFSETS: u128 = 2;

/// Return how many addresses at the end of `prefix` are never allocated.
fn reserved_tail(prefix: &IpNet) -> u128 {
    match prefix {
        IpNet::V4(_) => 1,
        IpNet::V6(_) => 0,
    }
}

/// Return the number of addresses pods can get from `prefix`.
pub fn capacity(prefix: &IpNet) -> u128 {
    size(prefix).saturating_sub(RESERVED_OFFSETS + reserved_tail(prefix))
}

/// Pick the next free address after `last` (round robin, so a released
/// address is not reused at once and stale peers' traffic does not reach a
/// new pod), skipping `used` and the reserved ends. `None` if full.
///
/// Bounded: among `used.len() + 1` consecutive candidates at least one is
/// free unless the whole range is taken, so the scan stops after that many.
pub fn pick(prefix: &IpNet, used: &BTreeSet<IpAddr>, last: Option<IpAddr>) -> Option<IpAddr> {
    let cap = capacity(prefix);
    if cap == 0 {
        return None;
    }
    let start = match last {
        Some(a) if prefix.contains(&a) => offset(prefix, a)
            .saturating_sub(RESERVED_OFFSETS)
            .wrapping_add(1),
        _ => 0,
    };
    let steps = cap.min(used.len() as u128 + 1);
    (0..steps)
        .map(|i| nth(prefix, RESERVED_OFFSETS + (start.wrapping_add(i) % cap)))
        .find(|a| !used.contains(a))
}

/// Return why `a` may not be requested explicitly, if it may not.
pub fn check_requested(prefix: &IpNet, a: IpAddr) -> Result<(), String> {
    if !prefix.contains(&a) {
        return Err(format!("{a} is outside the node's pod prefix {prefix}"));
    }
    let at = offset(prefix, a);
    if at < RESERVED_OFFSETS {
        return Err(format!(
            "{a} is reserved (the prefix's first address or the node's own address)"
        ));
    }
    if at >= size(prefix) - reserved_tail(prefix) {
        return Err(format!("{a} is reserved (the prefix's broadcast address)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse::<IpNet>().unwrap().trunc()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_basics() {
        let x = p("fd42:1:2:3::77/64");
        assert_eq!(x.to_string(), "fd42:1:2:3::/64");
        assert!(x.contains(&a("fd42:1:2:3:ffff::1")));
        assert!(!x.contains(&a("fd42:1:2:4::1")));
        assert_eq!(nth(&x, 5), a("fd42:1:2:3::5"));
        assert_eq!(offset(&x, a("fd42:1:2:3::1:5")), 0x1_0005);
        assert_eq!(capacity(&p("fd00::/125")), 6);
        assert_eq!(size(&p("::/0")), u128::MAX);
        assert!("fd00::/129".parse::<IpNet>().is_err());
        assert!("fd00::".parse::<IpNet>().is_err());
    }

    /// Pick from `x` until it is full: (what came out, in order; the used
    /// set; the last pick).
    fn drain(x: &IpNet) -> (Vec<String>, BTreeSet<IpAddr>, Option<IpAddr>) {
        let mut used = BTreeSet::new();
        let mut last = None;
        let mut got = Vec::new();
        while let Some(next) = pick(x, &used, last) {
            used.insert(next);
            last = Some(next);
            got.push(next.to_string());
        }
        (got, used, last)
    }

    #[test]
    fn picks_round_robin_and_skips_reserved() {
        let x = p("fd00::/125");
        let (got, mut used, last) = drain(&x);
        assert_eq!(
            got,
            [
                "fd00::2", "fd00::3", "fd00::4", "fd00::5", "fd00::6", "fd00::7"
            ]
        );
        // Release one in the middle: it comes back only once the rest is taken.
        used.remove(&a("fd00::4"));
        assert_eq!(pick(&x, &used, last), Some(a("fd00::4")));
        used.remove(&a("fd00::3"));
        used.remove(&a("fd00::6"));
        assert_eq!(pick(&x, &used, Some(a("fd00::3"))), Some(a("fd00::4")));
    }

    #[test]
    fn ipv4_skips_network_node_and_broadcast() {
        let x = p("198.18.7.0/29");
        assert_eq!(capacity(&x), 5);
        let (got, ..) = drain(&x);
        assert_eq!(
            got,
            [
                "198.18.7.2",
                "198.18.7.3",
                "198.18.7.4",
                "198.18.7.5",
                "198.18.7.6"
            ]
        );
        assert_eq!(size(&p("0.0.0.0/0")), 1 << 32);
        assert_eq!(nth(&p("198.18.7.0/24"), 300), a("198.18.7.44"));
        assert!(check_requested(&x, a("198.18.7.6")).is_ok());
        for bad in ["198.18.7.0", "198.18.7.1", "198.18.7.7", "198.18.8.2"] {
            assert!(check_requested(&x, a(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn requested_must_be_inside_and_unreserved() {
        let x = p("fd00::/64");
        assert!(check_requested(&x, a("fd00::9")).is_ok());
        assert!(check_requested(&x, a("fd00::1")).is_err());
        assert!(check_requested(&x, a("fd01::9")).is_err());
    }
}
