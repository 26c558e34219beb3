//! Interop with BIRD 2 for the IPv4 address family (RFC 5838): our
//! `ospfd --ipv4` and BIRD's `ospf v3` with an `ipv4` channel, both on
//! Instance ID 64, over veths with IPv6 link-local addresses only.
//!
//! - `pair`: one link; both Full, the same LSDB; we route BIRD's IPv4 stub
//!   via BIRD's IPv6 link-local address, BIRD routes ours via the IPv4
//!   address our Link-LSA carries, `onlink`.
//! - `bird_in_transit`: ours - BIRD - ours; each of ours reaches the other's
//!   IPv4 prefix through BIRD, whose Router-LSA has the V6-bit clear.
//! - `both_families_on_one_link`: two of ours, each running an IPv6 and an
//!   IPv4 instance on the same link (Instance IDs 0 and 64): all four
//!   adjacencies Full, each family's routes, and no instance takes the
//!   other's packets for its own or counts them as drops.
//!
//! BIRD 2.0.12 takes IPv4 next hops from Link-LSAs (RFC 5838 §2.7) and
//! installs one only inside a subnet of its interface: it marks a next hop
//! `onlink` only when the OSPF interface's own address is a host address,
//! and an OSPFv3 interface's address is its IPv6 link-local /64
//! (proto/ospf/rt.c, `calc_next_hop`; BIRD 2.16 added an onlink fallback).
//! So BIRD's node gets an address of the node range with the range's
//! length (198.19.255.0/24 here) on each link, and our node addresses
//! (/32s, in our Link-LSAs) fall inside it. Our side needs no IPv4 address
//! on any link.
//!
//! Needs root, the lab's tools and BIRD 2 at `/usr/sbin/bird`. Waits are
//! bounded (polls every 200 ms).
#![cfg(feature = "driver")]

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::bird::{BirdConf, LinkType};
use common::routers::{Bird, Hops, Ours, wait_identical_lsdbs};
use common::{link_local, rid, wait_until};
use ipnet::{Ipv4Net, Ipv6Net};
use routing::af;

/// How long adjacencies and routes may take to settle (hello 1 s, dead 3 s).
const CONVERGE: Duration = Duration::from_secs(30);

/// Router `n`'s IPv4 pod prefix.
fn pod(n: u8) -> String {
    format!("198.18.{n}.0/24")
}

/// Router `n`'s IPv4 node address (its /32 on every link).
fn node_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 255, n)
}

/// Start our IPv4 instance on every link of `node`.
fn ours(lab: &lab::Lab, node: &str, n: u8) -> Ours {
    Ours::start_with(
        lab,
        node,
        rid(n),
        &[&pod(n)],
        LinkType::PointToPoint,
        &["--ipv4".to_owned(), node_addr(n).to_string()],
    )
}

/// Start BIRD's IPv4 instance on every link of `node`, with an address of
/// the node range on each.
fn bird(lab: &lab::Lab, node: &str, n: u8) -> Bird {
    let ifaces = lab.node(node).ifaces();
    for i in &ifaces {
        lab.node(node)
            .run(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", node_addr(n)),
                "dev",
                i,
            ])
            .unwrap_or_else(|e| panic!("address on {node}/{i}: {e:#}"));
    }
    let mut conf = BirdConf::ptp(
        rid(n),
        &ifaces.iter().map(String::as_str).collect::<Vec<_>>(),
        &[&pod(n)],
    );
    conf.ipv4 = true;
    Bird::start_conf(lab, node, &conf)
}

/// Our IPv4 routes: prefix -> (cost, next hops).
fn our_routes(o: &Ours) -> Option<BTreeMap<Ipv4Net, (u32, Hops)>> {
    Some(
        o.routes()?
            .into_iter()
            .filter_map(|(p, r)| Some((af::wire_to_ipv4(p.parse::<Ipv6Net>().ok()?)?, r)))
            .collect(),
    )
}

/// BIRD's IPv4 routes from OSPF: prefix -> next hops (via, interface).
fn bird_routes(b: &Bird, lab: &lab::Lab) -> Option<BTreeMap<String, Vec<(IpAddr, String)>>> {
    let out = b.birdc(lab, "show route protocol ospf1")?;
    Some(
        common::bird::parse_routes(&out)
            .into_iter()
            .map(|(p, r)| (p, r.nexthops.into_iter().collect()))
            .collect(),
    )
}

#[test]
fn pair() {
    let topo =
        lab::Topology::new()
            .node("ours")
            .node("bird")
            .link("ours", "bird", lab::Wire::Direct);
    let lab = lab::Lab::build("bird4-pair", &topo).expect("build lab");
    let link = lab.link("ours", "bird").clone();
    let bird_ll = link_local(&lab, "bird", &link.b_if);

    let b = bird(&lab, "bird", 2);
    let o = ours(&lab, "ours", 1);
    let describe = || {
        format!(
            "{}\n{}\n{}",
            o.describe(),
            b.describe(&lab),
            b.birdc(&lab, "show ospf state all").unwrap_or_default()
        )
    };

    wait_until(
        "Full on both sides of the IPv4 instance",
        CONVERGE,
        || (o.is_full_with(rid(2)) && b.is_full_with(&lab, rid(1))).then_some(()),
        describe,
    );
    wait_identical_lsdbs(&o, &b, &lab, CONVERGE);
    // We route via BIRD's IPv6 link-local; BIRD via our Link-LSA's IPv4
    // address.
    let want_ours: Hops = [(link.a_if.clone(), bird_ll)].into();
    let want_bird = vec![(IpAddr::V4(node_addr(1)), link.b_if.clone())];
    wait_until(
        "each side routes the other's IPv4 prefix",
        CONVERGE,
        || {
            let ro = our_routes(&o)?;
            let rb = bird_routes(&b, &lab)?;
            (ro.get(&pod(2).parse().ok()?).map(|r| &r.1) == Some(&want_ours)
                && rb.get(&pod(1)) == Some(&want_bird))
            .then_some(())
        },
        describe,
    );
    // Nothing else: BIRD's pod and its interface address (198.19.255.0/24,
    // advertised as a stub), no IPv6 prefix in the IPv4 instance.
    let ro = our_routes(&o).expect("routes");
    assert_eq!(
        ro.keys().map(ToString::to_string).collect::<Vec<_>>(),
        [pod(2), "198.19.255.0/24".to_owned()],
        "{ro:?}"
    );
    assert_eq!(o.drops(routing::DropReason::OptionsMismatch), 0);
}

#[test]
fn bird_in_transit() {
    let topo = lab::Topology::new()
        .node("a")
        .node("b")
        .node("c")
        .link("a", "b", lab::Wire::Direct)
        .link("b", "c", lab::Wire::Direct);
    let lab = lab::Lab::build("bird4-line", &topo).expect("build lab");
    let ab = lab.link("a", "b").clone();
    let bc = lab.link("b", "c").clone();
    let b_ll_to_a = link_local(&lab, "b", &ab.b_if);
    let b_ll_to_c = link_local(&lab, "b", &bc.a_if);

    let b = bird(&lab, "b", 2);
    let a = ours(&lab, "a", 1);
    let c = ours(&lab, "c", 3);
    let describe = || format!("{}\n{}\n{}", a.describe(), b.describe(&lab), c.describe());

    let want_a: Hops = [(ab.a_if.clone(), b_ll_to_a)].into();
    let want_c: Hops = [(bc.b_if.clone(), b_ll_to_c)].into();
    wait_until(
        "a and c reach each other's IPv4 prefix through BIRD",
        CONVERGE,
        || {
            let ra = our_routes(&a)?;
            let rc = our_routes(&c)?;
            let to_c = ra.get(&pod(3).parse().ok()?)?;
            let to_a = rc.get(&pod(1).parse().ok()?)?;
            (to_c.1 == want_a && to_a.1 == want_c && to_c.0 == 20 && to_a.0 == 20).then_some(())
        },
        describe,
    );
    // BIRD routes both of ours, each via the address in that side's
    // Link-LSA.
    wait_until(
        "BIRD routes both IPv4 prefixes",
        CONVERGE,
        || {
            let rb = bird_routes(&b, &lab)?;
            (rb.get(&pod(1)) == Some(&vec![(IpAddr::V4(node_addr(1)), ab.b_if.clone())])
                && rb.get(&pod(3)) == Some(&vec![(IpAddr::V4(node_addr(3)), bc.a_if.clone())]))
            .then_some(())
        },
        describe,
    );
}

#[test]
fn both_families_on_one_link() {
    let topo = lab::Topology::new()
        .node("a")
        .node("b")
        .link("a", "b", lab::Wire::Direct);
    let lab = lab::Lab::build("af-pair", &topo).expect("build lab");
    let link = lab.link("a", "b").clone();
    let b_ll = link_local(&lab, "b", &link.b_if);
    let v6 = |n: u8| {
        let node = if n == 1 { "a" } else { "b" };
        Ours::start_tagged(
            &lab,
            node,
            "ospfd6",
            rid(n),
            &[&common::stub(n)],
            LinkType::PointToPoint,
            &[],
        )
    };
    let (a6, b6) = (v6(1), v6(2));
    let (a4, b4) = (ours(&lab, "a", 1), ours(&lab, "b", 2));
    let describe = || {
        [&a6, &b6, &a4, &b4]
            .iter()
            .map(|o| o.describe())
            .collect::<Vec<_>>()
            .join("\n")
    };
    wait_until(
        "both instances Full on both sides",
        CONVERGE,
        || {
            (a6.is_full_with(rid(2))
                && b6.is_full_with(rid(1))
                && a4.is_full_with(rid(2))
                && b4.is_full_with(rid(1)))
            .then_some(())
        },
        describe,
    );
    let want: Hops = [(link.a_if.clone(), b_ll)].into();
    wait_until(
        "each family routes the other side's prefix via b's link-local",
        CONVERGE,
        || {
            let r6 = a6.routes()?;
            let r4 = our_routes(&a4)?;
            (r6.get(&common::stub(2)).map(|r| &r.1) == Some(&want)
                && r4.get(&pod(2).parse().ok()?).map(|r| &r.1) == Some(&want))
            .then_some(())
        },
        describe,
    );
    // Each family's routes only: no IPv4 prefix in the IPv6 RIB (the
    // IPv4 instance's prefixes read as IPv6 ones of 32 bits or less).
    let r6 = a6.routes().expect("routes");
    assert_eq!(r6.len(), 1, "{r6:?}");
    for o in [&a6, &b6, &a4, &b4] {
        assert_eq!(
            o.drops(routing::DropReason::WrongInstanceId),
            0,
            "{}",
            o.describe()
        );
        assert_eq!(
            o.drops(routing::DropReason::OptionsMismatch),
            0,
            "{}",
            o.describe()
        );
    }
}
