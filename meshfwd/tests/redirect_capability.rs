//! A mesh link whose far end cannot take XDP redirects: a veth whose peer
//! runs neither XDP nor GRO (the same as a NIC without `ndo_xdp_xmit`). The
//! kernel drops frames redirected into such a device while the program
//! counts them as sent. The agent asks the kernel (`netdev` xdp-features)
//! and keeps such devices out of the devmap, so the fast path hands their
//! traffic to the kernel, which delivers it, and counts why.

mod agent_support;

use std::time::Duration;

use agent_support::{Answers as _, mesh, meshfwd_cli, wait_until};
use lab::{Topology, Wire};
use meshfwd_common::stats::Stat;

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn transit_toward_a_device_that_cannot_take_redirects_goes_through_the_kernel() {
    let topo = Topology::new().line(&["a", "b", "c"], Wire::Direct);
    let mut m = mesh("noxmit", &topo);
    m.start("a", &[]).unwrap();
    m.start("b", &[]).unwrap();
    // c runs no XDP, so only GRO keeps its end able to take redirects.
    m.start("c", &["--no-xdp"]).unwrap();
    for n in ["a", "b", "c"] {
        m.wait_agent(n, CONVERGE);
    }
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let link = m.lab.link("b", "c").clone();
    let c_if = if link.a == "c" { link.a_if } else { link.b_if };
    // GRO off with the link up (the kernel ignores the change on a link
    // that is down): b's end loses ndo_xdp_xmit.
    m.lab
        .node("c")
        .run(&["ethtool", "-K", &c_if, "gro", "off"])
        .expect("GRO off on c's end");
    wait_until("b's writer notices", CONVERGE, || {
        m.log("b").contains("no longer takes XDP redirects")
    });

    // TCP from a to c across b: once b's conntrack has seen the handshake,
    // b's XDP would redirect the segments into the b-c link. They must
    // arrive, through b's kernel, and b must say why.
    let before = m.xdp_counter("b", Stat::NoEgressDev);
    let c = m.node_address("c");
    m.lab
        .node("a")
        .tcp_echo(m.lab.node("c"), c, 256 * 1024, Duration::from_secs(15))
        .expect("TCP from a to c across b");
    let after = m.xdp_counter("b", Stat::NoEgressDev);
    assert!(
        after >= before + 100,
        "b passed the segments for c to its kernel ({before} -> {after})"
    );

    // GRO back on: b puts the device back on the fast path.
    m.lab
        .node("c")
        .run(&["ethtool", "-K", &c_if, "gro", "on"])
        .expect("GRO on");
    wait_until("b's writer notices again", CONVERGE, || {
        m.log("b").contains("takes XDP redirects again")
    });
    let before = m.xdp_counter("b", Stat::Redirect);
    m.lab
        .node("a")
        .tcp_echo(m.lab.node("c"), c, 256 * 1024, Duration::from_secs(15))
        .expect("TCP from a to c across b, fast again");
    assert!(m.xdp_counter("b", Stat::Redirect) > before + 100);
}

/// The same device, refusing while b's devmap still lists it: b's agent is
/// gone (killed), so nothing takes the device out, and the pinned XDP keeps
/// redirecting into it. The pinned tracepoint programs count every frame
/// the device refused, on b only, however the namespaces' ifindexes repeat.
#[test]
fn redirects_the_egress_device_refuses_are_counted_without_an_agent() {
    let topo = Topology::new().line(&["a", "b", "c"], Wire::Direct);
    let mut m = mesh("xmitfail", &topo);
    m.start("a", &["--netfilter", "ignore"]).unwrap();
    // Pings are fast-pathed only where the netfilter check is off.
    m.start("b", &["--netfilter", "ignore"]).unwrap();
    m.start("c", &["--no-xdp"]).unwrap();
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let link = m.lab.link("b", "c").clone();
    let (b_if, c_if) = if link.a == "c" {
        (link.b_if, link.a_if)
    } else {
        (link.a_if, link.b_if)
    };
    let stats = |node: &str| -> serde_json::Value {
        let out = meshfwd_cli(m.lab.node(node), &["show", "stats", "--json"]);
        serde_json::from_str(&out).expect("stats JSON")
    };
    let failed = |node: &str| {
        stats(node)["counters"]["redirect_failed"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(failed("b"), 0, "nothing refused yet");

    // A crash: no agent on b re-checks the device, and a keeps sending
    // through b (within its dead interval).
    m.crash("b").unwrap();
    m.lab
        .node("c")
        .run(&["ethtool", "-K", &c_if, "gro", "off"])
        .expect("GRO off on c's end");
    // 100 pings in 1 s, well inside a's 3 s dead interval for b: a keeps
    // sending through b, b's XDP keeps redirecting into the b-c link.
    let c = m.node_address("c");
    let _ = m.lab.node("a").run_timeout(
        &[
            "ping",
            "-6",
            "-n",
            "-q",
            "-c",
            "100",
            "-i",
            "0.01",
            "-W",
            "1",
            &c.to_string(),
        ],
        Duration::from_secs(10),
    );
    let report = stats("b");
    let total = report["counters"]["redirect_failed"].as_u64().unwrap_or(0);
    let on_link = report["redirect_failed_by_iface"][&b_if]
        .as_u64()
        .unwrap_or(0);
    assert!(total >= 90, "b counted the refused redirects: {report:#}");
    assert_eq!(on_link, total, "all of them on b's link to c: {report:#}");
    assert_eq!(
        failed("a"),
        0,
        "a redirected nothing into a refusing device"
    );
}

/// A node without XDP on a veth mesh link whose GRO is off (as a veth
/// comes): its agent turns GRO on when the link is up, so the neighbour's
/// fast path can redirect into it from the start.
#[test]
fn an_agent_without_xdp_makes_its_veth_end_take_redirects() {
    let topo = Topology::new().line(&["a", "b", "c"], Wire::Direct);
    let mut m = mesh("veth-gro", &topo);
    let link = m.lab.link("b", "c").clone();
    let c_if = if link.a == "c" { link.a_if } else { link.b_if };
    m.lab
        .node("c")
        .run(&["ethtool", "-K", &c_if, "gro", "off"])
        .expect("GRO off on c's end");
    m.start("a", &[]).unwrap();
    m.start("b", &[]).unwrap();
    m.start("c", &["--no-xdp"]).unwrap();
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    assert!(
        m.log("c")
            .contains("GRO on, so the neighbour's XDP can redirect"),
        "c turned GRO on:\n{}",
        m.log("c")
    );
    let gro = m
        .lab
        .node("c")
        .run(&["ethtool", "-k", &c_if])
        .expect("ethtool -k");
    assert!(gro.contains("generic-receive-offload: on"), "{gro}");
    let before = (
        m.xdp_counter("b", Stat::Redirect),
        m.xdp_counter("b", Stat::NoEgressDev),
    );
    let c = m.node_address("c");
    m.lab
        .node("a")
        .tcp_echo(m.lab.node("c"), c, 256 * 1024, Duration::from_secs(15))
        .expect("TCP from a to c across b");
    assert!(
        m.xdp_counter("b", Stat::Redirect) > before.0 + 100,
        "b's fast path redirected the segments"
    );
    assert_eq!(
        m.xdp_counter("b", Stat::NoEgressDev),
        before.1,
        "none toward c had to take the kernel path"
    );
    assert!(
        !m.log("b").contains("no longer takes XDP redirects"),
        "b never had to take the device out"
    );
}
