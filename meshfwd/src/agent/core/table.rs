//! The route table the agent hands to the map writer: the RIB, less what
//! must not be written (next hops through links that just lost their
//! carrier, link-local prefixes, our own prefixes), plus the node's own
//! addresses.

use std::{collections::BTreeSet, net::Ipv6Addr};

use ipnet::Ipv6Net;
use routing::{Rib, packet::prefix::is_link_local};

use crate::fib::{NextHopKey, RouteTable};

/// Build the route table the maps and the kernel should hold.
///
/// Next hops through links that are not in the mesh right now (no
/// carrier) are left out, so nothing is written pointing at a dead link
/// while OSPF has not noticed yet. On-link (`::`) next hops, a shared
/// segment's own prefix, stay: the kernel forwards those. `own` are this
/// node's prefixes: another
/// router advertising them (a clash being settled) must not pull our own
/// traffic away.
pub fn desired_table(
    rib: &Rib,
    live: impl Fn(u32) -> bool,
    local: &[Ipv6Addr],
    own: &[Ipv6Net],
) -> RouteTable {
    let mut t = RouteTable::default();
    for (prefix, route) in &rib.routes {
        let p = *prefix;
        if own.contains(&p) || is_link_local(prefix) {
            continue;
        }
        let hops = live_hops(route, &live);
        if !hops.is_empty() {
            t.routes.insert(p.into(), hops);
        }
    }
    t.local
        .extend(local.iter().map(|a| std::net::IpAddr::V6(*a)));
    t
}

/// A route's next hops through live links.
fn live_hops(route: &routing::Route, live: impl Fn(u32) -> bool) -> BTreeSet<NextHopKey> {
    route
        .nexthops
        .iter()
        .filter(|nh| live(nh.ifindex))
        .map(|nh| NextHopKey {
            ifindex: nh.ifindex,
            via: nh.addr,
        })
        .collect()
}

/// Add the IPv4 instance's routes (prefixes in their LSA encoding) to
/// `t`, by the same rules, and the node's IPv4 address as local.
pub fn add_ipv4(
    t: &mut RouteTable,
    rib4: &Rib,
    live: impl Fn(u32) -> bool,
    local: std::net::Ipv4Addr,
    own: &[ipnet::Ipv4Net],
) {
    for (prefix, route) in &rib4.routes {
        let Some(p) = routing::af::wire_to_ipv4(*prefix) else {
            continue;
        };
        if own.contains(&p) {
            continue;
        }
        let hops = live_hops(route, &live);
        if !hops.is_empty() {
            t.routes.insert(p.into(), hops);
        }
    }
    t.local.insert(local.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::core::testing::{ll, route};

    fn rib(routes: &[(&str, &[(u32, Ipv6Addr)])]) -> Rib {
        let mut r = Rib::default();
        r.routes
            .extend(routes.iter().map(|(p, hops)| route(p, hops)));
        r
    }

    #[test]
    fn table_skips_dead_links_and_own_prefixes() {
        let r = rib(&[
            ("fd00:1::/64", &[(2, ll(1)), (3, ll(2))]),
            ("fd00:2::1/128", &[(3, ll(2))]),
            ("fd00:3::/64", &[(4, Ipv6Addr::UNSPECIFIED)]),
            ("fd00:9::/64", &[(2, ll(1))]),
        ]);
        let me: Ipv6Addr = "fd00:9::1".parse().unwrap();
        let own = [
            Ipv6Net::new_assert("fd00:9::".parse().unwrap(), 64).trunc(),
            Ipv6Net::from(me),
        ];
        let t = desired_table(&r, |i| i != 3, &[me], &own);
        let keys: Vec<String> = t.routes.keys().map(|p| p.to_string()).collect();
        assert_eq!(keys, vec!["fd00:1::/64", "fd00:3::/64"]);
        assert_eq!(
            t.routes.values().next().unwrap().len(),
            1,
            "the hop via the dead link is left out"
        );
        assert!(t.local.contains(&me.into()));
    }
}
