//! A cheap switch on mesh ports: agents find the segment on their own
//! (network type `auto`) and run it as broadcast, beside each other, beside
//! FRR ospf6d in its default broadcast mode and beside BIRD. And the case
//! that used to renumber a node: agents forced point-to-point on a segment
//! with FRR, whose adjacencies then never settle, keep their identity.

mod agent_support;

// The FRR and BIRD peers of the routing crate's interop tests.
#[allow(dead_code, reason = "this file uses a subset")]
#[path = "../../routing/tests/common/bird.rs"]
mod bird;
#[allow(dead_code, reason = "this file uses a subset")]
#[path = "../../routing/tests/common/frr.rs"]
mod frr;

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use agent_support::{Answers as _, mesh, wait_until};
use bird::{BirdConf, BirdFiles, LinkType};
use frr::Frr;
use ipnet::Ipv6Net;
use lab::{Topology, Wire, agents::AgentMesh};
use meshfwd::{
    api::{InterfaceRow, Query},
    fib::dump::FibKind,
};
use meshfwd_common::stats::Stat;
use routing::InterfaceKind;

const CONVERGE: Duration = Duration::from_secs(40);
/// The peers' router id.
const PEER_ID: Ipv4Addr = Ipv4Addr::new(223, 255, 255, 254);
const PEER_STUB: &str = "2001:db8:99::/64";

fn agents_on_a_switch(tag: &str, agents: &[&str], peer: Option<&str>) -> AgentMesh {
    let mut topo = Topology::new();
    for n in agents.iter().chain(peer.iter()) {
        topo = topo.node(n);
    }
    let mut m = mesh(tag, &topo);
    let members: Vec<&str> = agents.iter().chain(peer.iter()).copied().collect();
    m.lab
        .add_switch("sw", &members)
        .unwrap_or_else(|e| panic!("switch: {e:#}"));
    m
}

/// The agent's view of its interface on the switch (`show interfaces`).
fn switch_iface(m: &AgentMesh, node: &str) -> Option<InterfaceRow> {
    let ifaces: Vec<InterfaceRow> = m.show(node, Query::Interfaces)?;
    ifaces.into_iter().find(|i| i.link.name == "m-sw")
}

/// Wait until every agent runs the switch port as broadcast with Full
/// adjacencies to the DR and BDR, all agreeing on them; return (DR, BDR).
fn wait_segment(m: &AgentMesh, agents: &[&str]) -> (Ipv4Addr, Ipv4Addr) {
    let mut seen = None;
    let settled = lab::agents::wait_for(CONVERGE, || {
        let views: Vec<InterfaceRow> = agents
            .iter()
            .map(|n| switch_iface(m, n))
            .collect::<Option<_>>()?;
        let first = (views[0].dr, views[0].bdr);
        let agree = views
            .iter()
            .all(|v| v.ospf_network == Some(InterfaceKind::Broadcast) && (v.dr, v.bdr) == first);
        seen = Some(views);
        match first {
            (Some(dr), Some(bdr)) if agree && !dr.is_unspecified() && !bdr.is_unspecified() => {
                Some((dr, bdr))
            }
            _ => None,
        }
    });
    settled.unwrap_or_else(|| {
        panic!(
            "the agents did not settle on one DR/BDR: {seen:#?}\nlog of {}:\n{}",
            agents[0],
            m.log(agents[0])
        )
    })
}

/// The two highest router ids (equal priorities: RFC 2328 §9.4).
fn expected_dr_bdr(mut ids: Vec<Ipv4Addr>) -> (Ipv4Addr, Ipv4Addr) {
    ids.sort();
    let dr = ids.pop().expect("two routers");
    (dr, ids.pop().expect("two routers"))
}

/// Identity of each agent: router id and pod prefix.
fn identities(m: &AgentMesh, agents: &[&str]) -> Vec<(Ipv4Addr, Ipv6Net)> {
    agents
        .iter()
        .map(|n| {
            let info = m.wait_agent(n, CONVERGE);
            (info.router_id, info.pod_prefix)
        })
        .collect()
}

/// Panic if any agent changed its router id or pod prefix, or logged that
/// it wanted to.
fn assert_no_identity_change(m: &AgentMesh, agents: &[&str], before: &[(Ipv4Addr, Ipv6Net)]) {
    assert_eq!(identities(m, agents), before, "an agent changed identity");
    for n in agents {
        let log = m.log(n);
        assert!(
            !log.contains("uses our router id"),
            "{n} suspected a duplicate router id:\n{log}"
        );
    }
}

#[test]
fn three_agents_on_a_switch_elect_and_route() {
    let agents = ["a", "b", "c"];
    let mut m = agents_on_a_switch("sw3", &agents, None);
    // And d behind a, so traffic crosses the segment in a's fast path.
    m.lab.add_node("d").unwrap();
    m.lab.add_link("a", "d", Wire::Direct).unwrap();
    for n in ["a", "b", "c", "d"] {
        m.start(n, &[]).unwrap();
    }
    let ids = identities(&m, &agents);
    let (dr, bdr) = wait_segment(&m, &agents);
    assert_eq!(
        (dr, bdr),
        expected_dr_bdr(ids.iter().map(|i| i.0).collect())
    );
    for n in agents {
        assert!(
            m.log(n).contains("link is multi-access"),
            "{n} says why it turned broadcast"
        );
    }
    m.wait_full_reachability(&["a", "b", "c", "d"], CONVERGE);
    // Each next hop on the segment is its router's own address (and so
    // its own MAC in the fast path).
    let c = m.node_address("c");
    let route = m
        .routes("a")
        .into_iter()
        .find(|r| r.prefix.contains(&std::net::IpAddr::V6(c)))
        .expect("a's route to c");
    let c_ll = m.lab.node("c").link_local("m-sw").unwrap();
    assert!(
        route.next_hops.iter().any(|h| h.via == c_ll),
        "a reaches c through c's own address: {route:?}"
    );
    let c_mac = m
        .lab
        .node("c")
        .run(&["ip", "-br", "link", "show", "dev", "m-sw"])
        .unwrap()
        .split_whitespace()
        .nth(2)
        .expect("c's MAC")
        .to_owned();
    let fib = m.fib("a");
    let to_c = fib
        .iter()
        .find(|r| r.prefix.contains(&std::net::IpAddr::from(c)) && r.prefix.prefix_len() == 128)
        .expect("a's FIB entry for c");
    wait_until("a resolves c's MAC on the segment", CONVERGE, || {
        m.fib("a").iter().any(|r| {
            r.prefix == to_c.prefix
                && r.next_hops
                    .iter()
                    .any(|h| h.dst_mac.is_some_and(|mac| mac.to_string() == c_mac))
        })
    });
    // d -> c: a's XDP forwards onto the segment, to c's MAC.
    let before = m.xdp_counter("a", Stat::Redirect);
    m.lab
        .node("d")
        .tcp_echo(m.lab.node("c"), c, 256 * 1024, Duration::from_secs(15))
        .expect("TCP from d to c across a and the switch");
    assert!(
        m.xdp_counter("a", Stat::Redirect) > before + 100,
        "a's fast path forwarded onto the segment"
    );
    assert_no_identity_change(&m, &agents, &ids);
}

#[test]
fn two_agents_and_frr_in_its_default_broadcast_mode() {
    let agents = ["a", "b"];
    let mut m = agents_on_a_switch("swfrr", &agents, Some("f"));
    let frr = Frr::start_on(
        &m.lab,
        "f",
        PEER_ID,
        PEER_STUB,
        None,
        LinkType::Broadcast,
        &[],
    );
    for n in agents {
        m.start(n, &[]).unwrap();
    }
    let ids = identities(&m, &agents);
    let (dr, bdr) = wait_segment(&m, &agents);
    let mut all: Vec<Ipv4Addr> = ids.iter().map(|i| i.0).collect();
    all.push(PEER_ID);
    assert_eq!((dr, bdr), expected_dr_bdr(all), "{}", frr.describe(&m.lab));
    wait_until("FRR Full with both agents", CONVERGE, || {
        ids.iter().all(|(id, _)| frr.is_full_with(&m.lab, *id))
    });
    let frr_if = frr
        .vtysh(&m.lab, "show ipv6 ospf6 interface m-sw")
        .unwrap_or_default();
    assert!(
        frr_if.contains(&format!("DR: {dr} BDR: {bdr}")),
        "FRR agrees on DR {dr} and BDR {bdr}:\n{frr_if}"
    );
    m.wait_full_reachability(&agents, CONVERGE);
    // Both ways between the agents' /128s and FRR's address.
    let frr_addr = "2001:db8:99::1".parse().unwrap();
    for n in agents {
        let addr = m.node_address(n);
        wait_until(&format!("FRR routes to {n}"), CONVERGE, || {
            frr.has_route(&m.lab, &format!("{addr}/128"))
        });
        m.lab
            .node(n)
            .wait_ping6(frr_addr, None, CONVERGE)
            .unwrap_or_else(|e| {
                panic!(
                    "{n} -> FRR: {e:#}\n{}\n{n}'s routes: {:?}\nkernel: {}",
                    frr.describe(&m.lab),
                    m.routes(n),
                    m.lab
                        .node(n)
                        .run(&["ip", "-6", "route"])
                        .unwrap_or_default()
                )
            });
    }
    // FRR's address is on the segment itself (its prefix is the segment's,
    // advertised by the DR): an on-link route the kernel forwards, and the
    // fast path hands such packets to it.
    let kernel = m
        .lab
        .node("a")
        .run(&["ip", "-6", "route", "show", PEER_STUB])
        .unwrap_or_default();
    assert!(
        kernel.contains("dev m-sw") && !kernel.contains("via"),
        "on-link kernel route: {kernel}"
    );
    let fib = m.fib("a");
    assert!(
        fib.iter()
            .any(|r| r.prefix.to_string() == PEER_STUB && r.kind == FibKind::OnLink),
        "{fib:?}"
    );
    assert_no_identity_change(&m, &agents, &ids);
}

#[test]
fn two_agents_and_bird_on_a_switch() {
    let agents = ["a", "b"];
    let mut m = agents_on_a_switch("swbird", &agents, Some("r"));
    let files = BirdFiles::new(m.lab.work_dir(), "r");
    files.write_conf(&BirdConf {
        router_id: PEER_ID,
        interfaces: vec![("m-sw".into(), LinkType::Broadcast)],
        stubnets: vec![PEER_STUB.into()],
        externals: Vec::new(),
        keys: Vec::new(),
        ipv4: false,
    });
    let args = files.bird_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    m.lab.node("r").spawn("bird", &args).expect("start BIRD");
    for n in agents {
        m.start(n, &[]).unwrap();
    }
    let birdc = |cmd: &str| {
        let args = files.birdc_args(cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        m.lab.node("r").run(&args).unwrap_or_default()
    };
    let ids = identities(&m, &agents);
    let (dr, bdr) = wait_segment(&m, &agents);
    let mut all: Vec<Ipv4Addr> = ids.iter().map(|i| i.0).collect();
    all.push(PEER_ID);
    assert_eq!((dr, bdr), expected_dr_bdr(all));
    wait_until("BIRD Full with both agents", CONVERGE, || {
        let nbrs = bird::parse_neighbors(&birdc("show ospf neighbors"));
        ids.iter()
            .all(|(id, _)| nbrs.iter().any(|n| n.router_id == *id && n.is_full()))
    });
    let bird_if = birdc("show ospf interface");
    assert!(
        bird_if.contains(&format!("Designated router (ID): {dr}"))
            && bird_if.contains(&format!("Backup designated router (ID): {bdr}")),
        "BIRD agrees on DR {dr} and BDR {bdr}:\n{bird_if}"
    );
    m.wait_full_reachability(&agents, CONVERGE);
    let stub: Ipv6Net = PEER_STUB.parse().unwrap();
    for n in agents {
        wait_until(&format!("{n} routes to BIRD's stub"), CONVERGE, || {
            m.routes(n)
                .iter()
                .any(|r| r.prefix == ipnet::IpNet::V6(stub))
        });
        let addr = m.node_address(n);
        wait_until(&format!("BIRD routes to {n}"), CONVERGE, || {
            birdc("show route protocol ospf1").contains(&format!("{addr}/128"))
        });
    }
    assert_no_identity_change(&m, &agents, &ids);
}

/// Agents configured point-to-point on a segment with FRR (broadcast):
/// their exchanges reach every router and the adjacencies keep failing.
/// The issue saw a node renumber five times in 70 s this way.
#[test]
fn a_misconfigured_segment_flaps_for_two_minutes_without_an_identity_change() {
    let agents = ["a", "b"];
    let mut m = agents_on_a_switch("swflap", &agents, Some("f"));
    let frr = Frr::start_on(
        &m.lab,
        "f",
        PEER_ID,
        PEER_STUB,
        None,
        LinkType::Broadcast,
        &[],
    );
    for n in agents {
        m.start(n, &["--network", "point-to-point"]).unwrap();
    }
    let ids = identities(&m, &agents);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            identities(&m, &agents),
            ids,
            "an agent changed identity after {:?}",
            start.elapsed()
        );
    }
    for n in agents {
        let iface = switch_iface(&m, n).expect("the switch port");
        assert_eq!(
            iface.ospf_network,
            Some(InterfaceKind::PointToPoint),
            "{n} kept its setting"
        );
        assert!(
            m.log(n)
                .contains("point-to-point link with more than one neighbour"),
            "{n} warned about the segment"
        );
    }
    assert_no_identity_change(&m, &agents, &ids);
    for n in agents {
        let restarts = m.log(n).matches("new=ExStart").count();
        eprintln!("{n}: {restarts} exchanges started in 120 s");
        // Else this test would show nothing (measured: 156 and 201).
        assert!(
            restarts >= 10,
            "{n}'s adjacencies did flap ({restarts} exchanges started)"
        );
    }
    drop(frr);
}
