//! The evidence an embedding needs to decide that another router uses its
//! router id (RFC 2328 §13.4), as the core's summary reports it: links to
//! our id in reachable routers' LSAs that none of our adjacencies explains,
//! and newer copies of our own LSAs with content we never sent.

use routing::sim::{Sim, router_id};
use routing::{InstanceConfig, Ipv6Net};

fn pod(n: usize) -> Ipv6Net {
    format!("fd00:{:x}::/64", n + 1).parse().expect("prefix")
}

fn add(sim: &mut Sim, id: usize, n: usize) {
    sim.add_router(InstanceConfig {
        router_id: router_id(id),
        stub_prefixes: vec![pod(n)],
        ..Default::default()
    });
}

/// Routers 0 - 1 - 2 in a line, converged.
fn line3() -> Sim {
    let mut s = Sim::new();
    for n in 0..3 {
        add(&mut s, n, n);
    }
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.run_for(20_000);
    s
}

#[test]
fn a_healthy_mesh_has_no_evidence() {
    let mut s = Sim::new();
    for n in 0..4 {
        add(&mut s, n, n);
    }
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        s.add_link(a, b, 1);
    }
    s.run_for(30_000);
    // A flap on the way: re-originations, no evidence.
    s.cut_link(0, true);
    s.run_for(5_000);
    s.restore_link(0);
    s.run_for(20_000);
    for r in 0..4 {
        let sum = s.instance(r).summary();
        assert!(
            sum.foreign_links.is_empty(),
            "router {r}: {:?}",
            sum.foreign_links
        );
        assert_eq!(sum.self_originated_foreign, 0, "router {r}");
        assert_eq!(sum.reachable.len(), 4, "router {r}");
    }
}

#[test]
fn a_far_router_with_our_id_shows_in_foreign_links_and_content() {
    // 0 - 1 - 2, where 2 has 0's router id.
    let mut s = Sim::new();
    add(&mut s, 0, 0);
    add(&mut s, 1, 1);
    add(&mut s, 0, 2);
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.run_for(30_000);
    let sum = s.instance(0).summary();
    assert!(
        sum.foreign_links.iter().any(|l| l.reporter == router_id(1)),
        "{:?}",
        sum.foreign_links
    );
    assert!(sum.self_originated_foreign > 0, "the fight over our LSAs");
}

#[test]
fn only_routers_spf_reaches_count() {
    // 0 - 1, and 2 alone: 2's LSAs never reach 0, nor would they count.
    let mut s = Sim::new();
    for n in 0..3 {
        add(&mut s, n, n);
    }
    s.add_link(0, 1, 1);
    s.run_for(20_000);
    let sum = s.instance(0).summary();
    assert_eq!(sum.reachable, [router_id(0), router_id(1)].into());
}

#[test]
fn a_retired_router_id_leaves_every_lsdb_at_once() {
    // 0 - 1 - 2; 2 gives its id up (an agent renumbering).
    let mut s = line3();
    let of_2 = |s: &Sim, r: usize| {
        s.instance(r)
            .lsdb()
            .iter()
            .filter(|(_, e)| e.lsa.header.adv_router == router_id(2))
            .count()
    };
    assert!(of_2(&s, 0) > 0);
    s.input(2, routing::Input::Retire);
    // MaxAge copies flood at once; each router drops them once acknowledged
    // (its aging pass runs every second), far before MaxAge would.
    s.run_for(5_000);
    for r in 0..2 {
        assert_eq!(of_2(&s, r), 0, "router {r} still holds 2's LSAs");
        assert!(!s.instance(r).summary().reachable.contains(&router_id(2)));
    }
}

#[test]
fn the_lsdb_limit_refuses_the_excess_and_space_comes_back() {
    // A line 0 - 1 - 2 - 3 - 4; router 0 takes at most 9 LSAs in all.
    let mut s = Sim::new();
    for n in 0..5 {
        let mut config = InstanceConfig {
            router_id: router_id(n),
            stub_prefixes: vec![pod(n)],
            ..Default::default()
        };
        if n == 0 {
            config.lsdb_limits = routing::instance::LsdbLimits {
                per_router: 1_000,
                total: 9,
            };
        }
        s.add_router(config);
    }
    for n in 0..4 {
        s.add_link(n, n + 1, 1);
    }
    s.run_for(30_000);
    let full = s.instance(1).lsdb().len();
    let held = s.instance(0).lsdb().len();
    assert!(held <= 9 + 3, "held {held}: the limit plus our own");
    assert!(full > held, "router 1 holds {full}");
    let refused = s.instance(0).state().drops[&routing::DropReason::LsdbFull];
    assert!(refused > 0);
    // The adjacency and the routes that fit stand.
    assert!(s.instance(0).rib().routes.contains_key(&pod(1)));
    // A router whose LSAs router 0 holds leaves: they go, and the count
    // with them.
    let leaver = (1..5)
        .rev()
        .find(|r| s.instance(0).lsdb().count_of(router_id(*r)) > 0)
        .expect("router 0 holds some other router's LSAs");
    let theirs = s.instance(0).lsdb().count_of(router_id(leaver));
    s.input(leaver, routing::Input::Retire);
    s.run_for(10_000);
    assert_eq!(s.instance(0).lsdb().count_of(router_id(leaver)), 0);
    assert!(s.instance(0).lsdb().len() <= held - theirs);
}

#[test]
fn one_router_gets_no_more_than_its_share() {
    // 0 - 1 on a link, 1 with a limit of 2 LSAs per router: 0's Router-,
    // Intra-Area-Prefix- and Link-LSA do not all fit.
    let mut s = Sim::new();
    add(&mut s, 0, 0);
    s.add_router(InstanceConfig {
        router_id: router_id(1),
        stub_prefixes: vec![pod(1)],
        lsdb_limits: routing::instance::LsdbLimits {
            per_router: 2,
            total: 1_000,
        },
        ..Default::default()
    });
    s.add_link(0, 1, 1);
    s.run_for(20_000);
    assert_eq!(s.instance(1).lsdb().count_of(router_id(0)), 2);
    assert!(s.instance(1).state().drops[&routing::DropReason::LsdbFull] > 0);
}

#[test]
fn a_forged_lsa_is_fought_back_within_min_ls_arrival() {
    use routing::packet::{
        ALL_SPF_ROUTERS, Body, Options, PacketRepr,
        lsa::{
            Lsa, LsaBody,
            header::{LsaHeader, LsaType},
            router::{RouterFlags, RouterLsa},
        },
        lsupd::LsUpdateRepr,
    };
    // 0 - 1 - 2. Router 1 gets, "from" 0, a newer Router-LSA of 2 with a
    // link to nowhere: 2 is cut off until its own newer copy reaches 1. That copy
    // comes within MinLSArrival of the forged one.
    let mut s = line3();
    assert!(s.instance(1).rib().routes.contains_key(&pod(2)));
    let seq = s
        .instance(1)
        .lsdb()
        .iter()
        .find(|(_, e)| {
            e.lsa.header.adv_router == router_id(2) && e.lsa.header.ls_type == LsaType::ROUTER
        })
        .map(|(_, e)| e.lsa.header.seq)
        .expect("2's Router-LSA");
    let mut forged = Lsa {
        header: LsaHeader {
            age: 1,
            ls_type: LsaType::ROUTER,
            ls_id: 0,
            adv_router: router_id(2),
            seq: seq + 1,
            checksum: 0,
            length: 0,
        },
        body: LsaBody::Router(RouterLsa {
            flags: RouterFlags(0),
            options: Options::DEFAULT,
            links: vec![routing::packet::lsa::router::RouterLink {
                link_type: routing::packet::lsa::router::RouterLinkType::PointToPoint,
                metric: 1,
                interface_id: 7,
                neighbor_interface_id: 7,
                neighbor_router_id: router_id(99),
            }],
        }),
    };
    forged.encode();
    let src = routing::sim::link_local(0, 1);
    let data = PacketRepr {
        router_id: router_id(0),
        area_id: std::net::Ipv4Addr::UNSPECIFIED,
        instance_id: 0,
        body: Body::LsUpdate(LsUpdateRepr { lsas: vec![forged] }),
    }
    .to_bytes(src, ALL_SPF_ROUTERS);
    s.input(
        1,
        routing::Input::Packet {
            ifindex: 1,
            src,
            dst: ALL_SPF_ROUTERS,
            data,
        },
    );
    s.run_for(200);
    assert!(
        !s.instance(1).rib().routes.contains_key(&pod(2)),
        "the forgery took"
    );
    // 2's answer arrives at once and waits out MinLSArrival (1 s), not the
    // 5 s retransmission interval.
    let seq_at_1 = |s: &Sim| {
        s.instance(1)
            .lsdb()
            .iter()
            .find(|(_, e)| {
                e.lsa.header.adv_router == router_id(2) && e.lsa.header.ls_type == LsaType::ROUTER
            })
            .map_or(0, |(_, e)| e.lsa.header.seq)
    };
    let mut back = None;
    for t in 0..100 {
        if seq_at_1(&s) > seq + 1 {
            back = Some(200 + t * 50);
            break;
        }
        s.run_for(50);
    }
    assert!(back.is_some_and(|ms| ms <= 1_100), "back after {back:?} ms");
    // Routes follow with the SPF back-off (2 s in LONG_WAIT by default).
    s.run_for(2_500);
    assert!(s.instance(1).rib().routes.contains_key(&pod(2)));
    assert_eq!(s.instance(2).summary().self_originated_foreign, 1);
}
