//! OSPF authentication between agents (RFC 7166): a key file per node,
//! checked at start; agents sharing a key form adjacencies and route, a
//! node with another key is kept out.

mod agent_support;

use std::{path::Path, time::Duration};

use agent_support::{Answers as _, auth_args, key_file, mesh, wait_until};
use lab::{Topology, Wire, agents::AgentMesh};

const CONVERGE: Duration = Duration::from_secs(60);

fn start(m: &mut AgentMesh, node: &str, keys: &Path) {
    let args = auth_args(m, node, keys);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    m.start(node, &args).unwrap();
}

#[test]
fn agents_with_one_key_route_and_a_stranger_is_kept_out() {
    let mut m = mesh(
        "auth",
        &Topology::new().line(&["a", "b", "c"], Wire::Direct),
    );
    for n in ["a", "b"] {
        let k = key_file(&m, n, "mesh-secret-1234", 0o600);
        start(&mut m, n, &k);
    }
    let stranger = key_file(&m, "c", "other-secret-56", 0o600);
    start(&mut m, "c", &stranger);
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    let node = m.wait_agent("a", CONVERGE);
    let auth = node.ospf_auth.expect("authentication on");
    assert_eq!((auth.keys, auth.send_key, auth.boot_count), (1, Some(1), 1));
    // b drops c's packets (wrong digest) and c never becomes a neighbour.
    wait_until("b refusing c's packets", CONVERGE, || {
        m.stats("b")
            .and_then(|s| s.ospf)
            .and_then(|o| o.drops.get(&routing::DropReason::AuthBadDigest).copied())
            .is_some_and(|n| n >= 5)
    });
    assert_eq!(m.full_neighbors("b"), 1, "only a: {:?}", m.neighbors("b"));
    assert_eq!(m.full_neighbors("c"), 0);
    assert!(!m.ping("a", m.node_address("c")), "c stays unreachable");
    // The boot count is on disk: the next start signs above this run.
    let boot = std::fs::read_to_string(m.path("a", "boot")).unwrap();
    assert_eq!(boot.trim(), "1");
}

#[test]
fn a_key_file_others_can_read_stops_the_agent_at_start() {
    let mut m = mesh("authperm", &Topology::new().node("a"));
    let k = key_file(&m, "a", "mesh-secret-1234", 0o644);
    start(&mut m, "a", &k);
    let id = m.agent("a").unwrap();
    wait_until("the agent exits", Duration::from_secs(20), || {
        !m.lab.node("a").is_running(id)
    });
    let log = m.log("a");
    assert!(
        log.contains("ospf.auth.key_file")
            && log.contains("mode 0644")
            && log.contains("keys.toml"),
        "{log}"
    );
}
