//! The RIB: what SPF concludes, prefix by prefix, and how it changed.
//!
//! Routes cover prefixes advertised by *other* routers. Prefixes this router
//! advertises itself (its stub prefixes) are not in the RIB: the agent
//! installs those locally. A next hop is the outgoing interface plus the
//! neighbour's link-local address (from its Link-LSA); for a prefix of a
//! broadcast link this router is attached to, the address is `::` (on-link).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use ipnet::Ipv6Net;

/// One way to forward towards a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NextHop {
    pub ifindex: u32,
    /// The neighbour's link-local address; `::` for an on-link prefix.
    pub addr: Ipv6Addr,
}

/// The best paths to one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub cost: u32,
    pub nexthops: BTreeSet<NextHop>,
}

/// All routes of the router.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rib {
    pub routes: BTreeMap<Ipv6Net, Route>,
}

/// What changed between two RIBs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RibDiff {
    pub added_or_changed: Vec<(Ipv6Net, Route)>,
    pub removed: Vec<Ipv6Net>,
}

impl RibDiff {
    /// Return whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added_or_changed.is_empty() && self.removed.is_empty()
    }
}

impl Rib {
    /// Return what must change to go from `self` to `new`.
    pub fn diff(&self, new: &Rib) -> RibDiff {
        let mut diff = RibDiff::default();
        let mut old = self.routes.iter().peekable();
        let mut cur = new.routes.iter().peekable();
        loop {
            match (old.peek(), cur.peek()) {
                (None, None) => break,
                (Some((p, _)), None) => {
                    diff.removed.push(**p);
                    old.next();
                }
                (None, Some((p, r))) => {
                    diff.added_or_changed.push((**p, (*r).clone()));
                    cur.next();
                }
                (Some((po, ro)), Some((pn, rn))) => match po.cmp(pn) {
                    std::cmp::Ordering::Less => {
                        diff.removed.push(**po);
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        diff.added_or_changed.push((**pn, (*rn).clone()));
                        cur.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if ro != rn {
                            diff.added_or_changed.push((**pn, (*rn).clone()));
                        }
                        old.next();
                        cur.next();
                    }
                },
            }
        }
        diff
    }

    /// Apply a diff (as a consumer of [`crate::Output::RibChanged`] would).
    pub fn apply(&mut self, diff: &RibDiff) {
        for p in &diff.removed {
            self.routes.remove(p);
        }
        for (p, r) in &diff.added_or_changed {
            self.routes.insert(*p, r.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(cost: u32, ifs: &[u32]) -> Route {
        Route {
            cost,
            nexthops: ifs
                .iter()
                .map(|&i| NextHop {
                    ifindex: i,
                    addr: "fe80::1".parse().unwrap(),
                })
                .collect(),
        }
    }

    #[test]
    fn diff_and_apply() {
        let p = |s: &str| s.parse::<Ipv6Net>().unwrap();
        let mut a = Rib::default();
        a.routes.insert(p("2001:db8:1::/64"), route(10, &[1]));
        a.routes.insert(p("2001:db8:2::/64"), route(20, &[1]));
        a.routes.insert(p("2001:db8:3::/64"), route(20, &[2]));
        let mut b = Rib::default();
        b.routes.insert(p("2001:db8:2::/64"), route(20, &[1, 2]));
        b.routes.insert(p("2001:db8:3::/64"), route(20, &[2]));
        b.routes.insert(p("2001:db8:4::/64"), route(30, &[2]));
        let d = a.diff(&b);
        assert_eq!(d.removed, vec![p("2001:db8:1::/64")]);
        assert_eq!(
            d.added_or_changed
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>(),
            vec![p("2001:db8:2::/64"), p("2001:db8:4::/64")]
        );
        let mut c = a.clone();
        c.apply(&d);
        assert_eq!(c, b);
        assert!(b.diff(&b).is_empty());
    }
}
