//! Small deterministic simulations: two routers, a line, a ring with ECMP,
//! a broadcast segment with DR election, failures, graceful restart.

use routing::gr::{GrExit, GracefulRestart};
use routing::packet::lsa::grace::RestartReason;
use routing::packet::lsa::header::LsaType;
use routing::sim::{Sim, link_local, router_id};
use routing::{InstanceConfig, InterfaceKind, Ipv6Net, NextHop};

fn pod(n: usize) -> Ipv6Net {
    format!("fd00:{:x}::/64", n + 1).parse().expect("prefix")
}

fn config(n: usize) -> InstanceConfig {
    InstanceConfig {
        router_id: router_id(n),
        stub_prefixes: vec![pod(n)],
        ..Default::default()
    }
}

fn sim(n: usize) -> Sim {
    let mut sim = Sim::new();
    for i in 0..n {
        sim.add_router(config(i));
    }
    sim
}

fn nexthops(sim: &Sim, r: usize, dest: usize) -> Vec<NextHop> {
    sim.routers[r]
        .rib
        .routes
        .get(&pod(dest))
        .map(|route| route.nexthops.iter().copied().collect())
        .unwrap_or_default()
}

#[test]
fn two_routers_reach_full_and_route() {
    let mut s = sim(2);
    s.add_link(0, 1, 1);
    s.run_for(15_000);
    let st = s.instance(0).state();
    assert_eq!(st.neighbors.len(), 1, "{st:#?}");
    assert_eq!(format!("{:?}", st.neighbors[0].state), "Full");
    let route = &s.routers[0].rib.routes[&pod(1)];
    assert_eq!(route.cost, 10);
    assert_eq!(
        nexthops(&s, 0, 1),
        vec![NextHop {
            ifindex: 1,
            addr: link_local(1, 1)
        }]
    );
    assert_eq!(s.routers[0].rib, *s.instance(0).rib());
    assert!(
        !s.routers[0].rib.routes.contains_key(&pod(0)),
        "own prefix not in RIB"
    );
}

#[test]
fn ring_of_four_has_ecmp() {
    let mut s = sim(4);
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.add_link(2, 3, 1);
    s.add_link(3, 0, 1);
    s.run_for(20_000);
    // 0 -> 2: via 1 and via 3, cost 20.
    let r = &s.routers[0].rib.routes[&pod(2)];
    assert_eq!(r.cost, 20);
    assert_eq!(r.nexthops.len(), 2, "{r:?}");
    // Cut 0-1 with carrier loss: 0 -> 1 now goes round, cost 30.
    s.cut_link(0, true);
    s.run_for(15_000);
    let r = &s.routers[0].rib.routes[&pod(1)];
    assert_eq!(r.cost, 30, "{r:?}");
    assert_eq!(
        nexthops(&s, 0, 1),
        vec![NextHop {
            ifindex: 2,
            addr: link_local(3, 2)
        }]
    );
    // Silent cut of 2-3: dead interval notices.
    s.cut_link(2, false);
    s.run_for(15_000);
    assert!(
        !s.routers[0].rib.routes.contains_key(&pod(1)),
        "{:?}",
        s.routers[0].rib
    );
    assert!(!s.routers[0].rib.routes.contains_key(&pod(2)));
    // Heal everything.
    s.restore_link(0);
    s.restore_link(2);
    s.run_for(20_000);
    assert_eq!(s.routers[0].rib.routes[&pod(2)].nexthops.len(), 2);
}

#[test]
fn broadcast_segment_elects_and_routes() {
    let mut s = sim(4);
    s.add_segment(&[0, 1, 2], InterfaceKind::Broadcast, 1);
    s.add_link(2, 3, 1);
    s.run_for(30_000);
    let st = s.instance(0).state();
    assert_eq!(st.interfaces[0].dr, router_id(2), "{st:#?}");
    assert_eq!(st.interfaces[0].bdr, router_id(1));
    for r in 0..4 {
        for d in 0..4 {
            if r != d {
                assert!(
                    s.routers[r].rib.routes.contains_key(&pod(d)),
                    "{r} -> {d}: {:?}",
                    s.routers[r].rib
                );
            }
        }
    }
    assert_eq!(
        nexthops(&s, 0, 1),
        vec![NextHop {
            ifindex: 1,
            addr: link_local(1, 1)
        }]
    );
    assert_eq!(
        nexthops(&s, 0, 3),
        vec![NextHop {
            ifindex: 1,
            addr: link_local(2, 1)
        }]
    );
    assert_eq!(s.routers[0].rib.routes[&pod(3)].cost, 20);
    // The DR dies: a new election, router 3 becomes unreachable.
    s.kill_router(2);
    s.run_for(30_000);
    let st = s.instance(0).state();
    assert_eq!(st.interfaces[0].dr, router_id(1), "{st:#?}");
    assert!(s.routers[0].rib.routes.contains_key(&pod(1)));
    assert!(!s.routers[0].rib.routes.contains_key(&pod(3)));
}

#[test]
fn partition_heals_with_newer_lsas() {
    // 0 - 1 - 2 in a line; cut 0-1 silently, change 0's prefixes, heal.
    let mut s = sim(3);
    let l01 = s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.run_for(20_000);
    assert!(s.routers[2].rib.routes.contains_key(&pod(0)));
    s.cut_link(l01, false);
    s.run_for(20_000);
    assert!(!s.routers[2].rib.routes.contains_key(&pod(0)));
    let extra: Ipv6Net = "fd00:99::/64".parse().unwrap();
    s.input(0, routing::Input::SetStubPrefixes(vec![pod(0), extra]));
    s.run_for(20_000);
    s.restore_link(l01);
    s.run_for(20_000);
    for r in [1, 2] {
        assert!(
            s.routers[r].rib.routes.contains_key(&extra),
            "router {r}: {:?}",
            s.routers[r].rib
        );
        assert!(s.routers[r].rib.routes.contains_key(&pod(0)));
    }
    assert!(s.routers[0].rib.routes.contains_key(&pod(2)));
}

fn router_lsa_seq(s: &Sim, at: usize, of: usize) -> Option<(u32, u16)> {
    let key = routing::packet::lsa::header::LsaKey {
        ls_type: routing::packet::lsa::header::LsaType::ROUTER,
        adv_router: router_id(of),
        ls_id: 0,
    };
    s.instance(at)
        .lsdb()
        .area()
        .get(&key)
        .map(|e| (e.lsa.header.seq, e.age(s.now)))
}

#[test]
fn lsas_are_refreshed_and_dead_routers_age_out() {
    let mut s = sim(3);
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.run_for(20_000);
    let (seq0, _) = router_lsa_seq(&s, 1, 0).expect("router 0's LSA at router 1");
    // LSRefreshTime is 1800 s: by then router 0 re-originated.
    s.run_for(1_800_000);
    let (seq1, age1) = router_lsa_seq(&s, 1, 0).unwrap();
    assert!(
        seq1 > seq0 && age1 < 1800,
        "refreshed: {seq0:x} -> {seq1:x}, age {age1}"
    );
    // Router 2 dies silently; its LSAs reach MaxAge after 3600 s and go.
    s.kill_router(2);
    s.run_for(60_000);
    assert!(
        router_lsa_seq(&s, 0, 2).is_some(),
        "still there before MaxAge"
    );
    assert!(
        !s.routers[0].rib.routes.contains_key(&pod(2)),
        "but unreachable"
    );
    s.run_for(3_600_000);
    assert_eq!(router_lsa_seq(&s, 0, 2), None, "flushed at MaxAge");
    assert_eq!(router_lsa_seq(&s, 1, 2), None);
    assert!(s.routers[0].rib.routes.contains_key(&pod(1)));
}

#[test]
fn sequence_number_wrap_flushes_and_restarts() {
    use routing::packet::lsa::Lsa;
    use routing::packet::lsa::header::{INITIAL_SEQ, MAX_SEQ};
    use routing::packet::lsupd::LsUpdateRepr;
    use routing::packet::{ALL_SPF_ROUTERS, Body, PacketRepr};
    let mut s = sim(2);
    s.add_link(0, 1, 1);
    s.run_for(20_000);
    // Router 1 floods router 0 an instance of router 0's own Router-LSA with
    // the last sequence number, as if from an earlier life of router 0.
    let key = routing::packet::lsa::header::LsaKey {
        ls_type: routing::packet::lsa::header::LsaType::ROUTER,
        adv_router: router_id(0),
        ls_id: 0,
    };
    let mut lsa: Lsa = s.instance(0).lsdb().area()[&key].lsa.clone();
    lsa.header.seq = MAX_SEQ;
    lsa.header.age = 5;
    let _ = lsa.encode();
    let pkt = PacketRepr {
        router_id: router_id(1),
        area_id: std::net::Ipv4Addr::UNSPECIFIED,
        instance_id: 0,
        body: Body::LsUpdate(LsUpdateRepr { lsas: vec![lsa] }),
    };
    let src = link_local(1, 1);
    let data = pkt.to_bytes(src, ALL_SPF_ROUTERS);
    s.input(
        0,
        routing::Input::Packet {
            ifindex: 1,
            src,
            dst: ALL_SPF_ROUTERS,
            data,
        },
    );
    s.run_for(20_000);
    for r in [0, 1] {
        let (seq, _) = router_lsa_seq(&s, r, 0).expect("router 0's LSA");
        assert!(
            (INITIAL_SEQ..INITIAL_SEQ + 3).contains(&seq),
            "router {r}: restarted at {seq:x}"
        );
    }
    assert!(s.routers[1].rib.routes.contains_key(&pod(0)));
}

#[test]
fn cloned_router_ids_far_apart_fight_over_their_lsas() {
    // 0 - 1 - 2 where 2 was cloned from 0 (same router id): neither sees
    // the other as a neighbour, so only the §13.4 fight gives them away.
    let mut s = Sim::new();
    s.add_router(config(0));
    s.add_router(config(1));
    s.add_router(InstanceConfig {
        router_id: router_id(0),
        stub_prefixes: vec![pod(2)],
        ..Default::default()
    });
    s.add_link(0, 1, 1);
    let l12 = s.add_link(1, 2, 1);
    s.run_for(30_000);
    let repeats = |s: &Sim| {
        [0, 2].map(|r| {
            let st = s.instance(r).state();
            (st.self_originated_newer, st.self_originated_repeat)
        })
    };
    // The fight starts as soon as the clones' LSAs meet at 1 (before the fix,
    // 1 did not flood an LSA from one clone to the other: it skipped every
    // neighbour with the sender's router id, on any interface).
    let r = repeats(&s);
    assert!(r.iter().all(|(_, rep)| *rep >= 3), "{r:?}");
    s.cut_link(l12, true);
    s.run_for(1_000);
    s.restore_link(l12);
    s.run_for(30_000);
    let after = repeats(&s);
    assert!(
        after.iter().zip(r).all(|(a, b)| a.1 >= b.1 + 3),
        "{r:?} -> {after:?}"
    );
}

#[test]
fn summary_tells_an_agent_what_it_samples() {
    let mut s = sim(3);
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.run_for(20_000);
    let sum = s.instance(0).summary();
    assert_eq!(sum.router_id, router_id(0));
    let all: std::collections::BTreeSet<_> = (0..3).map(router_id).collect();
    assert_eq!(sum.reachable, all, "every router SPF reaches");
    assert!(sum.advertisers.is_superset(&all));
    assert_eq!(sum.neighbors.len(), 1);
    assert_eq!(sum.neighbors[0].router_id, router_id(1));
    assert_eq!(sum.interfaces.len(), 1);
    assert_eq!(sum.own_id_drops, 0);
    // Settled: nothing changes while nothing happens...
    s.run_for(5_000);
    let later = s.instance(0).summary();
    assert_eq!(later.lsdb_changes, sum.lsdb_changes);
    assert_eq!(later.reachable, sum.reachable);
    // ...and a new stub prefix on router 2 shows up as a change.
    s.input(2, routing::Input::SetStubPrefixes(vec![pod(2), pod(9)]));
    s.run_for(5_000);
    assert!(s.instance(0).summary().lsdb_changes > later.lsdb_changes);
}

/// A dead router's LSAs reach MaxAge on their own after an hour; the
/// router holding them floods them at MaxAge and drops them about a
/// second later, once no neighbour still has to acknowledge them. The
/// aging timer must come back for that second, whatever later deadline
/// the other LSAs have (it used to be re-armed for the next LSA to expire:
/// here the own LSAs' refresh, half an hour away).
#[test]
fn lsas_of_a_dead_router_are_gone_soon_after_max_age() {
    let mut s = sim(2);
    s.add_link(0, 1, 1);
    // Long enough that 0's own LSAs, re-originated when 1 goes, are
    // refreshed well after 1's LSAs reach MaxAge.
    s.run_for(600_000);
    let from_1 = |s: &Sim| {
        s.instance(0)
            .lsdb()
            .iter()
            .filter(|(_, e)| e.lsa.header.adv_router == router_id(1))
            .count()
    };
    assert!(from_1(&s) > 0, "0 learnt 1's LSAs");
    s.kill_router(1);
    // 1 originated its LSAs in the first seconds: MaxAge at about 3,600 s.
    s.run_for(3_600_000 - 600_000);
    s.run_for(30_000);
    assert_eq!(from_1(&s), 0, "router 0 still holds 1's LSAs");
}

fn interface_kinds(s: &Sim, r: usize) -> Vec<InterfaceKind> {
    s.instance(r)
        .state()
        .interfaces
        .iter()
        .map(|i| i.kind)
        .collect()
}

#[test]
fn a_segment_on_a_detecting_point_to_point_port_turns_broadcast() {
    let mut s = sim(4);
    s.interface_config.detect_broadcast = true;
    // Three routers behind a switch, and a point-to-point link to a fourth.
    s.add_segment(&[0, 1, 2], InterfaceKind::PointToPoint, 1);
    s.add_link(2, 3, 1);
    s.run_for(30_000);
    for r in 0..3 {
        assert_eq!(
            interface_kinds(&s, r)[0],
            InterfaceKind::Broadcast,
            "router {r}"
        );
    }
    // The real point-to-point link stays so.
    assert_eq!(interface_kinds(&s, 3), vec![InterfaceKind::PointToPoint]);
    assert_eq!(interface_kinds(&s, 2)[1], InterfaceKind::PointToPoint);
    let st = s.instance(0).state();
    assert_eq!(st.interfaces[0].dr, router_id(2), "{st:#?}");
    assert_eq!(st.interfaces[0].bdr, router_id(1));
    for r in 0..4 {
        for d in 0..4 {
            if r != d {
                assert!(s.routers[r].rib.routes.contains_key(&pod(d)), "{r} -> {d}");
            }
        }
    }
    // Next hops on the segment are each router's own address.
    assert_eq!(
        nexthops(&s, 0, 1),
        vec![NextHop {
            ifindex: 1,
            addr: link_local(1, 1)
        }]
    );
    assert_eq!(
        nexthops(&s, 0, 3),
        vec![NextHop {
            ifindex: 1,
            addr: link_local(2, 1)
        }]
    );
    // Settled: nothing flaps any more.
    let runs = s.instance(3).spf_runs();
    s.run_for(30_000);
    assert_eq!(
        s.instance(3).spf_runs(),
        runs,
        "the far router saw changes after settling"
    );
}

#[test]
fn a_neighbour_that_elects_makes_a_detecting_port_broadcast() {
    let mut s = sim(2);
    s.router_interface_config.insert(
        0,
        routing::InterfaceConfig {
            kind: InterfaceKind::Broadcast,
            ..Default::default()
        },
    );
    s.router_interface_config.insert(
        1,
        routing::InterfaceConfig {
            detect_broadcast: true,
            ..Default::default()
        },
    );
    // The segment's own kind is overridden per router below: 0 broadcast,
    // 1 point-to-point with detection.
    s.add_segment(&[0, 1], InterfaceKind::PointToPoint, 1);
    s.run_for(30_000);
    assert_eq!(interface_kinds(&s, 1), vec![InterfaceKind::Broadcast]);
    assert!(s.routers[0].rib.routes.contains_key(&pod(1)));
    assert!(s.routers[1].rib.routes.contains_key(&pod(0)));
}

#[test]
fn a_point_to_point_port_without_detection_stays_so() {
    let mut s = sim(3);
    s.add_segment(&[0, 1, 2], InterfaceKind::PointToPoint, 1);
    s.run_for(10_000);
    assert_eq!(interface_kinds(&s, 0), vec![InterfaceKind::PointToPoint]);
}

// Graceful restart between our own routers: a router that crashes and
// comes back restarting keeps its neighbours' routes still, and a plain
// restart (the control) does not.

fn restarting(n: usize, period: u32) -> InstanceConfig {
    InstanceConfig {
        graceful_restart: GracefulRestart {
            restarting: Some((period, RestartReason::Unknown)),
            ..Default::default()
        },
        ..config(n)
    }
}

/// A line 0 - 1 - 2, converged.
fn line() -> Sim {
    let mut s = Sim::new();
    for i in 0..3 {
        s.add_router(config(i));
    }
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.run_for(20_000);
    for (a, b) in [(0, 2), (2, 0)] {
        assert!(s.routers[a].rib.routes.contains_key(&pod(b)), "{a} -> {b}");
    }
    s
}

fn live_grace_lsas(s: &Sim, r: usize) -> usize {
    s.instance(r)
        .state()
        .lsdb
        .iter()
        .filter(|l| l.ls_type == LsaType::GRACE && l.age < 3600)
        .count()
}

#[test]
fn a_router_that_restarts_gracefully_moves_no_route_of_its_neighbours() {
    let mut s = line();
    let before = [s.routers[0].rib_changes, s.routers[2].rib_changes];
    let routes = [s.routers[0].rib.clone(), s.routers[2].rib.clone()];
    // Router 1 crashes and is back 1 s later (within the dead interval).
    s.kill_router(1);
    s.run_for(1_000);
    s.restart_router(1, restarting(1, 60));
    assert!(s.instance(1).is_restarting());
    // Its Grace-LSA goes out before its first Hello: both neighbours help.
    s.run_for(200);
    assert_eq!(s.instance(0).helping().len(), 1, "0 helps 1");
    assert_eq!(s.instance(2).helping().len(), 1, "2 helps 1");
    s.run_for(20_000);
    assert_eq!(s.instance(1).gr_exit(), Some(GrExit::Completed));
    assert!(
        s.instance(0).helping().is_empty(),
        "helping ended with the flush"
    );
    assert!(s.instance(2).helping().is_empty());
    assert_eq!(live_grace_lsas(&s, 0), 0, "the Grace-LSAs were flushed");
    assert_eq!(
        [s.routers[0].rib_changes, s.routers[2].rib_changes],
        before,
        "the neighbours' routes never moved"
    );
    assert_eq!([s.routers[0].rib.clone(), s.routers[2].rib.clone()], routes);
    // The restarted router computed and handed out its routes at the end.
    for d in [0, 2] {
        assert!(s.routers[1].rib.routes.contains_key(&pod(d)), "1 -> {d}");
    }
}

#[test]
fn a_plain_restart_moves_the_neighbours_routes() {
    // The control: the same crash without graceful restart.
    let mut s = line();
    let before = s.routers[0].rib_changes;
    s.kill_router(1);
    s.run_for(1_000);
    s.restart_router(1, config(1));
    s.run_for(20_000);
    assert!(
        s.routers[0].rib_changes > before,
        "without graceful restart 0 lost and relearnt its routes through 1"
    );
}

#[test]
fn a_neighbour_that_does_not_help_ends_the_restart_at_once() {
    let mut s = line();
    // 1 is back only after its neighbours declared it dead: they no longer
    // list it, so it cannot restore its old adjacencies.
    s.kill_router(1);
    s.run_for(5_000);
    s.restart_router(1, restarting(1, 60));
    s.run_for(10_000);
    assert_eq!(s.instance(1).gr_exit(), Some(GrExit::Inconsistent));
    for d in [0, 2] {
        assert!(s.routers[1].rib.routes.contains_key(&pod(d)), "1 -> {d}");
    }
}

/// A triangle 0 - 1 - 2 - 0 and a fourth router 3 behind 1, whose link to
/// 1 is cut while 1 is down: 1's restart cannot complete (3 never comes
/// back and, cut off, never says so) and lasts its whole period, 2 helps
/// it all along, and 0 can reach 2 without 1.
fn triangle_with_a_lost_neighbour(helper_2: InstanceConfig) -> Sim {
    let mut s = Sim::new();
    s.add_router(config(0));
    s.add_router(config(1));
    s.add_router(helper_2);
    s.add_router(config(3));
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.add_link(2, 0, 1);
    let l13 = s.add_link(1, 3, 1);
    s.run_for(20_000);
    s.kill_router(1);
    s.cut_link(l13, false);
    s.run_for(500);
    s.restart_router(1, restarting(1, 10));
    s.run_for(500);
    assert_eq!(s.instance(2).helping().len(), 1, "2 helps 1");
    s
}

#[test]
fn a_strict_helper_stops_on_a_topology_change() {
    let mut s = triangle_with_a_lost_neighbour(config(2));
    // 0 advertises a new prefix: a topology change, strict helpers stop.
    s.input(0, routing::Input::SetStubPrefixes(vec![pod(0), pod(7)]));
    s.run_for(3_000);
    assert_eq!(s.instance(2).helper_exit(), Some(GrExit::Inconsistent));
}

#[test]
fn a_helper_without_strict_checking_helps_through_a_topology_change() {
    let mut s = triangle_with_a_lost_neighbour(InstanceConfig {
        graceful_restart: GracefulRestart {
            strict: false,
            ..Default::default()
        },
        ..config(2)
    });
    s.input(0, routing::Input::SetStubPrefixes(vec![pod(0), pod(7)]));
    // The same 3 s after the change in which a strict helper stops.
    s.run_for(3_000);
    assert_eq!(s.instance(2).helping().len(), 1, "still helping");
    // 1's period runs out: the restart and the helping end with it.
    s.run_for(10_000);
    assert_eq!(s.instance(1).gr_exit(), Some(GrExit::Expired));
    assert!(s.instance(2).helping().is_empty());
    assert_ne!(s.instance(2).helper_exit(), Some(GrExit::Inconsistent));
}

#[test]
fn helping_ends_with_the_grace_period() {
    let mut s = line();
    s.kill_router(1);
    s.run_for(500);
    s.restart_router(1, restarting(1, 5));
    s.run_for(200);
    assert_eq!(s.instance(0).helping().len(), 1);
    // 1 dies again before it is done: 0 keeps it until the 5 s are over,
    // then lets it go.
    s.kill_router(1);
    s.run_for(3_000);
    assert_eq!(s.instance(0).helping().len(), 1, "still within the period");
    assert!(
        s.routers[0].rib.routes.contains_key(&pod(2)),
        "still routing through 1"
    );
    s.run_for(5_000);
    assert!(s.instance(0).helping().is_empty());
    assert_eq!(s.instance(0).helper_exit(), Some(GrExit::Expired));
    assert!(!s.routers[0].rib.routes.contains_key(&pod(2)), "1 is gone");
}

/// A cable plugged into a settled mesh: the first Hello of a new
/// neighbour is answered at once, so the adjacency is Full within
/// milliseconds rather than up to a HelloInterval; and the LSAs fetched in
/// the database exchange do not hold back the neighbour's new Router-LSA
/// that follows them under MinLSArrival, so the new router routes through
/// it at once. (Routers further away still take the new router's second
/// Router-LSA MinLSArrival after its first: RFC 2328 §13 (5a).)
#[test]
fn a_new_link_is_full_and_routes_within_a_fraction_of_a_hello_interval() {
    let mut s = sim(3);
    s.add_link(0, 1, 1);
    s.run_for(60_000);
    assert!(!nexthops(&s, 0, 1).is_empty());
    let hello_ms = 1000 * u64::from(routing::InterfaceConfig::default().hello_interval);
    let arrival_ms = InstanceConfig::default().min_ls_arrival_ms;
    s.add_link(1, 2, 1);
    let (mut full, mut routed) = (None, None);
    for step in 1..=2_000u64 {
        s.run_for(5);
        let t = step * 5;
        let st = s.instance(2).state();
        if full.is_none()
            && st
                .neighbors
                .iter()
                .any(|n| format!("{:?}", n.state) == "Full")
        {
            full = Some(t);
        }
        if !nexthops(&s, 2, 0).is_empty() {
            routed = Some(t);
            break;
        }
    }
    let (full, routed) = (full.expect("Full"), routed.expect("2 routes to 0"));
    assert!(
        full < hello_ms / 10,
        "Full after {full} ms (HelloInterval {hello_ms} ms)"
    );
    assert!(
        routed < arrival_ms / 4,
        "2 routes to 0 after {routed} ms (MinLSArrival {arrival_ms} ms)"
    );
}
