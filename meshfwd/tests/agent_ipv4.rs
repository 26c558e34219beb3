//! IPv4 with real agents (`--ipv4-cluster-prefix`): each node takes an
//! IPv4 pod prefix and its `.1` by the same rule as IPv6, advertises them
//! in an RFC 5838 instance beside the IPv6 one, and routes IPv4 via its
//! neighbours' IPv6 link-local addresses: no mesh link has an IPv4
//! address. Dual-stack pods wired by `meshfwd-cni` three hops apart talk
//! IPv4 through XDP on the transit nodes, and a loud cut of the path their
//! stream takes does not stop it. With BIRD (both families) between two
//! agents, the pods' IPv4 traffic crosses it.

mod agent_support;

#[allow(dead_code, reason = "this file uses a subset")]
#[path = "../../routing/tests/common/bird.rs"]
mod bird;

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use agent_support::{Answers as _, mesh};
use lab::{Topology, Wire, pods::built_bin};
use meshfwd_common::stats::Stat;
use serde_json::json;

const CONVERGE: Duration = Duration::from_secs(30);
const CLUSTER4: &str = "198.18.0.0/15";

#[test]
fn a_line_of_three_reaches_every_ipv4_node_address_via_ipv6_next_hops() {
    let nodes = ["a", "b", "c"];
    let mut m = mesh("ipv4line", &Topology::new().line(&nodes, Wire::Cable));
    for n in nodes {
        m.start(n, &["--ipv4-cluster-prefix", CLUSTER4])
            .unwrap_or_else(|e| panic!("starting {n}: {e:#}"));
    }
    m.wait_full_reachability(&nodes, CONVERGE);

    // Each node published an IPv4 pod prefix of the cluster and its `.1`,
    // all distinct.
    let v4: Vec<_> = nodes
        .iter()
        .map(|n| {
            m.node_state(n)
                .ipv4
                .unwrap_or_else(|| panic!("{n} published no IPv4 prefixes"))
        })
        .collect();
    let cluster: ipnet::Ipv4Net = CLUSTER4.parse().unwrap();
    for p in &v4 {
        assert!(cluster.contains(&p.pod_prefix), "{p:?}");
        assert_eq!(p.pod_prefix.prefix_len(), 24);
        assert!(p.pod_prefix.contains(&p.node_address));
    }
    let distinct: BTreeSet<_> = v4.iter().map(|p| p.pod_prefix).collect();
    assert_eq!(distinct.len(), 3, "{v4:?}");

    // Every node reaches every other's IPv4 address.
    for (i, a) in nodes.iter().enumerate() {
        for (j, b) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let dst = IpAddr::V4(v4[j].node_address);
            if let Err(e) = m.lab.node(a).wait_ping(dst, CONVERGE) {
                panic!(
                    "{a} cannot reach {b} ({dst}): {e:#}\n{a}'s IPv4 routes: {}\nlog of {a}:\n{}",
                    m.lab
                        .node(a)
                        .run(&["ip", "-4", "route"])
                        .unwrap_or_default(),
                    m.log(a)
                );
            }
        }
    }

    // a's route to c's pod prefix goes via b's IPv6 link-local address,
    // and no mesh link of any node has an IPv4 address.
    let routes = m
        .lab
        .node("a")
        .run(&["ip", "-4", "route", "show", "proto", "198"])
        .expect("ip route");
    let to_c = routes
        .lines()
        .find(|l| l.starts_with(&v4[2].pod_prefix.to_string()))
        .unwrap_or_else(|| panic!("no route to c's pod prefix on a: {routes}"));
    assert!(to_c.contains("via inet6 fe80::"), "{to_c}");
    for n in nodes {
        for iface in m.lab.node(n).ifaces() {
            let addrs = m
                .lab
                .node(n)
                .run(&["ip", "-4", "-o", "addr", "show", "dev", &iface])
                .unwrap_or_default();
            assert!(addrs.trim().is_empty(), "{n}/{iface} has IPv4: {addrs}");
        }
    }
    // b's XDP program saw the IPv4 traffic it carried.
    assert!(m.xdp_counter("b", Stat::Ipv4) > 0);

    // `show` answers for the IPv4 instance: the node's IPv4 side, a's
    // Full neighbour in it, and a's route to c's pod prefix via b's IPv6
    // link-local address.
    let node: meshfwd::api::NodeInfo = m.show("a", "node").expect("show node");
    let info = node.ipv4.expect("show node has the IPv4 side");
    assert_eq!(
        (info.pod_prefix, info.node_address, info.neighbors_full),
        (v4[0].pod_prefix, v4[0].node_address, 1)
    );
    assert!(info.routes >= 4, "{info:?}");
    let neighbors: Vec<routing::state::NeighborState> = m
        .show("a", "neighbors --ipv4")
        .expect("show neighbors --ipv4");
    assert_eq!(neighbors.len(), 1, "{neighbors:?}");
    assert!(neighbors[0].addr.is_unicast_link_local());
    let routes: Vec<meshfwd::api::RouteRow> =
        m.show("a", "routes --ipv4").expect("show routes --ipv4");
    let to_c = routes
        .iter()
        .find(|r| r.prefix == ipnet::IpNet::V4(v4[2].pod_prefix))
        .unwrap_or_else(|| panic!("no IPv4 route to c's pods: {routes:?}"));
    assert_eq!(to_c.next_hops.len(), 1);
    assert!(to_c.next_hops[0].via.is_unicast_link_local());
    // The IPv6 answers stay IPv6.
    let routes6: Vec<meshfwd::api::RouteRow> = m.show("a", "routes").expect("show routes");
    assert!(routes6.iter().all(|r| r.prefix.addr().is_ipv6()));
}

#[test]
fn pods_three_hops_apart_talk_ipv4_through_xdp_and_a_loud_cut_keeps_their_stream() {
    // A ring of six: a and d are three hops apart both ways round.
    let nodes = ["a", "b", "c", "d", "e", "f"];
    let mut m = mesh("ipv4pods", &Topology::new().ring(&nodes, Wire::Cable));
    for n in nodes {
        m.start(n, &["--ipv4-cluster-prefix", CLUSTER4])
            .unwrap_or_else(|e| panic!("starting {n}: {e:#}"));
    }
    m.wait_full_reachability(&nodes, CONVERGE);
    let cni = built_bin(None, "MESHFWD_CNI_BIN", "cni", "meshfwd-cni").expect("meshfwd-cni");
    let pa = m.add_pod("a", "pa", &cni, &json!({})).expect("pod on a");
    let pd = m.add_pod("d", "pd", &cni, &json!({})).expect("pod on d");
    let (a4, d4) = (
        pa.addr4.expect("the pod on a got IPv4"),
        pd.addr4.expect("the pod on d got IPv4"),
    );
    let d_prefix = m.node_state("d").ipv4.expect("d runs IPv4").pod_prefix;
    assert!(d_prefix.contains(&d4), "{d4} outside d's {d_prefix}");
    if let Err(e) = m.lab.node("pa").wait_ping(IpAddr::V4(d4), CONVERGE) {
        panic!(
            "pod on a cannot reach {d4}: {e:#}\na's IPv4 routes: {}",
            m.lab
                .node("a")
                .run(&["ip", "-4", "route"])
                .unwrap_or_default()
        );
    }

    // A TCP stream from a's pod to d's; which side of the ring carries it?
    let transit = ["b", "c", "e", "f"];
    let xdp = |m: &lab::agents::AgentMesh| transit.map(|n| m.xdp_counter(n, Stat::Redirect));
    let kernel4 = |m: &lab::agents::AgentMesh| {
        transit.map(|n| m.lab.node(n).kernel_forwarded().expect("snmp").1)
    };
    let (xdp_before, kern_before) = (xdp(&m), kernel4(&m));
    let stream =
        lab::iperf::Stream::start(&m.lab, ("pa", IpAddr::V4(a4)), ("pd", IpAddr::V4(d4)), 8)
            .expect("iperf3");
    std::thread::sleep(Duration::from_secs(3));
    let (xdp_mid, kern_mid) = (xdp(&m), kernel4(&m));
    let carried: Vec<u64> = (0..4).map(|i| xdp_mid[i] - xdp_before[i]).collect();
    // b and c are one side of the ring, f and e the other.
    let (via, side, other) = if carried[0] >= carried[3] {
        ("b", [0, 1], "f")
    } else {
        ("f", [3, 2], "b")
    };
    for i in side {
        assert!(
            carried[i] > 10_000,
            "transit node {} forwarded the stream in XDP: {carried:?} (b, c, e, f)",
            transit[i]
        );
    }
    for i in 0..4 {
        let k = kern_mid[i] - kern_before[i];
        assert!(
            k < 10,
            "the kernel forwarded {k} IPv4 packets on transit node {} during the stream",
            transit[i]
        );
    }

    // Cut a's link on that side, loudly: the agents reroute on carrier loss.
    m.lab.cut_loud("a", via).expect("cut");
    let other_before = m.xdp_counter(other, Stat::Redirect);
    let report = stream.finish().expect("the stream");
    let moved = m.xdp_counter(other, Stat::Redirect) - other_before;
    assert!(
        moved > 10_000,
        "after the cut the stream crossed {other} in XDP ({moved} frames)"
    );
    let last = report.last(3);
    assert!(
        last.iter().all(|b| *b > 1e6),
        "the stream kept going after the cut: last intervals {last:?} bit/s"
    );
    eprintln!("IPv4 stream via {via}, then {other}: last intervals {last:?} bit/s");
}

#[test]
fn bird_in_transit_carries_ipv4_pod_traffic_between_agents() {
    // a - r - c, r a BIRD router with an OSPFv3 instance per family.
    let mut m = mesh(
        "ipv4bird",
        &Topology::new().line(&["a", "r", "c"], Wire::Cable),
    );
    let r = m.lab.node("r");
    let ifaces = r.ifaces();
    // BIRD 2.0.12 installs an IPv4 next hop (our node address, from our
    // Link-LSA) only inside a subnet of its interface: its mesh links get
    // an address whose subnet covers the nodes' range, so every node
    // address is on-link. That address sits in a /24 BIRD advertises (a
    // stubnet outside the nodes' range, so no node can pick it), so the
    // nodes have a route back to it and answer its ARP (loose
    // reverse-path filtering).
    for i in &ifaces {
        r.run(&["ip", "addr", "add", "198.19.200.1/15", "dev", i])
            .unwrap();
    }
    r.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
    r.run(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        .unwrap();
    let names: Vec<&str> = ifaces.iter().map(String::as_str).collect();
    let files = bird::BirdFiles::new(m.lab.work_dir(), "r");
    let v6 = bird::BirdConf::ptp(std::net::Ipv4Addr::new(10, 0, 0, 99), &names, &[]);
    let v4 = bird::BirdConf {
        ipv4: true,
        ..bird::BirdConf::ptp(v6.router_id, &names, &["198.19.200.0/24"])
    };
    // BIRD forwards: its routes go to the kernel.
    let conf = v6.render_with(&v4, &files.log)
        + "protocol kernel { ipv6 { export all; }; }\n\
           protocol kernel { ipv4 { export all; }; }\n";
    std::fs::write(&files.conf, conf).expect("BIRD configuration");
    let args = files.bird_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    r.spawn("bird", &args).expect("start BIRD");
    for n in ["a", "c"] {
        m.start(n, &["--ipv4-cluster-prefix", "198.18.0.0/16"])
            .unwrap_or_else(|e| panic!("starting {n}: {e:#}"));
    }
    m.wait_full_reachability(&["a", "c"], CONVERGE);

    let cni = built_bin(None, "MESHFWD_CNI_BIN", "cni", "meshfwd-cni").expect("meshfwd-cni");
    let pa = m.add_pod("a", "pa", &cni, &json!({})).expect("pod on a");
    let pc = m.add_pod("c", "pc", &cni, &json!({})).expect("pod on c");
    let (a4, c4) = (pa.addr4.expect("IPv4 on a"), pc.addr4.expect("IPv4 on c"));
    let birdc = |cmd: &str| {
        let args = files.birdc_args(cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        m.lab.node("r").run(&args).unwrap_or_default()
    };
    if let Err(e) = m.lab.node("pa").wait_ping(IpAddr::V4(c4), CONVERGE) {
        panic!(
            "pod on a cannot reach {c4} through BIRD: {e:#}\nBIRD's IPv4 routes: {}\n\
             r's kernel: {}\na's IPv4 routes: {}",
            birdc("show route protocol ospf2"),
            m.lab
                .node("r")
                .run(&["ip", "-4", "route"])
                .unwrap_or_default(),
            m.lab
                .node("a")
                .run(&["ip", "-4", "route"])
                .unwrap_or_default()
        );
    }
    // a routes c's pods via BIRD's IPv6 link-local address; BIRD routes
    // them via c's node address, on-link.
    let c_prefix = m.node_state("c").ipv4.expect("c runs IPv4");
    let dst = c_prefix.pod_prefix.to_string();
    let route_on = |n: &str| {
        m.lab
            .node(n)
            .run(&["ip", "-4", "route", "show", &dst])
            .unwrap()
    };
    let (a_routes, r_routes) = (route_on("a"), route_on("r"));
    assert!(a_routes.contains("via inet6 fe80::"), "{a_routes}");
    assert!(
        r_routes.contains(&format!("via {}", c_prefix.node_address)),
        "{r_routes}"
    );

    // A TCP stream between the pods crosses BIRD's kernel.
    let before = m.lab.node("r").kernel_forwarded().unwrap().1;
    let report =
        lab::iperf::Stream::start(&m.lab, ("pa", IpAddr::V4(a4)), ("pc", IpAddr::V4(c4)), 2)
            .and_then(lab::iperf::Stream::finish)
            .expect("an IPv4 stream through BIRD");
    let forwarded = m.lab.node("r").kernel_forwarded().unwrap().1 - before;
    assert!(
        report.received > 1_000_000 && forwarded > 1_000,
        "{} bytes received, {forwarded} packets forwarded by r",
        report.received
    );
    eprintln!(
        "through BIRD: {} bytes, {forwarded} IPv4 packets forwarded by r's kernel",
        report.received
    );
}
