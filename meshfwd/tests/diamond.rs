//! A diamond of four routers between two hosts, forwarding with the XDP
//! fast path from maps that `meshfwd fib apply` fills from a static route
//! table:
//!
//! ```text
//!               b
//!             /   \
//!   h1 --- a         d --- h2
//!             \   /
//!               c
//! ```
//!
//! Ping and an iperf3 TCP stream cross it; the transit node's kernel
//! forwarding counter stays flat while our forwarded counter rises; cutting
//! the transit link the stream uses and clearing the alive flags of its next
//! hops keeps the stream going over the other path. Once with IPv6 hosts,
//! once with IPv4 hosts: their routes go via the routers' IPv6 link-local
//! addresses, and no router link has an IPv4 address.

mod agent_support;

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use agent_support::{MESHFWD, meshfwd_cli};
use lab::{Lab, Topology, Wire};
use meshfwd::{api::StatsReport, fib::dump::FibRow};
use meshfwd_common::stats::Stat;

/// One family's addresses: the hosts, the routers' ends of the host
/// links, the two host subnets and what the hosts route through a and d.
struct Family {
    h1: &'static str,
    a_h1: &'static str,
    h2: &'static str,
    d_h2: &'static str,
    subnet_len: u8,
    net1: &'static str,
    net2: &'static str,
    supernet: &'static str,
    /// `ip` family flag.
    flag: &'static str,
}

const V6: Family = Family {
    h1: "2001:db8:1::1",
    a_h1: "2001:db8:1::a",
    h2: "2001:db8:2::2",
    d_h2: "2001:db8:2::d",
    subnet_len: 64,
    net1: "2001:db8:1::/64",
    net2: "2001:db8:2::/64",
    supernet: "2001:db8::/32",
    flag: "-6",
};

const V4: Family = Family {
    h1: "198.18.1.1",
    a_h1: "198.18.1.10",
    h2: "198.18.2.2",
    d_h2: "198.18.2.13",
    subnet_len: 24,
    net1: "198.18.1.0/24",
    net2: "198.18.2.0/24",
    supernet: "198.18.0.0/15",
    flag: "-4",
};

fn stat(node: &lab::Node, stat: Stat) -> u64 {
    let report: StatsReport =
        serde_json::from_str(&meshfwd_cli(node, &["show", "stats", "--json"])).expect("stats JSON");
    report.xdp.expect("XDP counters").get(stat)
}

/// The kernel's count of forwarded packets of both families in `node`.
fn kernel_forwarded(node: &lab::Node) -> u64 {
    let (v6, v4) = node.kernel_forwarded().expect("kernel forwarding counters");
    v6 + v4
}

fn route_file(lab: &Lab, node: &str, routes: &[(&str, &[&str])]) -> std::path::PathBuf {
    let mut out = Vec::new();
    for (prefix, via) in routes {
        let hops: Vec<serde_json::Value> = via
            .iter()
            .map(|peer| {
                let l = lab.link(node, peer);
                let (my_if, peer_if) = if l.a == node {
                    (&l.a_if, &l.b_if)
                } else {
                    (&l.b_if, &l.a_if)
                };
                let ll = lab.node(peer).link_local(peer_if).expect("peer link-local");
                serde_json::json!({"iface": my_if, "addr": ll.to_string()})
            })
            .collect();
        out.push(serde_json::json!({"prefix": prefix, "via": hops}));
    }
    let path = lab.work_dir().join(format!("routes-{node}.json"));
    std::fs::write(&path, serde_json::json!({"routes": out}).to_string()).expect("write routes");
    path
}

fn iface_to(lab: &Lab, node: &str, peer: &str) -> String {
    let l = lab.link(node, peer);
    if l.a == node {
        l.a_if.clone()
    } else {
        l.b_if.clone()
    }
}

fn wait_resolved(node: &lab::Node, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<FibRow> =
            serde_json::from_str(&meshfwd_cli(node, &["fib", "show", "--json"])).expect("fib JSON");
        let hops: Vec<_> = rows.iter().flat_map(|r| &r.next_hops).collect();
        if hops.len() >= want && hops.iter().all(|h| h.dst_mac.is_some()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "next hops of {} never resolved: {rows:#?}",
            node.name()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn diamond_forwards_in_xdp_and_survives_a_transit_cut() {
    diamond("diamond", &V6);
}

#[test]
fn ipv4_diamond_forwards_in_xdp_via_ipv6_next_hops_and_survives_a_transit_cut() {
    diamond("diamond4", &V4);
}

fn diamond(tag: &str, f: &Family) {
    let topo = Topology::new()
        .node("h1")
        .node("a")
        .node("b")
        .node("c")
        .node("d")
        .node("h2")
        .link("h1", "a", Wire::Direct)
        .link("a", "b", Wire::Direct)
        .link("a", "c", Wire::Direct)
        .link("b", "d", Wire::Direct)
        .link("c", "d", Wire::Direct)
        .link("d", "h2", Wire::Direct);
    let lab = Lab::build(tag, &topo).expect("build lab");
    let n = |name: &str| lab.node(name);

    // Hosts: one subnet each side, routed through a and d.
    let h1_if = iface_to(&lab, "h1", "a");
    let a_h1_if = iface_to(&lab, "a", "h1");
    let h2_if = iface_to(&lab, "h2", "d");
    let d_h2_if = iface_to(&lab, "d", "h2");
    for (node, iface, addr) in [
        ("h1", &h1_if, f.h1),
        ("a", &a_h1_if, f.a_h1),
        ("h2", &h2_if, f.h2),
        ("d", &d_h2_if, f.d_h2),
    ] {
        let addr = format!("{addr}/{}", f.subnet_len);
        let mut cmd = vec!["ip", f.flag, "addr", "add", &addr, "dev", iface];
        if f.flag == "-6" {
            cmd.push("nodad");
        }
        n(node).run(&cmd).expect("address");
    }
    n("h1")
        .run(&["ip", f.flag, "route", "add", f.supernet, "via", f.a_h1])
        .expect("h1 route");
    n("h2")
        .run(&["ip", f.flag, "route", "add", f.supernet, "via", f.d_h2])
        .expect("h2 route");
    // The routers forward IPv4 too (the first segments of a flow and the
    // last hop take the kernel's path).
    for node in ["a", "b", "c", "d"] {
        n(node)
            .run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .expect("IPv4 forwarding");
    }

    // XDP on every router NIC.
    for node in ["a", "b", "c", "d"] {
        for iface in n(node).ifaces() {
            meshfwd_cli(n(node), &["attach", "--iface", &iface]);
        }
    }

    // Static routes, fed to the map writer (which also installs them in the
    // kernel under our protocol id and tracks neighbours).
    type Routes<'a> = Vec<(&'a str, &'a [&'a str])>;
    let tables: [(&str, Routes); 4] = [
        ("a", vec![(f.net2, &["b", "c"])]),
        ("b", vec![(f.net2, &["d"]), (f.net1, &["a"])]),
        ("c", vec![(f.net2, &["d"]), (f.net1, &["a"])]),
        ("d", vec![(f.net1, &["b", "c"])]),
    ];
    for (node, routes) in &tables {
        let file = route_file(&lab, node, routes);
        n(node)
            .spawn(
                "fib",
                &[
                    MESHFWD,
                    "--bpffs",
                    &n(node).bpffs_dir().to_string_lossy(),
                    "fib",
                    "apply",
                    "--routes",
                    &file.to_string_lossy(),
                ],
            )
            .expect("spawn fib apply");
    }
    for (node, want) in [("a", 2), ("b", 2), ("c", 2), ("d", 2)] {
        wait_resolved(n(node), want);
    }
    // The kernel has the same routes, under our protocol id (IPv4 ones via
    // inet6 next hops).
    let kroutes = n("a")
        .run(&["ip", f.flag, "route", "show", "proto", "198"])
        .expect("ip route");
    assert!(kroutes.contains(f.net2), "kernel route on a: {kroutes}");
    assert!(
        kroutes.matches("nexthop").count() == 2,
        "ECMP route in the kernel on a: {kroutes}"
    );
    if f.flag == "-4" {
        assert_eq!(
            kroutes.matches("via inet6 fe80::").count(),
            2,
            "IPv4 via IPv6 link-local next hops on a: {kroutes}"
        );
    }

    // Ping across.
    n("h1")
        .wait_ping(f.h2.parse::<IpAddr>().unwrap(), Duration::from_secs(10))
        .expect("h1 reaches h2");

    // A TCP stream: which transit node carries it?
    let fwd_before = [stat(n("b"), Stat::Redirect), stat(n("c"), Stat::Redirect)];
    let kern_before = [kernel_forwarded(n("b")), kernel_forwarded(n("c"))];
    let stream = lab::iperf::Stream::start(
        &lab,
        ("h1", f.h1.parse().unwrap()),
        ("h2", f.h2.parse().unwrap()),
        8,
    )
    .expect("iperf3");
    std::thread::sleep(Duration::from_secs(3));
    let fwd_mid = [stat(n("b"), Stat::Redirect), stat(n("c"), Stat::Redirect)];
    let kern_mid = [kernel_forwarded(n("b")), kernel_forwarded(n("c"))];
    let carried: Vec<u64> = (0..2).map(|i| fwd_mid[i] - fwd_before[i]).collect();
    let (via, other) = if carried[0] >= carried[1] {
        ("b", "c")
    } else {
        ("c", "b")
    };
    let via_i = if via == "b" { 0 } else { 1 };
    assert!(
        carried[via_i] > 10_000,
        "the transit node forwarded the stream in XDP: {carried:?}"
    );
    // Transit forwarding never reached the kernel (a few ND or stray
    // packets at most).
    for i in 0..2 {
        let k = kern_mid[i] - kern_before[i];
        assert!(
            k < 10,
            "kernel forwarded {k} packets on transit node {} during the stream",
            ["b", "c"][i]
        );
    }

    // Cut the transit link a-<via>; clear the alive flags of the next hops
    // through it on both ends of the diamond (fast reroute).
    lab.cut_loud("a", via).expect("cut");
    meshfwd_cli(
        n("a"),
        &[
            "fib",
            "alive",
            "--iface",
            &iface_to(&lab, "a", via),
            "--down",
        ],
    );
    meshfwd_cli(
        n("d"),
        &[
            "fib",
            "alive",
            "--iface",
            &iface_to(&lab, "d", via),
            "--down",
        ],
    );
    let other_before = stat(n(other), Stat::Redirect);

    // The client finishes by itself (-t 8); bounded wait.
    let report = stream.finish().expect("the stream");
    let other_after = stat(n(other), Stat::Redirect);
    assert!(
        other_after - other_before > 10_000,
        "after the cut the stream crossed {other} in XDP ({} packets)",
        other_after - other_before
    );
    let last = report.last(3);
    assert!(
        last.iter().all(|b| *b > 1e6),
        "the stream kept going after the cut: last intervals {last:?} bit/s"
    );
    let received = report.received;
    assert!(received > 10_000_000, "iperf3 moved {received} bytes");
    eprintln!(
        "stream via {via}, then {other}; last intervals {last:?} bit/s; {received} bytes; log {}",
        Path::new(&lab.work_dir()).display()
    );
}
