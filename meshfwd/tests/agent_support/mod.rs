//! The agent's namespace tests run their meshes with the shared harness
//! (`lab::agents`); [`Answers`] reads it through the typed answers of
//! `meshfwd::api` and panics instead of returning errors.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use dataplane::node_state::NodeState;
use lab::{Lab, Topology, agents::AgentMesh};
use meshfwd::{
    api::{NodeInfo, Query, RouteRow, StatsReport},
    fib::dump::FibRow,
};
use meshfwd_common::stats::Stat;
use routing::{neighbor::nsm, state::NeighborState};

/// The agent binary under test.
pub const MESHFWD: &str = env!("CARGO_BIN_EXE_meshfwd");

pub use lab::agents::wait_for;

/// Run `meshfwd --bpffs <node's dir> <args>` in `node` and return its
/// output; panic if it fails.
pub fn meshfwd_cli(node: &lab::Node, args: &[&str]) -> String {
    let out = node
        .cmd(MESHFWD)
        .arg("--bpffs")
        .arg(node.bpffs_dir())
        .args(args)
        .output()
        .expect("run meshfwd");
    assert!(
        out.status.success(),
        "meshfwd {args:?} in {} failed: {}",
        node.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("meshfwd prints UTF-8")
}

/// Poll `f` until true or panic with `what`.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    if let Err(e) = lab::agents::wait_until(what, timeout, f) {
        panic!("{e}");
    }
}

/// Write a key file for `node` holding `secret` (mode `mode`).
pub fn key_file(m: &AgentMesh, node: &str, secret: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let p = m.path(node, "keys.toml");
    std::fs::write(&p, format!("[[key]]\nid = 1\nsecret = \"{secret}\"\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// The flags that make `node`'s agent authenticate with `keys`.
pub fn auth_args(m: &AgentMesh, node: &str, keys: &std::path::Path) -> Vec<String> {
    let boot = m.path(node, "boot");
    vec![
        "--auth-key-file".into(),
        keys.to_string_lossy().into_owned(),
        "--auth-boot-count-file".into(),
        boot.to_string_lossy().into_owned(),
    ]
}

/// The interfaces of `node`'s route to `prefix` (none when it has none).
pub fn route_ifaces(
    m: &AgentMesh,
    node: &str,
    prefix: &ipnet::Ipv6Net,
) -> std::collections::BTreeSet<String> {
    m.routes(node)
        .into_iter()
        .find(|r| r.prefix == ipnet::IpNet::V6(*prefix))
        .map(|r| r.next_hops.into_iter().filter_map(|h| h.iface).collect())
        .unwrap_or_default()
}

/// Build `topo` for agents (none started yet).
pub fn mesh(tag: &str, topo: &Topology) -> AgentMesh {
    let lab = Lab::build(tag, topo).unwrap_or_else(|e| panic!("building the lab: {e:#}"));
    AgentMesh::new(lab, MESHFWD)
}

/// The harness's answers, typed; failures panic with the agent's log.
pub trait Answers {
    fn node(&self, node: &str) -> Option<NodeInfo>;
    fn routes(&self, node: &str) -> Vec<RouteRow>;
    fn fib(&self, node: &str) -> Vec<FibRow>;
    fn neighbors(&self, node: &str) -> Vec<NeighborState>;
    fn stats(&self, node: &str) -> Option<StatsReport>;
    fn wait_agent(&self, node: &str, timeout: Duration) -> NodeInfo;
    fn node_state(&self, node: &str) -> NodeState;
    fn node_address(&self, node: &str) -> Ipv6Addr;
    fn full_neighbors(&self, node: &str) -> usize;
    fn ping(&self, from: &str, dst: Ipv6Addr) -> bool;
    fn wait_full_reachability(&self, nodes: &[&str], timeout: Duration);
    fn xdp_counter(&self, node: &str, stat: Stat) -> u64;
}

impl Answers for AgentMesh {
    /// The node summary, if the agent answers.
    fn node(&self, node: &str) -> Option<NodeInfo> {
        self.show(node, Query::Node)
    }

    /// The agent's routes.
    fn routes(&self, node: &str) -> Vec<RouteRow> {
        self.show(node, Query::Routes).unwrap_or_default()
    }

    /// The fast path's FIB as the agent reads it.
    fn fib(&self, node: &str) -> Vec<FibRow> {
        self.show(node, Query::Fib).unwrap_or_default()
    }

    /// The agent's OSPF neighbours.
    fn neighbors(&self, node: &str) -> Vec<NeighborState> {
        self.show(node, Query::Neighbors).unwrap_or_default()
    }

    /// The agent's counters and the fast path's.
    fn stats(&self, node: &str) -> Option<StatsReport> {
        self.show(node, Query::Stats)
    }

    /// Wait until the agent on `node` answers and return its node summary.
    fn wait_agent(&self, node: &str, timeout: Duration) -> NodeInfo {
        wait_for(timeout, || self.node(node)).unwrap_or_else(|| {
            panic!(
                "agent on {node} answering: timed out after {timeout:?}; log:\n{}",
                self.log(node)
            )
        })
    }

    /// The node's state file.
    fn node_state(&self, node: &str) -> NodeState {
        self.state(node).unwrap_or_else(|| {
            panic!(
                "{node}'s state file is missing or invalid; log:\n{}",
                self.log(node)
            )
        })
    }

    /// The node's /128 from its state file.
    fn node_address(&self, node: &str) -> Ipv6Addr {
        self.node_state(node).node_address
    }

    /// Number of Full neighbours of `node`.
    fn full_neighbors(&self, node: &str) -> usize {
        self.neighbors(node)
            .iter()
            .filter(|n| n.state == nsm::State::Full)
            .count()
    }

    /// Ping `dst` once from `from`.
    fn ping(&self, from: &str, dst: Ipv6Addr) -> bool {
        self.lab.node(from).ping6(dst, None).unwrap_or(false)
    }

    /// Wait until every node in `nodes` answers pings from every other.
    fn wait_full_reachability(&self, nodes: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for n in nodes {
            self.wait_agent(n, timeout);
        }
        for a in nodes {
            for b in nodes {
                if a == b {
                    continue;
                }
                let dst = self.node_address(b);
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                if self.lab.node(a).wait_ping6(dst, None, left).is_err() {
                    panic!(
                        "{a} cannot reach {b} ({dst}); {a}'s routes: {:?}\nlog of {a}:\n{}",
                        self.routes(a),
                        self.log(a)
                    );
                }
            }
        }
    }

    /// One fast-path counter of `node` (from its pinned map).
    fn xdp_counter(&self, node: &str, stat: Stat) -> u64 {
        self.counters::<StatsReport>(node)
            .and_then(|s| s.xdp)
            .map_or(0, |x| x.get(stat))
    }
}
