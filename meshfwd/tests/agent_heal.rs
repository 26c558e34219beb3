//! Self-healing with real agents: a loud cut (carrier loss) clears the
//! link's next hops' alive flags at once and OSPF then routes around it; a
//! silent cut is caught by the dead interval; recovery brings the link
//! back; and the survivors keep routing when a third of the nodes is cut
//! off.

mod agent_support;

use std::{collections::BTreeSet, time::Duration};

use agent_support::{Answers as _, mesh, route_ifaces, wait_until};
use ipnet::Ipv6Net;
use lab::agents::AgentMesh;
use lab::{Topology, Wire};

const CONVERGE: Duration = Duration::from_secs(30);

fn ring4(wire: Wire) -> Topology {
    Topology::new().ring(&["a", "b", "c", "d"], wire)
}

/// Whether any FIB entry of `node` still has a live next hop through `iface`.
fn fib_uses_alive(m: &AgentMesh, node: &str, iface: &str) -> bool {
    m.fib(node).iter().any(|r| {
        r.next_hops
            .iter()
            .any(|h| h.iface.as_deref() == Some(iface) && h.alive)
    })
}

fn up(m: &AgentMesh) -> Ipv6Net {
    m.node_state("c").pod_prefix
}

#[test]
fn loud_cut_flips_alive_flags_then_reroutes_and_recovers() {
    let mut m = mesh("loudcut", &ring4(Wire::Cable));
    m.start_all().unwrap();
    m.wait_full_reachability(&["a", "b", "c", "d"], CONVERGE);
    let c_pod = up(&m);
    let both: BTreeSet<String> = ["m-b".to_string(), "m-d".to_string()].into();
    wait_until("a has two equal-cost paths to c", CONVERGE, || {
        route_ifaces(&m, "a", &c_pod) == both
    });
    assert!(fib_uses_alive(&m, "a", "m-b"));

    m.lab.cut_loud("a", "b").unwrap();
    // The fast path lets go of the link at once, not after OSPF.
    wait_until("no live next hop via m-b", Duration::from_secs(2), || {
        !fib_uses_alive(&m, "a", "m-b")
    });
    let log = m.log("a");
    let line = log
        .lines()
        .find(|l| l.contains("mesh link down") && l.contains("m-b"))
        .expect("carrier loss logged");
    assert!(line.contains("CarrierLost"), "{line}");
    let flip = log
        .lines()
        .find(|l| l.contains("alive flags cleared") && l.contains("m-b"))
        .expect("the alive flip logged");
    assert!(
        flip.contains("next_hops_dead=") && !flip.contains("next_hops_dead=0"),
        "alive flags were cleared: {flip}"
    );
    // OSPF follows: c only via d; b still reachable the long way round.
    wait_until("a routes to c via d only", CONVERGE, || {
        route_ifaces(&m, "a", &c_pod) == ["m-d".to_string()].into()
    });
    m.wait_full_reachability(&["a", "b", "c", "d"], CONVERGE);

    m.lab.restore("a", "b").unwrap();
    wait_until("both paths back", CONVERGE, || {
        route_ifaces(&m, "a", &c_pod) == both
    });
    wait_until("live next hops via m-b again", CONVERGE, || {
        fib_uses_alive(&m, "a", "m-b")
    });
}

#[test]
fn silent_cut_is_caught_by_the_dead_interval() {
    let mut m = mesh("silentcut", &ring4(Wire::Cable));
    m.start_all().unwrap();
    m.wait_full_reachability(&["a", "b", "c", "d"], CONVERGE);
    let b_addr = Ipv6Net::from(m.node_address("b"));
    wait_until("a routes to b directly", CONVERGE, || {
        route_ifaces(&m, "a", &b_addr) == ["m-b".to_string()].into()
    });

    m.lab.cut_silent("a", "b").unwrap();
    assert!(
        m.lab.node("a").has_carrier("m-b").unwrap(),
        "carrier stays on a silent cut"
    );
    // Dead interval 3 s, then SPF: a reaches b through d and c.
    wait_until("a routes to b via d", Duration::from_secs(15), || {
        route_ifaces(&m, "a", &b_addr) == ["m-d".to_string()].into()
    });
    m.wait_full_reachability(&["a", "b"], CONVERGE);

    m.lab.restore("a", "b").unwrap();
    wait_until("a routes to b directly again", CONVERGE, || {
        route_ifaces(&m, "a", &b_addr) == ["m-b".to_string()].into()
    });
}

/// Return whether `nodes` are connected using only links among them.
fn connected(topo: &Topology, nodes: &BTreeSet<String>) -> bool {
    let Some(start) = nodes.iter().next() else {
        return true;
    };
    let mut seen: BTreeSet<String> = [start.clone()].into();
    let mut todo = vec![start.clone()];
    while let Some(n) = todo.pop() {
        for l in &topo.links {
            let other = if l.a == n {
                &l.b
            } else if l.b == n {
                &l.a
            } else {
                continue;
            };
            if nodes.contains(other) && seen.insert(other.clone()) {
                todo.push(other.clone());
            }
        }
    }
    seen.len() == nodes.len()
}

#[test]
fn survivors_keep_routing_when_a_third_of_the_nodes_is_cut_off() {
    let topo = Topology::partial_mesh(9, 11, Wire::Direct);
    // Pick three nodes whose loss leaves the other six connected.
    let all: Vec<String> = topo.nodes.clone();
    let mut victims = None;
    'search: for i in 0..all.len() {
        for j in i + 1..all.len() {
            for k in j + 1..all.len() {
                let dead: BTreeSet<String> =
                    [all[i].clone(), all[j].clone(), all[k].clone()].into();
                let alive: BTreeSet<String> =
                    all.iter().filter(|n| !dead.contains(*n)).cloned().collect();
                if connected(&topo, &alive) {
                    victims = Some(dead);
                    break 'search;
                }
            }
        }
    }
    let dead = victims.expect("some third of the mesh can go without splitting it");
    let mut m = mesh("third", &topo);
    m.start_all().unwrap();
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    m.wait_full_reachability(&names, Duration::from_secs(60));

    // Power the victims off: their agents stop and their cables go dark.
    for v in &dead {
        m.lab.node(v).kill(m.agent(v).expect("an agent")).unwrap();
    }
    for l in topo
        .links
        .iter()
        .filter(|l| dead.contains(&l.a) || dead.contains(&l.b))
    {
        m.lab.cut_loud(&l.a, &l.b).unwrap();
    }
    let survivors: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !dead.contains(*n))
        .collect();
    m.wait_full_reachability(&survivors, CONVERGE);
}
