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
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

pub use store::{Allocation, Store};

/// An IPv6 prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix6 {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Prefix6 {
    /// Return the prefix, host bits cleared; `None` if `len > 128`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Self> {
        (len <= 128).then(|| Prefix6 {
            addr: Ipv6Addr::from(u128::from(addr) & mask(len)),
            len,
        })
    }

    /// Return whether `a` lies inside the prefix.
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        u128::from(a) & mask(self.len) == u128::from(self.addr)
    }

    /// Return the address at `offset` from the start (wrapping inside).
    pub fn nth(&self, offset: u128) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | (offset & !mask(self.len)))
    }

    /// Return the offset of `a` inside the prefix.
    pub fn offset(&self, a: Ipv6Addr) -> u128 {
        u128::from(a) & !mask(self.len)
    }

    /// Return the number of addresses, saturating at `u128::MAX` for ::/0.
    pub fn size(&self) -> u128 {
        if self.len == 0 {
            u128::MAX
        } else {
            1u128 << (128 - self.len)
        }
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix6 {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/LENGTH"))?;
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv6 address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("{l:?} is not a prefix length"))?;
        Prefix6::new(addr, len).ok_or_else(|| format!("prefix length {len} is over 128"))
    }
}

/// Offsets at the start of the prefix that are never allocated.
pub const RESERVED_OFFSETS: u128 = 2;

/// Return the number of addresses pods can get from `prefix`.
pub fn capacity(prefix: &Prefix6) -> u128 {
    prefix.size().saturating_sub(RESERVED_OFFSETS)
}

/// Pick the next free address after `last` (round robin, so a released
/// address is not reused at once and stale peers' traffic does not reach a
/// new pod), skipping `used` and the reserved start. `None` if full.
///
/// Bounded: among `used.len() + 1` consecutive candidates at least one is
/// free unless the whole range is taken, so the scan stops after that many.
pub fn pick(
    prefix: &Prefix6,
    used: &BTreeSet<Ipv6Addr>,
    last: Option<Ipv6Addr>,
) -> Option<Ipv6Addr> {
    let cap = capacity(prefix);
    if cap == 0 {
        return None;
    }
    let start = match last {
        Some(a) if prefix.contains(a) => prefix
            .offset(a)
            .saturating_sub(RESERVED_OFFSETS)
            .wrapping_add(1),
        _ => 0,
    };
    let steps = cap.min(used.len() as u128 + 1);
    (0..steps)
        .map(|i| prefix.nth(RESERVED_OFFSETS + (start.wrapping_add(i) % cap)))
        .find(|a| !used.contains(a))
}

/// Return why `a` may not be requested explicitly, if it may not.
pub fn check_requested(prefix: &Prefix6, a: Ipv6Addr) -> Result<(), String> {
    if !prefix.contains(a) {
        return Err(format!("{a} is outside the node's pod prefix {prefix}"));
    }
    if prefix.offset(a) < RESERVED_OFFSETS {
        return Err(format!(
            "{a} is reserved (subnet-router anycast or the node's own address)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix6 {
        s.parse().unwrap()
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_basics() {
        let x = p("fd42:1:2:3::77/64");
        assert_eq!(x.to_string(), "fd42:1:2:3::/64");
        assert!(x.contains(a("fd42:1:2:3:ffff::1")));
        assert!(!x.contains(a("fd42:1:2:4::1")));
        assert_eq!(x.nth(5), a("fd42:1:2:3::5"));
        assert_eq!(capacity(&p("fd00::/125")), 6);
        assert!("fd00::/129".parse::<Prefix6>().is_err());
        assert!("fd00::".parse::<Prefix6>().is_err());
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
