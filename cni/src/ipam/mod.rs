//! Address management inside the plugin: each pod gets a /128 from the
//! node's pod prefix.
//!
//! The policy (which address next) is pure and lives here; the record of
//! who holds what lives on disk in [`store`], under a file lock, so many
//! plugin processes running at once never hand one address to two pods,
//! and neither does a reboot (the store outlives the namespaces it names).
//!
//! The first two addresses of the prefix are never handed out: `::0` is
//! the subnet-router anycast address (RFC 4291 2.6.1) and `::1` is the
//! node's own /128.

pub mod store;

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

pub use store::{Allocation, Store};

/// Return the host bits of `prefix`.
fn host_mask(prefix: &Ipv6Net) -> u128 {
    !u128::from(prefix.netmask())
}

/// Return the address at `offset` from the start of `prefix` (wrapping
/// inside it).
pub fn nth(prefix: &Ipv6Net, offset: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix.network()) | (offset & host_mask(prefix)))
}

/// Return the offset of `a` inside `prefix`.
pub fn offset(prefix: &Ipv6Net, a: Ipv6Addr) -> u128 {
    u128::from(a) & host_mask(prefix)
}

/// Return the number of addresses in `prefix`, saturating at `u128::MAX`
/// for ::/0.
pub fn size(prefix: &Ipv6Net) -> u128 {
    host_mask(prefix).saturating_add(1)
}

/// Offsets at the start of the prefix that are never allocated.
pub const RESERVED_OFFSETS: u128 = 2;

/// Return the number of addresses pods can get from `prefix`.
pub fn capacity(prefix: &Ipv6Net) -> u128 {
    size(prefix).saturating_sub(RESERVED_OFFSETS)
}

/// Pick the next free address after `last` (round robin, so a released
/// address is not reused at once and stale peers' traffic does not reach a
/// new pod), skipping `used` and the reserved start. `None` if full.
///
/// Bounded: among `used.len() + 1` consecutive candidates at least one is
/// free unless the whole range is taken, so the scan stops after that many.
pub fn pick(
    prefix: &Ipv6Net,
    used: &BTreeSet<Ipv6Addr>,
    last: Option<Ipv6Addr>,
) -> Option<Ipv6Addr> {
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
pub fn check_requested(prefix: &Ipv6Net, a: Ipv6Addr) -> Result<(), String> {
    if !prefix.contains(&a) {
        return Err(format!("{a} is outside the node's pod prefix {prefix}"));
    }
    if offset(prefix, a) < RESERVED_OFFSETS {
        return Err(format!(
            "{a} is reserved (subnet-router anycast or the node's own address)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv6Net {
        s.parse::<Ipv6Net>().unwrap().trunc()
    }

    fn a(s: &str) -> Ipv6Addr {
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
        assert!("fd00::/129".parse::<Ipv6Net>().is_err());
        assert!("fd00::".parse::<Ipv6Net>().is_err());
    }

    #[test]
    fn picks_round_robin_and_skips_reserved() {
        let x = p("fd00::/125");
        let mut used = BTreeSet::new();
        let mut last = None;
        let mut got = Vec::new();
        while let Some(next) = pick(&x, &used, last) {
            used.insert(next);
            last = Some(next);
            got.push(next.to_string());
        }
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
    fn requested_must_be_inside_and_unreserved() {
        let x = p("fd00::/64");
        assert!(check_requested(&x, a("fd00::9")).is_ok());
        assert!(check_requested(&x, a("fd00::1")).is_err());
        assert!(check_requested(&x, a("fd01::9")).is_err());
    }
}
