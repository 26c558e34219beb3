//! Real `meshfwd agent` processes for the benchmarks and the demo: the
//! shared harness (`lab::agents`) with the typed answers of
//! `meshfwd::api`, and finding or building the agent binary.

use std::{
    collections::BTreeSet,
    net::Ipv6Addr,
    ops::{Deref, DerefMut},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use dataplane::node_state::NodeState;
use ipnet::Ipv6Net;
use lab::{Lab, ProcId, agents::AgentMesh};
use meshfwd::api::{Query, RouteRow, StatsReport};
use meshfwd_common::stats::Stat;

pub use lab::agents::{DEAD, HELLO, wait_for, wait_until};

/// Longest wait for the mesh to converge at any step.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Find the agent binary: `--meshfwd`, `$MESHFWD_BIN`, next to this
/// binary, or build it.
pub fn meshfwd_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    built_bin(given, "MESHFWD_BIN", "meshfwd", "meshfwd")
}

/// Find the plugin binary: `--cni`, `$MESHFWD_CNI_BIN`, next to this
/// binary, or build it.
pub fn cni_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    built_bin(given, "MESHFWD_CNI_BIN", "cni", "meshfwd-cni")
}

/// Return `given`, else `$env`, else binary `bin` of `package` built next
/// to this binary (in the same profile).
fn built_bin(given: Option<PathBuf>, env: &str, package: &str, bin: &str) -> Result<PathBuf> {
    if let Some(p) = given.or_else(|| std::env::var_os(env).map(PathBuf::from)) {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no directory for this binary")?;
    let sibling = dir.join(bin);
    eprintln!("building the {bin} binary");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--package", package, "--bin", bin]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building {bin} failed");
    }
    if !sibling.exists() {
        bail!(
            "{} does not exist after the build; name it with its flag",
            sibling.display()
        );
    }
    Ok(sibling)
}

/// A lab with an agent per node.
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
    /// Wrap a built lab (no agents yet).
    pub fn new(lab: Lab, bin: PathBuf) -> Self {
        Mesh(AgentMesh::new(lab, bin))
    }

    /// Start `node`'s agent with `extra` flags after the usual ones.
    pub fn start_with(&mut self, node: &str, extra: &[&str]) -> Result<ProcId> {
        self.0.start(node, extra)
    }

    /// The state file `node`'s agent wrote, waiting for it to appear.
    pub fn node_state(&self, node: &str) -> Result<NodeState> {
        self.wait_state(node, CONVERGE)
    }

    /// The node's /128.
    pub fn node_address(&self, node: &str) -> Result<Ipv6Addr> {
        Ok(self.node_state(node)?.node_address)
    }

    /// `node`'s agent's routes (none when it does not answer).
    pub fn routes(&self, node: &str) -> Vec<RouteRow> {
        self.show(node, Query::Routes).unwrap_or_default()
    }

    /// The interfaces of `node`'s route to `prefix`.
    pub fn route_ifaces(&self, node: &str, prefix: &Ipv6Net) -> BTreeSet<String> {
        self.routes(node)
            .into_iter()
            .find(|r| r.prefix == *prefix)
            .map(|r| r.next_hops.into_iter().filter_map(|h| h.iface).collect())
            .unwrap_or_default()
    }

    /// One fast-path counter of `node`, from its pinned map.
    pub fn counter(&self, node: &str, stat: Stat) -> u64 {
        self.counters::<StatsReport>(node)
            .and_then(|s| s.xdp)
            .map_or(0, |x| x.get(stat))
    }

    /// Frames `node`'s XDP program forwarded.
    pub fn xdp_redirects(&self, node: &str) -> u64 {
        self.counter(node, Stat::Redirect)
    }
}
