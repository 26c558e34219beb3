//! Fixtures the core's tests share: links as rtnetlink reports them and
//! routes as OSPF computes them.

use std::net::Ipv6Addr;

use dataplane::netlink::{Address6, Link, LinkEvent, Mac};
use ipnet::Ipv6Net;
use routing::{NextHop, Route};

/// The link-local address `fe80::n`.
pub fn ll(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)
}

/// An up veth with carrier.
pub fn veth(ifindex: u32, name: &str) -> Link {
    Link {
        ifindex,
        name: name.into(),
        kind: Some("veth".into()),
        ethernet: true,
        loopback: false,
        enslaved: false,
        admin_up: true,
        carrier: true,
        mtu: Some(1500),
        mac: Some(Mac([2, 0, 0, 0, 0, ifindex as u8])),
        perm_mac: None,
        alias: None,
    }
}

/// An IPv6 address of a link, usable or still tentative.
pub fn addr(ifindex: u32, addr: Ipv6Addr, usable: bool) -> LinkEvent {
    LinkEvent::Addr(Address6 {
        ifindex,
        addr,
        prefix_len: 64,
        usable,
        global: false,
    })
}

/// A route to `prefix` of cost 20 over `hops` (ifindex, neighbour).
pub fn route(prefix: &str, hops: &[(u32, Ipv6Addr)]) -> (Ipv6Net, Route) {
    (
        prefix.parse().expect("a prefix"),
        Route {
            cost: 20,
            nexthops: hops
                .iter()
                .map(|(ifindex, addr)| NextHop {
                    ifindex: *ifindex,
                    addr: *addr,
                })
                .collect(),
        },
    )
}
