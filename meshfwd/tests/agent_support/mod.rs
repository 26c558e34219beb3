//! The agent's namespace tests run their meshes with the shared harness
//! (`lab::agents`); this wraps it with the typed answers of
//! `meshfwd::api` and panics instead of returning errors.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    net::Ipv6Addr,
    ops::{Deref, DerefMut},
    path::PathBuf,
    time::{Duration, Instant},
};

use dataplane::node_state::NodeState;
use lab::{Lab, ProcId, Topology, agents::AgentMesh};
use meshfwd::{
    api::{NodeInfo, Query, RouteRow, StatsReport},
    fib::dump::FibRow,
};
use meshfwd_common::stats::Stat;
use routing::{neighbor::nsm, state::NeighborState};

/// The agent binary under test.
pub const MESHFWD: &str = env!("CARGO_BIN_EXE_meshfwd");

pub use lab::agents::wait_for;

/// Poll `f` until true or panic with `what`.
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    if let Err(e) = lab::agents::wait_until(what, timeout, f) {
        panic!("{e}");
    }
}

/// A lab with agents.
pub struct Mesh(AgentMesh);

impl Deref for Mesh {
    type Target = AgentMesh;

    fn deref(&self) -> &AgentMesh {
        &self.0
    }
}

impl DerefMut for Mesh {
    fn deref_mut(&mut self) -> &mut AgentMesh {
        &mut self.0
    }
}

impl Mesh {
    /// Build `topo` (no agents yet).
    pub fn build(tag: &str, topo: &Topology) -> Mesh {
        let lab = Lab::build(tag, topo).unwrap_or_else(|e| panic!("building the lab: {e:#}"));
        Mesh(AgentMesh::new(lab, MESHFWD))
    }

    /// Start an agent on every node.
    pub fn start_all(&mut self) {
        self.0
            .start_all()
            .unwrap_or_else(|e| panic!("starting the agents: {e:#}"));
    }

    /// Start the agent on `node` with extra flags.
    pub fn start(&mut self, node: &str, extra: &[&str]) -> ProcId {
        self.0
            .start(node, extra)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Return `node`'s machine id file.
    pub fn machine_id(&self, node: &str) -> PathBuf {
        self.0
            .machine_id_file(node)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Return the agent's command line (for starting it by hand).
    pub fn agent_args(&self, node: &str) -> Vec<String> {
        self.0.agent_args(node).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The node summary, if the agent answers.
    pub fn node(&self, node: &str) -> Option<NodeInfo> {
        self.show(node, Query::Node)
    }

    /// The agent's routes.
    pub fn routes(&self, node: &str) -> Vec<RouteRow> {
        self.show(node, Query::Routes).unwrap_or_default()
    }

    /// The fast path's FIB as the agent reads it.
    pub fn fib(&self, node: &str) -> Vec<FibRow> {
        self.show(node, Query::Fib).unwrap_or_default()
    }

    /// The agent's OSPF neighbours.
    pub fn neighbors(&self, node: &str) -> Vec<NeighborState> {
        self.show(node, Query::Neighbors).unwrap_or_default()
    }

    /// The agent's counters and the fast path's.
    pub fn stats(&self, node: &str) -> Option<StatsReport> {
        self.show(node, Query::Stats)
    }

    /// Wait until the agent on `node` answers and return its node summary.
    pub fn wait_agent(&self, node: &str, timeout: Duration) -> NodeInfo {
        wait_for(timeout, || self.node(node)).unwrap_or_else(|| {
            panic!(
                "agent on {node} answering: timed out after {timeout:?}; log:\n{}",
                self.log(node)
            )
        })
    }

    /// The node's state file.
    pub fn state(&self, node: &str) -> NodeState {
        self.0.state(node).unwrap_or_else(|| {
            panic!(
                "{node}'s state file is missing or invalid; log:\n{}",
                self.log(node)
            )
        })
    }

    /// The node's /128 from its state file.
    pub fn node_address(&self, node: &str) -> Ipv6Addr {
        self.state(node).node_address
    }

    /// Number of Full neighbours of `node`.
    pub fn full_neighbors(&self, node: &str) -> usize {
        self.neighbors(node)
            .iter()
            .filter(|n| n.state == nsm::State::Full)
            .count()
    }

    /// Ping `dst` once from `from`.
    pub fn ping(&self, from: &str, dst: Ipv6Addr) -> bool {
        self.lab.node(from).ping6(dst, None).unwrap_or(false)
    }

    /// Wait until every node in `nodes` answers pings from every other.
    pub fn wait_full_reachability(&self, nodes: &[&str], timeout: Duration) {
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
    pub fn xdp_counter(&self, node: &str, stat: Stat) -> u64 {
        self.counters::<StatsReport>(node)
            .and_then(|s| s.xdp)
            .map_or(0, |x| x.get(stat))
    }
}
