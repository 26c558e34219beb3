//! Real `meshfwd agent` processes for the benchmarks and the demo: the
//! shared harness (`lab::agents`), read through the typed answers of
//! `meshfwd::api` ([`Answers`]), and finding or building the binaries.

use std::{collections::BTreeSet, net::Ipv6Addr, path::PathBuf, time::Duration};

use anyhow::Result;
use dataplane::node_state::NodeState;
use ipnet::Ipv6Net;
pub use lab::agents::AgentMesh as Mesh;
use meshfwd::api::{Query, RouteRow, StatsReport};
use meshfwd_common::stats::Stat;

pub use lab::agents::{DEAD, HELLO, wait_for, wait_until};
use lab::pods::built_bin;

/// Longest wait for the mesh to converge at any step.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Find the agent binary: `--meshfwd`, `$MESHFWD_BIN`, or built next to
/// this binary.
pub fn meshfwd_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    built_bin(given, "MESHFWD_BIN", "meshfwd", "meshfwd")
}

/// Find the plugin binary: `--cni`, `$MESHFWD_CNI_BIN`, or built next to
/// this binary.
pub fn cni_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    built_bin(given, "MESHFWD_CNI_BIN", "cni", "meshfwd-cni")
}

/// The harness's answers, typed.
pub trait Answers {
    /// The state file `node`'s agent wrote, waiting for it to appear.
    fn node_state(&self, node: &str) -> Result<NodeState>;
    /// The node's /128.
    fn node_address(&self, node: &str) -> Result<Ipv6Addr>;
    /// `node`'s agent's routes (none when it does not answer).
    fn routes(&self, node: &str) -> Vec<RouteRow>;
    /// The interfaces of `node`'s route to `prefix`.
    fn route_ifaces(&self, node: &str, prefix: &Ipv6Net) -> BTreeSet<String>;
    /// One fast-path counter of `node`, from its pinned map.
    fn counter(&self, node: &str, stat: Stat) -> u64;
    /// Frames `node`'s XDP program forwarded.
    fn xdp_redirects(&self, node: &str) -> u64 {
        self.counter(node, Stat::Redirect)
    }
}

impl Answers for Mesh {
    fn node_state(&self, node: &str) -> Result<NodeState> {
        self.wait_state(node, CONVERGE)
    }

    fn node_address(&self, node: &str) -> Result<Ipv6Addr> {
        Ok(self.node_state(node)?.node_address)
    }

    fn routes(&self, node: &str) -> Vec<RouteRow> {
        self.show(node, Query::Routes).unwrap_or_default()
    }

    fn route_ifaces(&self, node: &str, prefix: &Ipv6Net) -> BTreeSet<String> {
        self.routes(node)
            .into_iter()
            .find(|r| r.prefix == ipnet::IpNet::V6(*prefix))
            .map(|r| r.next_hops.into_iter().filter_map(|h| h.iface).collect())
            .unwrap_or_default()
    }

    fn counter(&self, node: &str, stat: Stat) -> u64 {
        self.counters::<StatsReport>(node)
            .and_then(|s| s.xdp)
            .map_or(0, |x| x.get(stat))
    }
}
