//! Conflicts a zero-touch mesh must settle by itself, with real agents:
//! two nodes cloned from one disk image (same machine id, so the same
//! router id), next to each other or far apart, and pod prefixes that
//! clash (two automatic choices, or an automatic and a configured one).

mod agent_support;

use std::{net::Ipv4Addr, time::Duration};

use agent_support::{Answers as _, auth_args, key_file, mesh, wait_until};
use ipnet::Ipv6Net;
use lab::agents::AgentMesh;
use lab::{Topology, Wire};
use meshfwd::agent::core::prefixes::pod_prefix_candidate;

const CONVERGE: Duration = Duration::from_secs(30);
/// The evidence must hold for the hold-down (20 s) before an id changes.
const DUP_SETTLE: Duration = Duration::from_secs(90);

fn router_id(m: &AgentMesh, n: &str) -> Option<Ipv4Addr> {
    m.node(n).map(|v| v.router_id)
}

/// Wait until `x` and `y` have different router ids, and keep them for a
/// few seconds (both may be changing).
fn wait_parted(m: &AgentMesh, x: &str, y: &str) {
    let parted = || matches!((router_id(m, x), router_id(m, y)), (Some(a), Some(b)) if a != b);
    wait_until(&format!("{x} and {y} part ways"), DUP_SETTLE, parted);
    std::thread::sleep(Duration::from_secs(4));
    wait_until(&format!("{x} and {y} stay apart"), DUP_SETTLE, parted);
    // The state files follow the ids.
    wait_until("state files follow", CONVERGE, || {
        [x, y]
            .iter()
            .all(|n| router_id(m, n).is_some_and(|id| m.node_state(n).router_id == id))
    });
}

fn clone_machine_id(m: &AgentMesh, from: &str, to: &str) {
    let id = std::fs::read(m.machine_id_file(from).unwrap()).unwrap();
    std::fs::write(m.machine_id_file(to).unwrap(), id).unwrap();
}

#[test]
fn cloned_neighbours_get_distinct_router_ids() {
    // Two clones cabled together hear each other's Hellos with their own
    // id. Anyone can send such a Hello, so only authenticated ones count:
    // the mesh has its key, and a clone has it too.
    let topo = Topology::new().line(&["a", "b", "c"], Wire::Direct);
    let mut m = mesh("dupnbr", &topo);
    clone_machine_id(&m, "a", "b");
    for n in ["a", "b", "c"] {
        let k = key_file(&m, n, "mesh-secret-1234", 0o600);
        let args = auth_args(&m, n, &k);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        m.start(n, &args).unwrap();
    }
    for n in ["a", "b", "c"] {
        m.wait_agent(n, CONVERGE);
    }
    wait_parted(&m, "a", "b");
    let rederived: u32 = ["a", "b"]
        .iter()
        .map(|n| m.node(n).unwrap().router_id_rederived)
        .sum();
    assert!(rederived >= 1, "one of them changed its id");
    assert_ne!(m.node_state("a").pod_prefix, m.node_state("b").pod_prefix);
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
}

#[test]
fn cloned_nodes_far_apart_get_distinct_router_ids() {
    let topo = Topology::new().line(&["a", "b", "c"], Wire::Direct);
    let mut m = mesh("dupfar", &topo);
    clone_machine_id(&m, "a", "c");
    m.start_all().unwrap();
    for n in ["a", "b", "c"] {
        m.wait_agent(n, CONVERGE);
    }
    // b sees two neighbours with one id (a running count: it stays once
    // the clones have parted).
    wait_until("b reports the duplicate", CONVERGE, || {
        m.stats("b")
            .and_then(|s| s.agent)
            .is_some_and(|a| a.duplicate_neighbor_ids >= 1)
    });
    // b floods each clone's LSAs to the other, so they fight over them
    // (RFC 2328 §13.4) as soon as both are in b's LSDB; the fight gives
    // them away.
    wait_parted(&m, "a", "c");
    let rederived: u32 = ["a", "c"]
        .iter()
        .map(|n| m.node(n).unwrap().router_id_rederived)
        .sum();
    assert!(rederived >= 1, "one of them changed its id");
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    // A link flap afterwards starts no new fight: the ids stay apart.
    m.lab.cut_loud("b", "c").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    m.lab.restore("b", "c").unwrap();
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let ids = (router_id(&m, "a"), router_id(&m, "c"));
    assert!(matches!(&ids, (Some(x), Some(y)) if x != y), "{ids:?}");
}

#[test]
fn pod_prefix_clash_moves_the_lower_router_id() {
    // A small cluster prefix (15 usable /64s) makes a clash easy to set up:
    // two router ids whose first choice is the same /64.
    let cluster: Ipv6Net = "fd00:77:0:10::/60".parse().unwrap();
    let (lo, hi) = (1..10_000u32)
        .flat_map(|i| {
            (i + 1..i + 200).map(move |j| {
                (
                    Ipv4Addr::from(0x0a00_0000 + i),
                    Ipv4Addr::from(0x0a00_0000 + j),
                )
            })
        })
        .find(|(x, y)| pod_prefix_candidate(cluster, *x, 0) == pod_prefix_candidate(cluster, *y, 0))
        .expect("a clash exists");
    let clash = pod_prefix_candidate(cluster, lo, 0);
    let topo = Topology::new().line(&["a", "b"], Wire::Direct);
    let mut m = mesh("podclash", &topo);
    let c = cluster.to_string();
    m.start(
        "a",
        &["--router-id", &lo.to_string(), "--cluster-prefix", &c],
    )
    .unwrap();
    m.start(
        "b",
        &["--router-id", &hi.to_string(), "--cluster-prefix", &c],
    )
    .unwrap();
    m.wait_agent("a", CONVERGE);
    m.wait_agent("b", CONVERGE);
    wait_until("a moves off the clashing /64", CONVERGE, || {
        m.node_state("a").pod_prefix != clash
    });
    assert_eq!(
        m.node_state("b").pod_prefix,
        clash,
        "the higher router id keeps it"
    );
    let a_pod = m.node_state("a").pod_prefix;
    assert!(cluster.contains(&a_pod));
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    // The old address left a's device with the move.
    let out = m
        .lab
        .node("a")
        .run(&["ip", "-6", "-o", "addr", "show"])
        .unwrap();
    assert!(
        !out.contains(&format!(
            "{}/128",
            meshfwd::agent::core::prefixes::node_address(clash)
        )),
        "{out}"
    );
}

#[test]
fn an_automatic_node_avoids_a_configured_pod_prefix() {
    // a (lower id) and c (higher id) clash on their first choice, so a must
    // move on; b holds a's second choice by configuration, so a must skip
    // that one too.
    let cluster: Ipv6Net = "fd00:78:0:20::/60".parse().unwrap();
    let (lo, hi) = (1..10_000u32)
        .flat_map(|i| {
            (i + 1..i + 200).map(move |j| {
                (
                    Ipv4Addr::from(0x0a00_0000 + i),
                    Ipv4Addr::from(0x0a00_0000 + j),
                )
            })
        })
        .find(|(x, y)| {
            let (x0, x1, y0) = (
                pod_prefix_candidate(cluster, *x, 0),
                pod_prefix_candidate(cluster, *x, 1),
                pod_prefix_candidate(cluster, *y, 0),
            );
            x0 == y0 && x1 != y0
        })
        .expect("a clash exists");
    let static_pod = pod_prefix_candidate(cluster, lo, 1);
    let topo = Topology::new()
        .node("a")
        .node("b")
        .node("c")
        .link("b", "a", Wire::Direct)
        .link("a", "c", Wire::Direct);
    let mut m = mesh("podstatic", &topo);
    let c = cluster.to_string();
    m.start(
        "b",
        &[
            "--router-id",
            "10.255.0.1",
            "--cluster-prefix",
            &c,
            "--pod-prefix",
            &static_pod.to_string(),
        ],
    )
    .unwrap();
    m.start(
        "a",
        &["--router-id", &lo.to_string(), "--cluster-prefix", &c],
    )
    .unwrap();
    m.start(
        "c",
        &["--router-id", &hi.to_string(), "--cluster-prefix", &c],
    )
    .unwrap();
    m.wait_agent("a", CONVERGE);
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    wait_until("a settles beside both", CONVERGE, || {
        let p = m.node_state("a").pod_prefix;
        p != static_pod && p != pod_prefix_candidate(cluster, hi, 0)
    });
    assert_eq!(m.node_state("b").pod_prefix, static_pod);
    assert_eq!(
        m.node_state("c").pod_prefix,
        pod_prefix_candidate(cluster, hi, 0)
    );
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
}
