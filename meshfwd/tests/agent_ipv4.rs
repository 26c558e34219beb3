//! IPv4 with real agents (`--ipv4-cluster-prefix`): each node takes an
//! IPv4 pod prefix and its `.1` by the same rule as IPv6, advertises them
//! in an RFC 5838 instance beside the IPv6 one, and routes IPv4 via its
//! neighbours' IPv6 link-local addresses: no mesh link has an IPv4
//! address.

mod agent_support;

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use agent_support::{Answers as _, mesh};
use lab::{Topology, Wire};
use meshfwd_common::stats::Stat;

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
}
