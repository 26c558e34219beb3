//! The IPv4 address family (RFC 5838) in small simulations: what the
//! IPv4 instance sends, whom it refuses, and which prefixes it routes.
//! The 200-router mesh runs with IPv4 in `sim_mesh`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use routing::packet::lsa::LsaBody;
use routing::packet::lsa::header::LsaType;
use routing::packet::{Body, Options, Packet, PacketRepr};
use routing::sim::{Sim, link_local, router_id};
use routing::{AddressFamily, DropReason, InstanceConfig, Ipv6Net, NextHop, af};

fn v4(s: &str) -> Ipv6Net {
    af::ipv4_to_wire(s.parse::<Ipv4Net>().expect("IPv4 prefix"))
}

fn ipv4_af(n: usize) -> AddressFamily {
    AddressFamily::Ipv4 {
        interface_address: Some(Ipv4Addr::new(198, 19, 255, n as u8 + 1)),
    }
}

fn ipv4_router(n: usize, stubs: &[Ipv6Net]) -> InstanceConfig {
    InstanceConfig {
        router_id: router_id(n),
        af: ipv4_af(n),
        stub_prefixes: stubs.to_vec(),
        ..Default::default()
    }
}

/// Two IPv4 instances on one link, Instance ID 64, capturing packets.
fn pair(stubs_b: &[Ipv6Net]) -> Sim {
    let mut s = Sim::new();
    s.interface_config.instance_id = 64;
    s.capture = Some(Vec::new());
    s.add_router(ipv4_router(0, &[v4("198.18.0.0/24")]));
    s.add_router(ipv4_router(1, stubs_b));
    s.add_link(0, 1, 1);
    s
}

#[test]
fn ipv4_routes_go_via_the_neighbours_link_local_address() {
    let mut s = pair(&[v4("198.18.1.0/24"), v4("198.19.255.2/32")]);
    s.run_for(10_000);
    let rib = &s.routers[0].rib;
    let via = NextHop {
        ifindex: 1,
        addr: link_local(1, 1),
    };
    for p in ["198.18.1.0/24", "198.19.255.2/32"] {
        let route = rib
            .routes
            .get(&v4(p))
            .unwrap_or_else(|| panic!("{p}: {rib:#?}"));
        assert_eq!(route.nexthops.iter().copied().collect::<Vec<_>>(), [via]);
        assert_eq!(af::wire_to_ipv4(v4(p)), Some(p.parse().unwrap()));
    }
    assert_eq!(rib.routes.len(), 2, "{rib:#?}");
}

#[test]
fn ipv4_packets_carry_the_af_bit_and_instance_64_and_link_lsas_the_ipv4_address() {
    let mut s = pair(&[v4("198.18.1.0/24")]);
    s.run_for(10_000);
    let captured = s.capture.take().expect("capture on");
    assert!(!captured.is_empty());
    let (mut hellos, mut dds, mut link_lsas, mut router_lsas) = (0, 0, 0, 0);
    for (_, _, _, _, data) in &captured {
        let repr = PacketRepr::parse(&Packet::new_checked(&data[..]).expect("a packet"))
            .expect("our packets parse");
        assert_eq!(repr.instance_id, 64, "every packet on instance 64");
        match &repr.body {
            Body::Hello(h) => {
                hellos += 1;
                assert!(h.options.contains(Options::AF), "{:?}", h.options);
                assert!(!h.options.contains(Options::V6), "{:?}", h.options);
            }
            Body::DbDesc(d) => {
                dds += 1;
                assert!(d.options.contains(Options::AF), "{:?}", d.options);
            }
            Body::LsUpdate(u) => {
                for lsa in &u.lsas {
                    match &lsa.body {
                        LsaBody::Link(l) => {
                            link_lsas += 1;
                            let sender = if lsa.header.adv_router == router_id(0) {
                                0
                            } else {
                                1
                            };
                            assert_eq!(
                                af::ipv4_of_link_lsa(l.link_local),
                                Some(Ipv4Addr::new(198, 19, 255, sender as u8 + 1)),
                                "the Link-LSA's address field holds the IPv4 address"
                            );
                            assert!(l.options.contains(Options::AF));
                        }
                        LsaBody::Router(r) => {
                            router_lsas += 1;
                            assert!(r.options.contains(Options::AF));
                            assert!(r.options.contains(Options::R));
                            assert!(!r.options.contains(Options::V6));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    assert!(
        hellos > 0 && dds > 0 && link_lsas > 0 && router_lsas > 0,
        "hellos {hellos} dds {dds} link {link_lsas} router {router_lsas}"
    );
}

#[test]
fn hellos_without_the_af_bit_are_refused_by_an_ipv4_instance() {
    // An IPv6 instance configured onto Instance ID 64 by mistake: its
    // Hellos lack the AF-bit, so no adjacency forms and the IPv4 side
    // counts each one.
    let mut s = Sim::new();
    s.interface_config.instance_id = 64;
    s.add_router(ipv4_router(0, &[v4("198.18.0.0/24")]));
    s.add_router(InstanceConfig {
        router_id: router_id(1),
        stub_prefixes: vec!["fd00:1::/64".parse().unwrap()],
        ..Default::default()
    });
    s.add_link(0, 1, 1);
    s.run_for(10_000);
    let st = s.instance(0).state();
    assert!(st.neighbors.is_empty(), "{:#?}", st.neighbors);
    assert!(
        s.instance(0)
            .drop_counters()
            .get(&DropReason::OptionsMismatch)
            .copied()
            .unwrap_or(0)
            >= 5,
        "{:?}",
        s.instance(0).drop_counters()
    );
    assert!(s.routers[0].rib.routes.is_empty());
}

#[test]
fn prefixes_longer_than_32_bits_are_flooded_but_never_routed() {
    // Router 1 advertises an IPv6-length prefix in its IPv4 instance.
    let bad: Ipv6Net = "2001:db8:1::/48".parse().unwrap();
    let mut s = pair(&[v4("198.18.1.0/24"), bad]);
    s.run_for(10_000);
    let rib = &s.routers[0].rib;
    assert!(rib.routes.contains_key(&v4("198.18.1.0/24")), "{rib:#?}");
    assert!(!rib.routes.contains_key(&bad), "{rib:#?}");
    assert_eq!(rib.routes.len(), 1, "{rib:#?}");
    let st = s.instance(0).state();
    assert!(
        st.misfits.contains(&(bad, router_id(1))),
        "{:?}",
        st.misfits
    );
    // Flooded all the same (RFC 5838 §2.3 only keeps it out of routing):
    // router 0 holds router 1's Intra-Area-Prefix-LSA with it.
    let held = s.instance(0).lsdb().area().values().any(|e| {
        e.lsa.header.ls_type == LsaType::INTRA_AREA_PREFIX
            && matches!(&e.lsa.body, LsaBody::IntraAreaPrefix(p) if p.prefixes.iter().any(|x| x.prefix == bad))
    });
    assert!(held);
}

/// The IPv4 address in router `from`'s Link-LSA as router `at` holds it.
fn link_lsa_address(s: &Sim, at: usize, from: usize) -> Option<Ipv4Addr> {
    s.instance(at)
        .lsdb()
        .iter()
        .find_map(|(_, e)| match &e.lsa.body {
            LsaBody::Link(l) if e.lsa.header.adv_router == router_id(from) => {
                af::ipv4_of_link_lsa(l.link_local)
            }
            _ => None,
        })
}

#[test]
fn a_new_ipv4_address_is_reoriginated_in_the_link_lsas() {
    let mut s = pair(&[v4("198.18.1.0/24")]);
    s.run_for(10_000);
    assert_eq!(
        link_lsa_address(&s, 0, 1),
        Some(Ipv4Addr::new(198, 19, 255, 2))
    );
    // The node's address moved with its prefix: the neighbour learns the
    // new one from a new instance of the Link-LSA, and routes still go
    // via the link-local address.
    let moved = Ipv4Addr::new(198, 18, 77, 1);
    s.input(1, routing::Input::SetInterfaceAddress4(Some(moved)));
    s.run_for(10_000);
    assert_eq!(link_lsa_address(&s, 0, 1), Some(moved));
    assert!(s.routers[0].rib.routes.contains_key(&v4("198.18.1.0/24")));
    // The same address again changes nothing.
    let seq = |s: &Sim| {
        s.instance(0)
            .lsdb()
            .iter()
            .filter(|(_, e)| e.lsa.header.adv_router == router_id(1))
            .map(|(_, e)| e.lsa.header.seq)
            .collect::<Vec<_>>()
    };
    let before = seq(&s);
    s.input(1, routing::Input::SetInterfaceAddress4(Some(moved)));
    s.run_for(10_000);
    assert_eq!(seq(&s), before);
}
